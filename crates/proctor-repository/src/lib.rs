//! The run repository: what `proctor run` keeps in `.proctor/` in a project,
//! as testrepository and stestr keep `.testrepository` and `.stestr`.
//!
//! Every run's whole subunit v2 stream is stored as it happens and is the
//! source of truth; an index summarises each test's recent outcomes and
//! durations (for `slowest`, `flaky` and the scheduler's longest-first
//! order), and the failing set is kept as a stream of the failing tests'
//! events (for `failing` and `run --failing`).
//!
//! # Layout (format 1)
//!
//! ```text
//! .proctor/
//!   format            "1": the on-disk format, checked by `open`
//!   lock              held (advisory file lock) while the shared files change
//!   next-run          the next run id; ids count up from 0 and are never reused
//!   index.json        per-test history: run/pass/fail/skip counts and the last
//!                     HISTORY_WINDOW outcomes and durations; per suite, the
//!                     last HISTORY_WINDOW runs' process costs (start-up, time
//!                     per test)
//!   failing.subunit   the failing tests' events (subunit v2)
//!   runs/<id>.subunit the run's stream, appended as events arrive
//!   runs/<id>.json    the run's metadata: start, duration, state, kind, counts,
//!                     command line, filters and its suites' process costs
//! ```
//!
//! Plain files rather than an embedded database: the streams must stay
//! readable by the reference tools anyway, and the index has a bounded size
//! (tests × [`HISTORY_WINDOW`], about 4 MB for 10 000 tests whatever the
//! number of runs), so reading and replacing it whole once per run is cheap.
//!
//! # Concurrency and crashes
//!
//! Several processes may run at once: ids are allocated, and the index, the
//! failing set and `next-run` are replaced, under `lock`; every shared file
//! is replaced atomically (temporary file, sync, rename), so readers never
//! need the lock. A run's stream is locked by its [`RunWriter`] while it
//! lives, which tells a running run from one whose writer died. A crash at
//! any point leaves a readable repository: at worst that run is
//! [`RunState::Unfinished`] and did not count in the index and failing set.
//! A corrupt index is rebuilt from the streams when the next run is
//! recorded, or by [`Repository::rebuild_index`]; a corrupt stream reads as
//! the reference reader reads it (`subunit.parser` failures).
//!
//! ```no_run
//! use proctor_events::Sink;
//! use proctor_repository::{Repository, RunMeta};
//! use proctor_subunit::{Event, Status};
//!
//! let repository = Repository::open_or_init(std::path::Path::new("."))?;
//! let mut run = repository.begin_run(RunMeta::full().with_command(["proctor", "run"]))?;
//! run.event(&Event::test("demo.test_one", Status::Success))?;
//! let info = run.complete()?;
//! println!("run {} failed {:?}", info.id, repository.failing()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod failing;
mod history;
mod layout;
mod records;
mod repository;
mod run;
mod writer;

pub use error::RepoError;
pub use history::{
    FlakyTest, History, ProcessCost, ProcessSample, Sample, SuiteHistory, TestHistory,
    HISTORY_WINDOW,
};
pub use layout::{DIRECTORY, FORMAT};
pub use repository::{Repository, WorkerTime};
pub use run::{RunCounts, RunInfo, RunKind, RunMeta, RunState};
pub use writer::RunWriter;
