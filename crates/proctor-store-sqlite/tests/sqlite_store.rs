//! The SQLite store against real database files in temporary directories: the conformance suite every backend
//! passes, and what only a SQLite file has (its migrations on disk, WAL, another process on the same file).
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use proctor_events::RunStatus;
use proctor_store::conformance::{at, job_on, queues, register, t0, TestDatabase, LEASE};
use proctor_store::{JobState, ResultsProgress, Role, Store, StoreError, StreamKind};
use proctor_store_sqlite::{SqliteStore, DATABASE_FILE};
use tempfile::TempDir;

/// A fresh SQLite file in a temporary directory.
struct SqliteDatabase {
    dir: TempDir,
    store: SqliteStore,
}

impl SqliteDatabase {
    fn new() -> SqliteDatabase {
        let (dir, store) = new_store();
        SqliteDatabase { dir, store }
    }
}

impl TestDatabase for SqliteDatabase {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn open_another(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.dir.path().join("data")).expect("another instance"))
    }

    fn empty_sibling(&self) -> Box<dyn TestDatabase> {
        Box::new(SqliteDatabase::new())
    }
}

proctor_store::conformance_tests!(SqliteDatabase::new());

fn new_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("data")).expect("the store opens");
    (dir, store)
}

/// How many migrations ship: one SQL file each.
fn shipped_migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    std::fs::read_dir(dir).expect("the migrations").count() as i64
}

#[test]
fn migrations_build_the_schema_from_an_empty_directory_in_wal_mode() {
    let (_dir, store) = new_store();
    let raw = rusqlite::Connection::open(store.path()).expect("the file opens");
    let versions: Vec<i64> = raw
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .expect("schema_migrations is readable");
    assert_eq!(versions, (1..=shipped_migrations()).collect::<Vec<_>>());
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

#[test]
fn reopening_keeps_the_data_and_applies_no_migration_twice() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (job_id, token_secret) = {
        let store = SqliteStore::open(dir.path()).expect("the store opens");
        register(&store, "a1", &["lab"], t0());
        let job = store.submit_job(&job_on("lab", 3), t0()).expect("submit");
        store
            .append_stream(&job.id, StreamKind::Log, 0, Some("test"), b"hello ")
            .expect("append");
        let token = store.create_token(Role::User, &[], t0()).expect("token");
        (job.id, token.secret)
    };
    let store = SqliteStore::open(dir.path()).expect("the store reopens");
    let job = store.job(&job_id).expect("the job survived");
    assert_eq!(
        (job.state, job.priority, job.created_at),
        (JobState::Queued, 3, t0())
    );
    assert_eq!(job.definition["test_data"]["test_cmds"], "true");
    assert_eq!(store.stream_end(&job_id, StreamKind::Log).expect("end"), 6);
    assert!(store.verify_token(&token_secret).expect("verify").is_some());
    assert_eq!(store.agents().expect("agents")[0].queues, ["lab"]);
    let raw = rusqlite::Connection::open(store.path()).expect("the file opens");
    let applied: i64 = raw
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .expect("count");
    assert_eq!(applied, shipped_migrations());
}

#[test]
fn a_database_from_a_newer_proctor_is_refused() {
    let (dir, store) = new_store();
    let path = store.path().to_owned();
    drop(store);
    let raw = rusqlite::Connection::open(&path).expect("the file opens");
    raw.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
        [],
    )
    .expect("insert");
    drop(raw);
    let error = SqliteStore::open(&dir.path().join("data")).expect_err("a newer schema is refused");
    assert!(
        matches!(
            error,
            StoreError::SchemaTooNew {
                found: 99,
                known
            } if known == shipped_migrations()
        ),
        "{error}"
    );
}

