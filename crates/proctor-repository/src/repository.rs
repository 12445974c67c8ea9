//! The repository: opening it, and every operation on its runs.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_events::{Outcome, RunStatus, TestRecord};
use proctor_subunit::EventReader;

use crate::failing::FailingSet;
use crate::history::{FlakyTest, History};
use crate::layout::{read_optional, write_atomically, Layout, FORMAT};
use crate::records::read_records;
use crate::run::{is_being_written, read_meta, write_meta};
use crate::writer::{Clock, Span};
use crate::{RepoError, RunCounts, RunInfo, RunKind, RunMeta, RunState, RunWriter};

/// A project's run repository, the `.proctor/` directory. See the crate
/// documentation for its layout and guarantees.
///
/// A `Repository` is only a path: it is cheap to clone, and every operation
/// reads the disk afresh, so several threads and processes can use one
/// repository at once.
#[derive(Clone, Debug)]
pub struct Repository {
    layout: Layout,
}

/// One worker's share of a run ([`Repository::time_by_worker`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerTime {
    /// Its route code.
    pub worker: String,
    /// How many test runs it had.
    pub runs: usize,
    /// How many of them failed.
    pub failed: usize,
    /// Their total time.
    pub total: Duration,
    /// Its slowest test and that test's time.
    pub slowest: (String, Duration),
}

impl Repository {
    /// Creates the repository in `project` (the directory that holds, or
    /// will hold, `.proctor/`). Fails with [`RepoError::AlreadyExists`] if
    /// there is one.
    pub fn init(project: &Path) -> Result<Repository, RepoError> {
        let layout = Layout::in_project(project);
        if layout.format().exists() {
            return Err(RepoError::AlreadyExists {
                path: layout.base().to_path_buf(),
            });
        }
        let runs = layout.runs();
        fs::create_dir_all(&runs).map_err(RepoError::io("create", &runs))?;
        // The format file goes last: until it exists, this is no repository.
        write_atomically(&layout.format(), format!("{FORMAT}\n").as_bytes())?;
        Ok(Repository { layout })
    }

    /// Opens the repository in `project`; the directory given is the one
    /// used, nothing above it is searched.
    pub fn open(project: &Path) -> Result<Repository, RepoError> {
        let layout = Layout::in_project(project);
        let path = layout.format();
        let Some(format) = read_optional(&path)? else {
            return Err(RepoError::NotFound {
                path: layout.base().to_path_buf(),
            });
        };
        let format = String::from_utf8_lossy(&format).trim().to_owned();
        if format != FORMAT.to_string() {
            return Err(RepoError::UnsupportedFormat {
                path,
                found: format,
            });
        }
        Ok(Repository { layout })
    }

    /// Opens the repository in `project`, creating it if there is none.
    pub fn open_or_init(project: &Path) -> Result<Repository, RepoError> {
        match Repository::open(project) {
            Err(RepoError::NotFound { .. }) => match Repository::init(project) {
                // Another process created it in between.
                Err(RepoError::AlreadyExists { .. }) => Repository::open(project),
                created => created,
            },
            opened => opened,
        }
    }

    /// The `.proctor` directory.
    pub fn path(&self) -> &Path {
        self.layout.base()
    }

    /// Begins a run: gives it the next id and an empty stream file, and
    /// returns the writer that fills it.
    pub fn begin_run(&self, meta: RunMeta) -> Result<RunWriter, RepoError> {
        self.begin(meta, Clock::Live)
    }

    /// Imports a subunit v2 stream recorded elsewhere as a new run (what
    /// `stestr load` does); its start and duration come from the stream's
    /// timestamps. If reading the stream fails, the run keeps what was read,
    /// is marked interrupted, and the error says which run it is.
    pub fn load(&self, stream: impl Read, meta: RunMeta) -> Result<RunInfo, RepoError> {
        let mut writer = self.begin(meta, Clock::Imported)?;
        for event in EventReader::new(stream) {
            match event {
                Ok(event) => writer.write(&event)?,
                Err(source) => {
                    let id = writer.id();
                    writer.interrupt()?;
                    return Err(RepoError::LoadRead { id, source });
                }
            }
        }
        writer.complete()
    }

