//! The event layer: what Proctor does with a stream of subunit events.
//!
//! Everything above the codec consumes events through the [`Sink`] trait, and
//! the pieces here compose over it:
//!
//! - [`Tee`] copies a stream to several sinks;
//! - [`multiplex`] merges several input streams live, prefixing route codes,
//!   and [`RouteDemux`] splits one stream by route code;
//! - [`Aggregator`] turns events into one [`TestRecord`] per finished test run
//!   and says which tests are running now; [`Summary`] counts outcomes on top;
//! - [`Timestamper`], [`Filter`] and [`TagEditor`] adapt a stream on its way.

mod aggregate;
mod filter;
mod mux;
mod runs;
mod sink;
mod summary;
mod transform;

pub use aggregate::{Aggregator, Attachment, Running, TestRecord};
pub use filter::{Filter, FilterSpec};
pub use mux::{multiplex, RouteDemux, RoutePrefix};
pub use sink::{Collect, Sink, SinkError, Tee};
pub use summary::{Outcome, StatusCounts, Summary};
pub use transform::{TagEditor, Timestamper};