/// Python's own sqlite3 module, as another process, while the store is open: it reads what the store wrote, and
/// while it holds the write lock the store's claim waits for it instead of failing.
#[test]
fn another_process_shares_the_database_file() {
    let (_dir, store) = new_store();
    register(&store, "a1", &["lab"], t0());
    let job = store
        .submit_job(&job_on("lab", 7), t0())
        .expect("submit")
        .id;
    let script = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
print(db.execute("PRAGMA journal_mode").fetchone()[0])
print(db.execute("SELECT id, state, priority FROM jobs").fetchone())
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(0.5)
db.execute("UPDATE jobs SET priority = 8")
db.execute("COMMIT")
"#;
    let mut python = Command::new(proctor_testkit::python())
        .args(["-c", script])
        .arg(store.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut lines = BufReader::new(python.stdout.take().expect("piped stdout")).lines();
    let mut next_line = || {
        lines
            .next()
            .expect("a line from python")
            .expect("readable output")
    };
    assert_eq!(next_line(), "wal");
    assert_eq!(next_line(), format!("('{job}', 'queued', 7)"));
    assert_eq!(next_line(), "locked");
    let claimed = store
        .claim_job("a1", &queues(&["lab"]), at(1), LEASE)
        .expect("the claim waits for the lock");
    assert_eq!(
        claimed.map(|claim| claim.job.priority),
        Some(8),
        "the claim ran after python's commit"
    );
    assert!(python.wait().expect("python ends").success());
}

/// A database of the schema before test runs (version 4) keeps its per-test rows readable, as runs of the job's
/// last attempt; a test left `inprogress` on a job that ended did not finish.
#[test]
fn per_test_rows_from_before_test_runs_are_read_as_runs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let path = dir.path().join("data").join(DATABASE_FILE);
    let raw = rusqlite::Connection::open(&path).expect("the file opens");
    raw.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .unwrap();
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> = std::fs::read_dir(migrations)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (version, file) in files.iter().take(4).enumerate() {
        raw.execute_batch(&std::fs::read_to_string(file).unwrap())
            .unwrap();
        raw.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'old', 0)",
            [version as i64 + 1],
        )
        .unwrap();
    }
    raw.execute_batch(
        "INSERT INTO queues (name, created_at) VALUES ('lab', 0);
         INSERT INTO agents (id, state, registered_at, last_heartbeat) VALUES ('a1', 'idle', 0, 0), ('a2', 'busy', 0, 0);
         INSERT INTO jobs (id, queue, definition, state, attempts, max_attempts, created_at, agent_id)
         VALUES ('old', 'lab', '{}', 'failed', 1, 1, 0, 'a1'), ('live', 'lab', '{}', 'running', 2, 2, 0, 'a2');
         INSERT INTO test_results (job_id, test_id, status, duration_us, started_at)
         VALUES ('old', 't.ok', 'success', 1500, 10), ('old', 't.hang', 'inprogress', NULL, 20),
                ('live', 't.now', 'inprogress', NULL, 30);
         INSERT INTO results_parsing (job_id, parsed_offset) VALUES ('live', 40);",
    )
    .unwrap();
    drop(raw);
    let store = SqliteStore::open(&dir.path().join("data")).expect("the store migrates");
    let old: Vec<_> = store
        .test_runs("old")
        .expect("runs")
        .into_iter()
        .map(|r| {
            (
                r.test_id,
                r.attempt,
                r.status,
                r.reason.is_some(),
                r.duration_us,
                r.agent_id,
            )
        })
        .collect();
    assert_eq!(
        old,
        [
            (
                "t.hang".into(),
                1,
                RunStatus::Unfinished,
                true,
                None,
                Some("a1".into())
            ),
            (
                "t.ok".into(),
                1,
                RunStatus::Success,
                false,
                Some(1500),
                Some("a1".into())
            ),
        ]
    );
    let live = store.open_test_runs("live", 2).expect("open runs");
    assert_eq!((live.len(), live[0].status), (1, RunStatus::Running));
    assert_eq!(
        store.results_progress("live").expect("progress"),
        ResultsProgress {
            attempt: 2,
            parsed_offset: 40,
            problem: None,
        }
    );
}