    fn begin(&self, meta: RunMeta, clock: Clock) -> Result<RunWriter, RepoError> {
        let _lock = self.layout.lock_exclusive()?;
        let id = self.allocate_id()?;
        let info = RunInfo {
            id,
            started: jiff::Timestamp::now(),
            duration: None,
            state: RunState::Running,
            counts: None,
            processes: BTreeMap::new(),
            meta,
        };
        // The metadata first: a stream file is what makes a run exist, and
        // it should never be seen without its metadata.
        write_meta(&self.layout.meta(id), &info)?;
        let path = self.layout.stream(id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(RepoError::io("create", &path))?;
        file.lock().map_err(RepoError::io("lock", &path))?;
        Ok(RunWriter::new(self.clone(), info, path, file, clock))
    }

    /// The next run id, counted in `next-run` so that ids are never reused,
    /// even after the newest run is removed. A missing counter (a repository
    /// made by hand, or an older copy) restarts after the newest stored run.
    /// Called under the lock.
    fn allocate_id(&self) -> Result<u64, RepoError> {
        let path = self.layout.next_run();
        let counted = match read_optional(&path)? {
            None => 0,
            Some(bytes) => {
                let content = String::from_utf8_lossy(&bytes).trim().to_owned();
                content
                    .parse::<u64>()
                    .map_err(|_| RepoError::CorruptCounter {
                        path: path.clone(),
                        content,
                    })?
            }
        };
        let after_stored = self.run_ids()?.last().map_or(0, |newest| newest + 1);
        let id = counted.max(after_stored);
        write_atomically(&path, format!("{}\n", id + 1).as_bytes())?;
        Ok(id)
    }

    /// Files a finished run in the history and the failing set, then marks
    /// it finished, all under the lock so that concurrent runs each see the
    /// other's changes. A crash before the last step leaves the run
    /// unfinished, with the index and the failing set consistent either way.
    pub(crate) fn record_finished(
        &self,
        info: &RunInfo,
        records: Vec<TestRecord>,
    ) -> Result<(), RepoError> {
        let _lock = self.layout.lock_exclusive()?;
        let mut history = self.read_or_rebuild_history()?;
        history.record_run(info.id, &records, &info.processes);
        let mut failing = FailingSet::read(&self.layout.failing())?;
        failing.apply(failing_kind(info), records);
        failing.write(&self.layout.failing())?;
        history.write(&self.layout.index())?;
        write_meta(&self.layout.meta(info.id), info)
    }

    /// The history, rebuilt from the stored runs if the index is corrupt:
    /// the streams are the source of truth and the index only a summary, so
    /// a damaged index must not stop runs from being recorded.
    fn read_or_rebuild_history(&self) -> Result<History, RepoError> {
        match History::read(&self.layout.index()) {
            Err(RepoError::Corrupt { .. }) => Ok(self.replay()?.0),
            other => other,
        }
    }

    /// Rebuilds the index and the failing set from the stored streams of
    /// the finished runs, oldest first, as if they had just been recorded.
    /// This recovers from a corrupt or deleted index (runs removed since
    /// no longer count).
    pub fn rebuild_index(&self) -> Result<(), RepoError> {
        let _lock = self.layout.lock_exclusive()?;
        let (history, failing) = self.replay()?;
        failing.write(&self.layout.failing())?;
        history.write(&self.layout.index())
    }

    fn replay(&self) -> Result<(History, FailingSet), RepoError> {
        let mut history = History::default();
        let mut failing = FailingSet::default();
        for info in self.runs()?.iter().filter(|info| info.is_finished()) {
            let records = read_records(&self.layout.stream(info.id))?;
            history.record_run(info.id, &records, &info.processes);
            failing.apply(failing_kind(info), records);
        }
        Ok((history, failing))
    }

    /// Every stored run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunInfo>, RepoError> {
        self.run_ids()?.into_iter().map(|id| self.run(id)).collect()
    }

    /// One stored run.
    pub fn run(&self, id: u64) -> Result<RunInfo, RepoError> {
        let stream = self.existing_stream(id)?;
        match read_meta(&self.layout.meta(id))? {
            Some(info) if info.state != RunState::Running => Ok(info),
            Some(info) if is_being_written(&stream)? => Ok(info),
            Some(info) => self.unfinished(info.id, info.started, info.meta),
            // Only damage from outside leaves a stream without metadata.
            None => {
                let modified = fs::metadata(&stream)
                    .and_then(|metadata| metadata.modified())
                    .map_err(RepoError::io("read the metadata of", &stream))?;
                let started = jiff::Timestamp::try_from(modified).unwrap_or_default();
                self.unfinished(id, started, RunMeta::full())
            }
        }
    }

