//! Proctor as a library: what `proctor run` does, for programs that compose their own runs.
//!
//! A [`Run`] is one project's tests with the settings of `proctor run` ([`config`]: built-in defaults < config
//! files < `PROCTOR_*` environment < explicit settings, one key per flag). It resolves references into tests with
//! the same sources as the CLI ([`Run::select`]), runs them through the same orchestrator, on this machine's
//! slots or a [`Pool`]'s workers, ad hoc ([`Run::run`]), and writes the same outputs: the stored run in
//! `.proctor/`, subunit, JUnit. The CLI is a [`Run`] too. Hooks steer the orchestrator ([`Run::applicable`],
//! [`Run::fitness`], [`Run::retry_if`]); [`Run::watch`] and [`Run::stopper`] read and stop a run from another
//! thread.
//!
//! A worked example: run a project's smoke test first, and the rest only when it passed, retrying each failure
//! once, on another worker when there is one.
//!
//! ```no_run
//! use proctor::{Run, Selection, TestVerdict};
//!
//! # fn main() -> Result<(), proctor::Error> {
//! let mut run = Run::open("path/to/project")?;
//! run.settings_mut().retries.set(1);
//! let smoke = run.run_test("smoke")?;
//! println!("smoke: {} on {}", smoke.verdict.as_str(), smoke.worker().unwrap_or("?"));
//! if smoke.verdict == TestVerdict::Passed {
//!     let rest = run.select(&Selection {
//!         exclude: vec!["^smoke$".to_owned()],
//!         ..Selection::default()
//!     })?;
//!     let outcome = run.run(&rest)?;
//!     for record in &outcome.summary.failures {
//!         println!("failed: {} on {:?}", record.test_id, record.route_code);
//!     }
//!     println!("flaky: {:?}; stored as run {:?}", outcome.report.flaky, outcome.stored);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The settings alone, each value with where it came from:
//!
//! ```
//! use std::time::Duration;
//!
//! use proctor::config::{RunSettings, Source};
//!
//! let mut settings = RunSettings::default();
//! settings.retries.set(2);
//! settings.grace.set(Duration::from_secs(3));
//! assert_eq!(*settings.retries.get(), 2);
//! assert_eq!(settings.retries.source(), &Source::Explicit);
//! assert_eq!(settings.serial.source(), &Source::Default);
//! ```
//!
//! The crate's `examples/` are whole programs: `gated_benchmark`, `compare_hosts`, `diagnose_after_failure`.

pub mod config;
mod run;

use std::path::PathBuf;

pub use proctor_events::{Sink, Summary, TestRecord, TestVerdict};
pub use proctor_pool::{Platform, Pool};
pub use proctor_runner::{Progress, RunReport, Stopper, Watch, WorkerInfo};
pub use proctor_sources::{Project, TestCase};
pub use run::{Observer, Outcome, Run, Selection, TestResult};

/// What can go wrong in a [`Run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings could not be read.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The project's tests could not be found or listed.
    #[error(transparent)]
    Sources(#[from] proctor_sources::SourceError),
    /// The run repository (`.proctor/`) could not be read or written.
    #[error(transparent)]
    Repository(#[from] proctor_repository::RepoError),
    /// The pool file could not be read or is not a valid pool.
    #[error(transparent)]
    Pool(#[from] proctor_pool::PoolError),
    /// Test processes cannot be supervised here.
    #[error(transparent)]
    Supervisor(#[from] proctor_supervisor::SupervisorError),
    /// An output of the run failed (a closed pipe, a full disk); the stored run keeps what it had, interrupted.
    #[error(transparent)]
    Output(#[from] proctor_events::SinkError),
    /// A test filter is not a regular expression.
    #[error("the test filter {pattern:?} is not a regular expression")]
    Filter {
        /// The filter.
        pattern: String,
        /// Why.
        #[source]
        source: regex::Error,
    },
    /// A list of test ids could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JUnit report could not be made.
    #[error("cannot write the JUnit report {path}")]
    Junit {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: proctor_formats::junit::JunitError,
    },
    /// The `failing` setting asks for the stored failing set, and the run is not stored.
    #[error("`failing` ({0}) needs a stored run")]
    FailingNeedsStore(config::Source),
    /// No test of the project has this id.
    #[error("the project has no test {0:?}")]
    NoSuchTest(String),
    /// The test did not end in the run.
    #[error("test {id:?} did not run: {why}")]
    NotRun {
        /// The test.
        id: String,
        /// Why.
        why: String,
    },
}
