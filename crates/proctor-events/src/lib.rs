//! The event layer: what Proctor does with a stream of subunit events.
//!
//! Everything above the codec consumes events through the [`Sink`] trait, and
//! the pieces here compose over it:
//!
//! - [`Tee`] copies a stream to several sinks;
//! - [`multiplex`] merges several input streams live, prefixing route codes,
//!   and [`RouteDemux`] splits one stream by route code;
//! - [`Aggregator`] turns events into one [`TestRecord`] per finished test run
//!   and says which tests are running now, resumable from one part of a stream
//!   to the next ([`Aggregator::open_runs`], [`Aggregator::resume`]);
//! - [`RunStatus`], [`TestVerdict`] and [`Tally`] are the one results model:
//!   what a run came to and how a test's runs combine; [`Summary`] counts a
//!   stream with them;
//! - [`Timestamper`], [`Filter`] and [`TagEditor`] adapt a stream on its way.

mod aggregate;
mod filter;
mod mux;
mod runs;
mod sink;
mod summary;
mod transform;
mod verdict;

pub use aggregate::{Aggregator, Attachment, OpenRun, Running, TestRecord};
pub use filter::{Filter, FilterSpec};
pub use mux::{multiplex, RouteDemux, RoutePrefix};
pub use sink::{Collect, Sink, SinkError, Tee};
pub use summary::{Outcome, StatusCounts, Summary};
pub use transform::{TagEditor, Timestamper};
pub use verdict::{
    retry_of, RunCounts, RunStatus, Tally, TestCounts, TestVerdict, Try, UnknownRunStatus,
    RETRY_TAG_PREFIX,
};