    /// What can be said of a run whose writer went away: its counts and
    /// duration as far as its stream goes.
    fn unfinished(
        &self,
        id: u64,
        started: jiff::Timestamp,
        meta: RunMeta,
    ) -> Result<RunInfo, RepoError> {
        let records = read_records(&self.layout.stream(id))?;
        Ok(RunInfo {
            id,
            started,
            duration: Span::of_records(&records).duration(),
            state: RunState::Unfinished,
            counts: Some(RunCounts::of(&records)),
            processes: BTreeMap::new(),
            meta,
        })
    }

    /// The newest run, if any.
    pub fn latest(&self) -> Result<Option<RunInfo>, RepoError> {
        self.run_ids()?.last().map(|&id| self.run(id)).transpose()
    }

    /// The ids of the stored runs, ascending.
    fn run_ids(&self) -> Result<Vec<u64>, RepoError> {
        let directory = self.layout.runs();
        let entries = fs::read_dir(&directory).map_err(RepoError::io("list", &directory))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(RepoError::io("list", &directory))?;
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|name| name.strip_suffix(".subunit"))
                .and_then(|stem| stem.parse::<u64>().ok());
            ids.extend(id);
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn existing_stream(&self, id: u64) -> Result<PathBuf, RepoError> {
        let path = self.layout.stream(id);
        if path.is_file() {
            Ok(path)
        } else {
            Err(RepoError::NoSuchRun {
                id,
                repository: self.layout.base().to_path_buf(),
            })
        }
    }

    /// The path of a run's stream file: plain subunit v2, which the
    /// reference tools read (`subunit-stats < .proctor/runs/3.subunit`).
    pub fn stream_path(&self, id: u64) -> Result<PathBuf, RepoError> {
        self.existing_stream(id)
    }

    /// Opens a run's stream file for reading.
    pub fn open_stream(&self, id: u64) -> Result<File, RepoError> {
        let path = self.existing_stream(id)?;
        File::open(&path).map_err(RepoError::io("open", &path))
    }

    /// A run's test records, in the order the tests ended, then those it
    /// left unfinished. A corrupt stream still reads: its garbage becomes
    /// `subunit.parser` failures, as the reference reader reports it.
    pub fn records(&self, id: u64) -> Result<Vec<TestRecord>, RepoError> {
        read_records(&self.existing_stream(id)?)
    }

    /// Removes a run's stream and metadata. The history keeps what it
    /// learned from the run (as stestr keeps its times);
    /// [`Repository::rebuild_index`] forgets it.
    pub fn remove(&self, id: u64) -> Result<(), RepoError> {
        let _lock = self.layout.lock_exclusive()?;
        self.remove_locked(id)
    }