#[test]
fn tokens_are_stored_only_as_hashes() {
    let (_dir, store) = new_store();
    let issued = store.create_token(Role::Agent, &[], t0()).expect("create");
    let raw = rusqlite::Connection::open(store.path()).expect("the file opens");
    let stored: String = raw
        .query_row("SELECT group_concat(secret_hash) FROM tokens", [], |row| {
            row.get(0)
        })
        .expect("hashes");
    assert!(
        !stored.contains(&issued.secret[8..]),
        "only hashes are stored"
    );
}

/// Issue 14: migration 7 rebuilds `stream_chunks` to take the `work` and `work-done` streams; a database of the
/// schema before it (version 6) keeps every chunk, and the rebuilt table still refuses an unknown stream.
#[test]
fn stream_chunks_from_before_the_work_streams_survive_their_migration() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let path = dir.path().join("data").join(DATABASE_FILE);
    let raw = rusqlite::Connection::open(&path).expect("the file opens");
    raw.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .unwrap();
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> = std::fs::read_dir(migrations)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (version, file) in files.iter().take(6).enumerate() {
        raw.execute_batch(&std::fs::read_to_string(file).unwrap())
            .unwrap();
        raw.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'old', 0)",
            [version as i64 + 1],
        )
        .unwrap();
    }
    let refused = raw.execute(
        "INSERT INTO stream_chunks (job_id, stream, start_offset, bytes) VALUES ('j', 'work', 0, x'00')",
        [],
    );
    assert!(refused.is_err(), "version 6 knows only log and results");
    raw.execute_batch(
        "INSERT INTO queues (name, created_at) VALUES ('lab', 0);
         INSERT INTO jobs (id, queue, definition, state, attempts, max_attempts, created_at)
         VALUES ('j', 'lab', '{}', 'queued', 0, 1, 0);
         INSERT INTO stream_chunks (job_id, stream, start_offset, phase, bytes)
         VALUES ('j', 'log', 0, 'test', CAST('hello ' AS BLOB)), ('j', 'log', 6, 'test', CAST('world' AS BLOB)),
                ('j', 'results', 0, NULL, x'b3');",
    )
    .unwrap();
    drop(raw);
    let store = SqliteStore::open(&dir.path().join("data")).expect("the store migrates");
    let log: Vec<_> = store
        .read_stream("j", StreamKind::Log, 0, None)
        .expect("log")
        .into_iter()
        .map(|chunk| (chunk.offset, chunk.phase, chunk.bytes))
        .collect();
    assert_eq!(
        log,
        [
            (0, Some("test".to_owned()), b"hello ".to_vec()),
            (6, Some("test".to_owned()), b"world".to_vec())
        ]
    );
    assert_eq!(store.stream_end("j", StreamKind::Results).expect("end"), 1);
    assert_eq!(
        store
            .append_stream("j", StreamKind::Work, 0, None, b"{}\n")
            .expect("work"),
        3
    );
    assert_eq!(
        store
            .append_stream("j", StreamKind::WorkDone, 0, None, b"{}\n")
            .expect("work-done"),
        3
    );
    let raw = rusqlite::Connection::open(store.path()).expect("the file opens");
    raw.pragma_update(None, "foreign_keys", "ON").unwrap();
    let refused = raw.execute(
        "INSERT INTO stream_chunks (job_id, stream, start_offset, bytes) VALUES ('j', 'other', 0, x'00')",
        [],
    );
    assert!(refused.is_err(), "the CHECK still holds");
    let deleted = raw
        .execute("DELETE FROM jobs WHERE id = 'j'", [])
        .and_then(|_| {
            raw.query_row("SELECT COUNT(*) FROM stream_chunks", [], |row| {
                row.get::<_, i64>(0)
            })
        });
    assert_eq!(
        deleted.ok(),
        Some(0),
        "the rebuilt table still cascades from its job (with foreign keys on)"
    );
}