    /// Removes every run but the newest `keep`, skipping runs still being
    /// written; returns the ids removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<u64>, RepoError> {
        let _lock = self.layout.lock_exclusive()?;
        let ids = self.run_ids()?;
        let mut removed = Vec::new();
        for id in ids.iter().rev().skip(keep).rev().copied() {
            match self.remove_locked(id) {
                Ok(()) => removed.push(id),
                Err(RepoError::RunInProgress { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    fn remove_locked(&self, id: u64) -> Result<(), RepoError> {
        let stream = self.existing_stream(id)?;
        if is_being_written(&stream)? {
            return Err(RepoError::RunInProgress { id, path: stream });
        }
        // The stream first: without it the run no longer exists, so a crash
        // in between leaves at worst a stray metadata file, never a run that
        // looks abandoned.
        fs::remove_file(&stream).map_err(RepoError::io("remove", &stream))?;
        let meta = self.layout.meta(id);
        match fs::remove_file(&meta) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(RepoError::Io {
                action: "remove",
                path: meta,
                source: error,
            }),
            _ => Ok(()),
        }
    }

    /// The failing tests' ids, in stestr's order (see
    /// [`Repository::failing_records`]).
    pub fn failing(&self) -> Result<Vec<String>, RepoError> {
        Ok(self
            .failing_records()?
            .into_iter()
            .map(|record| record.test_id)
            .collect())
    }

    /// The failing tests, each with the record of its latest failure
    /// (attachments included), in the order they joined the set.
    ///
    /// The set follows stestr: a full run's failures replace it; a partial
    /// or interrupted run takes out the tests that passed (or were skipped)
    /// and adds its failures. A test fails with `fail` or when its run was
    /// cut off; `uxsuccess` does not put it in the set.
    pub fn failing_records(&self) -> Result<Vec<TestRecord>, RepoError> {
        let set = FailingSet::read(&self.layout.failing())?;
        Ok(set.records().into_iter().cloned().collect())
    }

    /// Writes the failing tests' events as a subunit v2 stream (what
    /// `proctor failing --subunit` prints).
    pub fn write_failing_stream(&self, out: &mut dyn Write) -> Result<(), RepoError> {
        let path = self.layout.failing();
        let Some(bytes) = read_optional(&path)? else {
            return Ok(());
        };
        out.write_all(&bytes).map_err(|source| RepoError::Io {
            action: "write out the failing stream from",
            path,
            source,
        })
    }

    /// Every test's history across runs.
    pub fn history(&self) -> Result<History, RepoError> {
        History::read(&self.layout.index())
    }

    /// Each test's expected duration, for scheduling longest first (see
    /// [`TestHistory::expected_duration`](crate::TestHistory::expected_duration)).
    pub fn expected_durations(&self) -> Result<HashMap<String, Duration>, RepoError> {
        Ok(self.history()?.expected_durations())
    }

    /// The `n` slowest tests of the newest run, slowest first, as `stestr
    /// slowest` shows them (a test run twice counts with its last time).
    /// [`History::slowest`] ranks by history instead.
    pub fn slowest(&self, n: usize) -> Result<Vec<(String, Duration)>, RepoError> {
        let Some(latest) = self.latest()? else {
            return Ok(Vec::new());
        };
        let mut last_times = HashMap::new();
        for record in self.records(latest.id)? {
            if let Some(duration) = record.duration() {
                last_times.insert(record.test_id, duration);
            }
        }
        let mut times: Vec<_> = last_times.into_iter().collect();
        times.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        times.truncate(n);
        Ok(times)
    }

    /// The newest run's time split by worker (route code), the busiest first: how many test runs each had, their
    /// total time, and its slowest test. Runs without a route code count under `""`.
    pub fn time_by_worker(&self) -> Result<Vec<WorkerTime>, RepoError> {
        let Some(latest) = self.latest()? else {
            return Ok(Vec::new());
        };
        Ok(by_worker(self.records(latest.id)?))
    }

    /// Every stored run's test runs split by worker (route code), the busiest first; with `test`, only that
    /// test's: where a test fails, and where it is slow. Reads every stored stream.
    pub fn history_by_worker(&self, test: Option<&str>) -> Result<Vec<WorkerTime>, RepoError> {
        let mut records = Vec::new();
        for run in self.runs()? {
            records.extend(
                self.records(run.id)?
                    .into_iter()
                    .filter(|record| test.is_none_or(|test| record.test_id == test)),
            );
        }
        Ok(by_worker(records))
    }

    /// The flaky tests by history (see [`History::flaky`]).
    pub fn flaky(&self) -> Result<Vec<FlakyTest>, RepoError> {
        Ok(self.history()?.flaky())
    }
}

/// Timed test runs split by their worker, the busiest first.
fn by_worker(records: impl IntoIterator<Item = TestRecord>) -> Vec<WorkerTime> {
    let mut workers: HashMap<String, WorkerTime> = HashMap::new();
    for record in records {
        let Some(duration) = record.duration() else {
            continue;
        };
        let route = record.route_code.clone().unwrap_or_default();
        let worker = workers.entry(route.clone()).or_insert_with(|| WorkerTime {
            worker: route,
            runs: 0,
            failed: 0,
            total: Duration::ZERO,
            slowest: (record.test_id.clone(), duration),
        });
        worker.runs += 1;
        if RunStatus::of(record.status).outcome() == Some(Outcome::Failed) {
            worker.failed += 1;
        }
        worker.total += duration;
        if duration > worker.slowest.1 {
            worker.slowest = (record.test_id, duration);
        }
    }
    let mut workers: Vec<WorkerTime> = workers.into_values().collect();
    workers.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.worker.cmp(&b.worker)));
    workers
}

/// How a run changes the failing set: an interrupted run did not reach every
/// test, so it only merges.
fn failing_kind(info: &RunInfo) -> RunKind {
    match info.state {
        RunState::Interrupted => RunKind::Partial,
        _ => info.meta.kind,
    }
}
