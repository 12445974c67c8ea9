//! The SQLite implementation of [`proctor_store::Store`]: one database file in the data directory, in WAL mode,
//! migrated on open. It is the embedded default (`proctor up`, a small lab); several server processes may share its
//! file on one machine.
//!
//! ```
//! use std::time::Duration;
//! use proctor_store::{AgentRegistration, NewJob, Store};
//! use proctor_store_sqlite::SqliteStore;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path())?;
//! let now = jiff::Timestamp::now();
//! store.register_agent(&AgentRegistration { id: "a1".into(), queues: vec!["local".into()], images: vec![] }, now)?;
//! let job = store.submit_job(&NewJob {
//!     queue: "local".into(), name: None, priority: 0, definition: serde_json::json!({"job_queue": "local"}),
//!     max_attempts: 1, submitter: None, held: false, recipe_script: None,
//! }, now)?;
//! let claimed = store.claim_job("a1", &["local".into()], now, Duration::from_secs(20))?;
//! assert_eq!(claimed.map(|claim| claim.job.id), Some(job.id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod migrations;
mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Params, Transaction, TransactionBehavior};

use proctor_store::copy::{Table, Value};
use proctor_store::rules::{
    attempt_base_column, finishing_holder, heartbeat_reply, job_list_query, job_page, lease_expiry,
    parse_applies, plan_append, reaped_state, to_i64, to_json, Append,
};
use proctor_store::{secret, DatabaseError, Result, Store, StoreError};
use proctor_store::{
    Agent, AgentRegistration, AgentState, Artifact, CancelOutcome, Claim, FinalState,
    HeartbeatReply, IssuedToken, Job, JobAttempt, JobFilter, JobPage, JobState, JobTokenUse,
    NewJob, PhaseRecord, QueueInfo, ReapedJob, Recipe, ResultsProgress, Role, StreamChunk,
    StreamKind, TestHistoryRun, TestRun, Token,
};
use rows::{
    agent_row, attempt_row, claimed_row, job_row, micros, queue_row, recipe_row, summary_row,
    test_history_row, test_run_row, token_row, JOB_COLUMNS, SUMMARY_COLUMNS, TEST_RUN_COLUMNS,
};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "proctor.sqlite3";

/// How long a statement waits for another connection's write lock (another server process on the same file)
/// before failing; generous because writes are short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`] in a SQLite database file.
///
/// One connection serves the whole process, behind a mutex: SQLite admits one writer at a time anyway, and every
/// operation is short. Several processes may open the same file; WAL mode and immediate transactions keep them
/// consistent.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, as the file [`DATABASE_FILE`], and migrates its schema.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open_file(&data_dir.join(DATABASE_FILE))
    }

    /// Opens (creating if needed) the store in the database file `path` and migrates its schema.
    pub fn open_file(path: &Path) -> Result<Self> {
        let open_error = |source| StoreError::Open {
            location: path.display().to_string(),
            source: database_error(source),
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        configure(&connection).map_err(open_error)?;
        migrations::migrate(&mut connection)?;
        Ok(Self {
            path: path.to_owned(),
            connection: Mutex::new(connection),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` in one immediate transaction (the write lock taken up front, so concurrent writers wait for each
    /// other instead of failing to upgrade a read lock) and commits it.
    fn write<T>(
        &self,
        doing: &'static str,
        work: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<T> {
        // A panic elsewhere while holding the lock leaves the connection usable: its transaction rolled back when
        // dropped.
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .during(doing)?;
        let value = work(&transaction)?;
        transaction.commit().during(doing)?;
        Ok(value)
    }

    /// Runs read-only `work` on the connection.
    fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        work(&connection)
    }
}

/// A column's value as a copy moves it.
fn copy_value(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(number) => Value::Integer(number),
        // The schema has no REAL column; a float would be a hand-made row, kept as its text.
        ValueRef::Real(number) => Value::Text(number.to_string()),
        ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
    }
}

/// A copied value as SQLite stores it.
fn sql_value(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        Value::Null => Sql::Null,
        Value::Integer(number) => Sql::Integer(*number),
        Value::Text(text) => Sql::Text(text.clone()),
        Value::Blob(bytes) => Sql::Blob(bytes.clone()),
    }
}

/// Attaches what the store was doing to a SQLite error.
pub(crate) trait During<T> {
    /// Names the operation that failed.
    fn during(self, doing: &'static str) -> Result<T>;
}

impl<T> During<T> for rusqlite::Result<T> {
    fn during(self, doing: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Database {
            doing,
            source: database_error(source),
        })
    }
}

/// A SQLite error as the store reports it, marked when it means the disk is full.
pub(crate) fn database_error(source: rusqlite::Error) -> DatabaseError {
    let full = source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
    DatabaseError::new(source, full)
}

/// How many prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 128;

/// Sets the connection up: WAL so readers never block the writer, foreign keys enforced.
fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Room for every statement the store runs (rusqlite keeps 16 by default), so none is parsed twice.
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The bundled SQLite (built with STAT4) re-prepares a statement whenever a new bound value might change its
    // plan: the stream-end lookup was parsed anew on every append (3 % of the dispatch benchmark's CPU). The
    // store's queries are small and keyed; one plan each is right, which the planner stability guarantee gives.
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    // In WAL mode NORMAL loses no committed transaction when the process dies, only (possibly the last ones) when
    // the machine does, and spares an fsync per commit.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")
}

/// Statements through the connection's prepared-statement cache. The lab's hot paths (submit, claim, heartbeat,
/// stream appends) run the same few statements over and over; parsing each anew showed in the dispatch profile.
trait Cached {
    /// [`Connection::execute`], prepared once per connection.
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// [`Connection::query_row`], prepared once per connection.
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, read: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, read: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, read)
    }
}

fn job_in(connection: &Connection, job_id: &str) -> Result<Job> {
    connection
        .query_row_cached(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [job_id],
            job_row,
        )
        .optional()
        .during("reading a job")?
        .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

fn ensure_job_exists(connection: &Connection, job_id: &str) -> Result<()> {
    let exists: bool = connection
        .query_row_cached(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
            [job_id],
            |row| row.get(0),
        )
        .during("looking up a job")?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::JobNotFound(job_id.to_owned()))
    }
}

/// What an agent gets with a job it claimed (with its recipe script and whether it has attachments): a fresh token
/// for the job, stored by its hash, replacing an earlier attempt's.
fn hand_over(
    tx: &Transaction,
    (job, recipe_script, has_attachments): (Job, Option<String>, bool),
    now: Timestamp,
) -> Result<Claim> {
    let job_token = secret::generate()?;
    tx.execute_cached(
        "INSERT INTO superseded_job_tokens (secret_hash, job_id, superseded_at)
         SELECT secret_hash, job_id, ?2 FROM job_tokens WHERE job_id = ?1",
        params![job.id, micros(now)],
    )
    .during("retiring the job's earlier token")?;
    tx.execute_cached(
        "INSERT INTO job_tokens (job_id, secret_hash, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (job_id) DO UPDATE SET secret_hash = excluded.secret_hash, created_at = excluded.created_at",
        params![job.id, secret::hash(&job_token), micros(now)],
    )
    .during("handing a claimed job over")?;
    let log_base = stream_end_in(tx, &job.id, StreamKind::Log)?;
    let results_base = stream_end_in(tx, &job.id, StreamKind::Results)?;
    tx.execute_cached(
        "INSERT INTO job_attempts (job_id, attempt, agent_id, claimed_at, log_base, results_base)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            job.id,
            job.attempts,
            job.agent_id,
            micros(now),
            to_i64("stream offset", log_base)?,
            to_i64("stream offset", results_base)?
        ],
    )
    .during("recording the job's attempt")?;
    Ok(Claim {
        job,
        job_token,
        recipe_script,
        has_attachments,
    })
}

/// Records a queue name, marking it served when an agent names it.
fn upsert_queue(connection: &Connection, name: &str, now: Timestamp, served: bool) -> Result<()> {
    let served_at = served.then(|| micros(now));
    connection
        .execute_cached(
            "INSERT INTO queues (name, created_at, first_served_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET first_served_at = COALESCE(queues.first_served_at, excluded.first_served_at)",
            params![name, micros(now), served_at],
        )
        .during("recording a queue")?;
    Ok(())
}

/// Sets an agent `busy` or `idle` by whether it holds running jobs, leaving maintenance alone.
fn refresh_agent_state(connection: &Connection, agent_id: &str) -> Result<()> {
    connection
        .execute_cached(
            "UPDATE agents SET state = CASE
                 WHEN state = 'maintenance' THEN state
                 WHEN EXISTS (SELECT 1 FROM jobs WHERE agent_id = agents.id AND state = 'running') THEN 'busy'
                 ELSE 'idle' END
             WHERE id = ?1",
            [agent_id],
        )
        .during("updating an agent's state")?;
    Ok(())
}

fn agent_in(connection: &Connection, agent_id: &str) -> Result<Agent> {
    let agent = connection
        .query_row_cached(
            "SELECT id, state, images, last_heartbeat FROM agents WHERE id = ?1",
            [agent_id],
            agent_row,
        )
        .optional()
        .during("reading an agent")?
        .ok_or_else(|| StoreError::AgentNotFound(agent_id.to_owned()))?;
    let mut statement = connection
        .prepare_cached("SELECT queue FROM agent_queues WHERE agent_id = ?1 ORDER BY queue")
        .during("reading an agent's queues")?;
    let queues = statement
        .query_map([agent_id], |row| row.get(0))
        .during("reading an agent's queues")?
        .collect::<rusqlite::Result<_>>()
        .during("reading an agent's queues")?;
    Ok(Agent { queues, ..agent })
}

/// An agent's state alone (what a claim needs to know, without its queues and images).
fn agent_state_in(connection: &Connection, agent_id: &str) -> Result<AgentState> {
    connection
        .query_row_cached(
            "SELECT state FROM agents WHERE id = ?1",
            [agent_id],
            |row| rows::parsed(row, "state"),
        )
        .optional()
        .during("reading an agent")?
        .ok_or_else(|| StoreError::AgentNotFound(agent_id.to_owned()))
}

/// Every agent's queues, sorted, by agent id.
fn queues_served(connection: &Connection) -> Result<BTreeMap<String, Vec<String>>> {
    let mut statement = connection
        .prepare_cached("SELECT agent_id, queue FROM agent_queues ORDER BY agent_id, queue")
        .during("reading agents' queues")?;
    let pairs = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .during("reading agents' queues")?;
    let mut by_agent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in pairs {
        let (agent, queue) = pair.during("reading agents' queues")?;
        by_agent.entry(agent).or_default().push(queue);
    }
    Ok(by_agent)
}

/// Where a stream ends: chunks never overlap, so it is where the last one ends.
const STREAM_END: &str = "SELECT (SELECT start_offset + length(bytes) FROM stream_chunks
                                  WHERE job_id = j.id AND stream = ?2 ORDER BY start_offset DESC LIMIT 1)
                          FROM jobs j WHERE j.id = ?1";

/// The end offset of a stream (0 when empty). Read from the job's row, so one query also answers
/// [`StoreError::JobNotFound`].
fn stream_end_in(connection: &Connection, job_id: &str, stream: StreamKind) -> Result<u64> {
    connection
        .query_row_cached(STREAM_END, params![job_id, stream.as_str()], |row| {
            row.get::<_, Option<u64>>(0)
        })
        .optional()
        .during("reading a stream's end")?
        .map(Option::unwrap_or_default)
        .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

impl Store for SqliteStore {
    fn queues(&self) -> Result<Vec<QueueInfo>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(QUEUE_QUERY_ALL)
                .during("listing queues")?;
            let rows = statement
                .query_map([], queue_row)
                .during("listing queues")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("listing queues")
        })
    }

    fn queue(&self, name: &str) -> Result<Option<QueueInfo>> {
        self.read(|connection| {
            connection
                .query_row_cached(QUEUE_QUERY_ONE, [name], queue_row)
                .optional()
                .during("reading a queue")
        })
    }

    fn register_agent(&self, agent: &AgentRegistration, now: Timestamp) -> Result<Agent> {
        let images = to_json("advertised images", &agent.images)?;
        self.write("registering an agent", |tx| {
            tx.execute_cached(
                "INSERT INTO agents (id, state, images, registered_at, last_heartbeat) VALUES (?1, 'idle', ?2, ?3, ?3)
                 ON CONFLICT (id) DO UPDATE SET images = excluded.images, last_heartbeat = excluded.last_heartbeat",
                params![agent.id, images, micros(now)],
            )
            .during("registering an agent")?;
            tx.execute_cached("DELETE FROM agent_queues WHERE agent_id = ?1", [&agent.id]).during("registering an agent")?;
            for queue in &agent.queues {
                upsert_queue(tx, queue, now, true)?;
                tx.execute_cached(
                    "INSERT INTO agent_queues (agent_id, queue) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    [&agent.id, queue],
                )
                .during("registering an agent")?;
            }
            refresh_agent_state(tx, &agent.id)?;
            agent_in(tx, &agent.id)
        })
    }

    fn set_agent_state(&self, agent_id: &str, state: AgentState) -> Result<()> {
        self.write("setting an agent's state", |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE agents SET state = ?2 WHERE id = ?1",
                    [agent_id, state.as_str()],
                )
                .during("setting an agent's state")?;
            if changed == 0 {
                return Err(StoreError::AgentNotFound(agent_id.to_owned()));
            }
            // Back in service means idle or busy, whichever is true.
            if matches!(state, AgentState::Idle | AgentState::Busy) {
                refresh_agent_state(tx, agent_id)?;
            }
            Ok(())
        })
    }

    fn agents(&self) -> Result<Vec<Agent>> {
        self.read(|connection| {
            let mut queues = queues_served(connection)?;
            let mut statement = connection
                .prepare_cached("SELECT id, state, images, last_heartbeat FROM agents ORDER BY id")
                .during("listing agents")?;
            let rows = statement
                .query_map([], agent_row)
                .during("listing agents")?;
            rows.map(|row| {
                let agent = row.during("listing agents")?;
                Ok(Agent {
                    queues: queues.remove(&agent.id).unwrap_or_default(),
                    ..agent
                })
            })
            .collect()
        })
    }

    fn online_agents(&self) -> Result<u64> {
        self.read(|connection| {
            connection
                .query_row_cached(
                    "SELECT COUNT(*) FROM agents WHERE state <> 'offline'",
                    [],
                    |row| row.get(0),
                )
                .during("counting online agents")
        })
    }

    fn mark_silent_agents_offline(&self, silent_since: Timestamp) -> Result<Vec<String>> {
        self.write("marking silent agents offline", |tx| {
            let mut statement = tx
                .prepare_cached(
                    "UPDATE agents SET state = 'offline'
                     WHERE last_heartbeat < ?1 AND state IN ('idle', 'busy') RETURNING id",
                )
                .during("marking silent agents offline")?;
            let ids = statement
                .query_map([micros(silent_since)], |row| row.get(0))
                .during("marking agents offline")?;
            let mut ids: Vec<String> = ids
                .collect::<rusqlite::Result<_>>()
                .during("marking silent agents offline")?;
            ids.sort();
            Ok(ids)
        })
    }

    fn submit_job(&self, job: &NewJob, now: Timestamp) -> Result<Job> {
        if job.max_attempts == 0 {
            return Err(StoreError::NoAttempts);
        }
        let definition = to_json("job definition", &job.definition)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.write("submitting a job", |tx| {
            upsert_queue(tx, &job.queue, now, false)?;
            tx.query_row_cached(
                &format!(
                    "INSERT INTO jobs (id, queue, name, priority, definition, state, max_attempts, submitter, held,
                                       created_at, recipe_script)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10) RETURNING {JOB_COLUMNS}"
                ),
                params![
                    id,
                    job.queue,
                    job.name,
                    job.priority,
                    definition,
                    job.max_attempts,
                    job.submitter,
                    job.held,
                    micros(now),
                    job.recipe_script
                ],
                job_row,
            )
            .during("submitting a job")
        })
    }

    fn job(&self, job_id: &str) -> Result<Job> {
        self.read(|connection| job_in(connection, job_id))
    }

    fn job_queue(&self, job_id: &str) -> Result<String> {
        self.read(|connection| {
            connection
                .query_row_cached("SELECT queue FROM jobs WHERE id = ?1", [job_id], |row| {
                    row.get(0)
                })
                .optional()
                .during("reading a job's queue")?
                .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
        })
    }

    fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage> {
        let (sql, values) = job_list_query(filter, SUMMARY_COLUMNS, '?');
        let values: Vec<rusqlite::types::Value> = values.iter().map(sql_value).collect();
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&sql).during("listing jobs")?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(&values), summary_row)
                .during("listing jobs")?;
            let rows = rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .during("listing jobs")?;
            // One row more than the page was read: whether it exists says whether there is a next page.
            Ok(job_page(rows, filter.limit))
        })
    }

    fn claim_job(
        &self,
        agent_id: &str,
        queues: &[String],
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Claim>> {
        let queues = to_json("queue list", queues)?;
        self.write("claiming a job", |tx| {
            if agent_state_in(tx, agent_id)? == AgentState::Maintenance {
                return Ok(None);
            }
            // One statement picks and takes the job. The outer `state = 'queued'` re-check is what keeps the
            // claim exclusive on databases whose subquery may see a row another transaction is taking
            // (PostgreSQL adds FOR UPDATE SKIP LOCKED to the subquery); SQLite serialises writers anyway.
            let claimed = tx
                .query_row_cached(
                    &format!(
                        "UPDATE jobs
                         SET state = 'running', agent_id = ?1, attempts = attempts + 1, started_at = ?2,
                             lease_expires_at = ?3
                         WHERE id = (SELECT id FROM jobs
                                     WHERE state = 'queued' AND held = 0
                                       AND queue IN (SELECT value FROM json_each(?4))
                                     ORDER BY priority DESC, created_at ASC, seq ASC LIMIT 1)
                           AND state = 'queued'
                         RETURNING {JOB_COLUMNS}, recipe_script,
                                   EXISTS (SELECT 1 FROM attachments WHERE job_id = jobs.id) AS has_attachments"
                    ),
                    params![agent_id, micros(now), lease_expiry(now, lease), queues],
                    claimed_row,
                )
                .optional()
                .during("claiming a job")?;
            tx.execute_cached("UPDATE agents SET last_heartbeat = ?2 WHERE id = ?1", params![agent_id, micros(now)])
                .during("claiming a job")?;
            refresh_agent_state(tx, agent_id)?;
            claimed
                .map(|claimed| hand_over(tx, claimed, now))
                .transpose()
        })
    }

    fn heartbeat(&self, agent_id: &str, now: Timestamp, lease: Duration) -> Result<HeartbeatReply> {
        self.write("recording a heartbeat", |tx| {
            let known = tx
                .execute_cached(
                    "UPDATE agents SET last_heartbeat = ?2 WHERE id = ?1",
                    params![agent_id, micros(now)],
                )
                .during("recording a heartbeat")?;
            if known == 0 {
                return Err(StoreError::AgentNotFound(agent_id.to_owned()));
            }
            // An agent heard from again is no longer offline.
            refresh_agent_state(tx, agent_id)?;
            let mut statement = tx
                .prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?2 WHERE agent_id = ?1 AND state = 'running'
                     RETURNING id, cancel_requested",
                )
                .during("renewing leases")?;
            let renewed = statement
                .query_map(params![agent_id, lease_expiry(now, lease)], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
                })
                .during("renewing leases")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .during("renewing leases")?;
            Ok(heartbeat_reply(renewed))
        })
    }

    fn reap_expired_leases(&self, now: Timestamp) -> Result<Vec<ReapedJob>> {
        self.write("reaping lapsed leases", |tx| {
            let mut statement = tx
                .prepare_cached(
                    "SELECT id, agent_id, queue, cancel_requested, attempts, max_attempts FROM jobs
                     WHERE state = 'running' AND lease_expires_at < ?1 ORDER BY seq",
                )
                .during("finding lapsed leases")?;
            let lapsed = statement
                .query_map([micros(now)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, bool>(3)?,
                        row.get::<_, u32>(4)?,
                        row.get::<_, u32>(5)?,
                    ))
                })
                .during("finding lapsed leases")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .during("finding lapsed leases")?;
            let mut reaped = Vec::with_capacity(lapsed.len());
            for (job_id, agent_id, queue, cancel_requested, attempts, max_attempts) in lapsed {
                let agent = agent_id.as_deref().unwrap_or("(unknown)");
                let (new_state, reason) =
                    reaped_state(cancel_requested, attempts, max_attempts, agent);
                let requeued = new_state == JobState::Queued;
                tx.execute_cached(
                    "UPDATE jobs SET state = ?2, reason = ?3, lease_expires_at = NULL,
                         agent_id = CASE WHEN ?4 THEN NULL ELSE agent_id END,
                         started_at = CASE WHEN ?4 THEN NULL ELSE started_at END,
                         ended_at = CASE WHEN ?4 THEN NULL ELSE ?5 END
                     WHERE id = ?1",
                    params![job_id, new_state.as_str(), reason, requeued, micros(now)],
                )
                .during("reaping a lapsed lease")?;
                tx.execute_cached(
                    "UPDATE job_attempts SET end_reason = ?3 WHERE job_id = ?1 AND attempt = ?2",
                    params![job_id, attempts, reason],
                )
                .during("reaping a lapsed lease")?;
                if let Some(agent) = &agent_id {
                    refresh_agent_state(tx, agent)?;
                }
                reaped.push(ReapedJob {
                    job_id,
                    agent_id,
                    queue,
                    new_state,
                });
            }
            Ok(reaped)
        })
    }

    fn request_cancel(&self, job_id: &str, now: Timestamp) -> Result<CancelOutcome> {
        self.write("cancelling a job", |tx| {
            let job = job_in(tx, job_id)?;
            match job.state {
                JobState::Queued => {
                    tx.execute_cached(
                        "UPDATE jobs SET state = 'cancelled', reason = 'cancelled before it started', ended_at = ?2
                         WHERE id = ?1",
                        params![job_id, micros(now)],
                    )
                    .during("cancelling a job")?;
                    Ok(CancelOutcome::Cancelled)
                }
                JobState::Running => {
                    tx.execute_cached("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", [job_id])
                        .during("cancelling a job")?;
                    Ok(CancelOutcome::Requested)
                }
                state => Ok(CancelOutcome::AlreadyEnded { state }),
            }
        })
    }

    fn finish_job(
        &self,
        job_id: &str,
        agent_id: Option<&str>,
        state: FinalState,
        reason: &str,
        now: Timestamp,
    ) -> Result<Job> {
        self.write("finishing a job", |tx| {
            let job = job_in(tx, job_id)?;
            let holder = finishing_holder(&job, agent_id)?;
            let finished = tx
                .query_row_cached(
                    &format!(
                        "UPDATE jobs SET state = ?2, reason = ?3, ended_at = ?4, lease_expires_at = NULL
                         WHERE id = ?1 RETURNING {JOB_COLUMNS}"
                    ),
                    params![job_id, state.as_str(), reason, micros(now)],
                    job_row,
                )
                .during("finishing a job")?;
            refresh_agent_state(tx, &holder)?;
            Ok(finished)
        })
    }

    fn start_phase(&self, job_id: &str, phase: &str, now: Timestamp) -> Result<()> {
        self.write("recording a phase start", |tx| {
            ensure_job_exists(tx, job_id)?;
            tx.execute_cached(
                "INSERT INTO phases (job_id, name, started_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job_id, name) DO UPDATE
                 SET started_at = excluded.started_at, ended_at = NULL, exit_status = NULL",
                params![job_id, phase, micros(now)],
            )
            .during("recording a phase start")?;
            Ok(())
        })
    }

    fn end_phase(&self, job_id: &str, phase: &str, exit_status: i32, now: Timestamp) -> Result<()> {
        self.write("recording a phase end", |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE phases SET ended_at = ?3, exit_status = ?4 WHERE job_id = ?1 AND name = ?2",
                    params![job_id, phase, micros(now), exit_status],
                )
                .during("recording a phase end")?;
            if changed == 0 {
                return Err(StoreError::PhaseNotFound { job: job_id.to_owned(), phase: phase.to_owned() });
            }
            Ok(())
        })
    }

    fn phases(&self, job_id: &str) -> Result<Vec<PhaseRecord>> {
        self.read(|connection| {
            ensure_job_exists(connection, job_id)?;
            let mut statement = connection
                .prepare_cached(
                    "SELECT name, started_at, ended_at, exit_status FROM phases
                     WHERE job_id = ?1 ORDER BY started_at, rowid",
                )
                .during("listing phases")?;
            let rows = statement
                .query_map([job_id], rows::phase_row)
                .during("listing phases")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("listing phases")
        })
    }

    fn append_stream(
        &self,
        job_id: &str,
        stream: StreamKind,
        offset: u64,
        phase: Option<&str>,
        bytes: &[u8],
    ) -> Result<u64> {
        self.write("appending to a stream", |tx| {
            let base = attempt_base_in(tx, job_id, stream)?;
            let end = stream_end_in(tx, job_id, stream)?;
            let (at, new_bytes, acknowledged) =
                match plan_append(job_id, stream, base, end, offset, bytes)? {
                    Append::Stored(acknowledged) => return Ok(acknowledged),
                    Append::Insert {
                        at,
                        bytes,
                        acknowledged,
                    } => (at, bytes, acknowledged),
                };
            tx.execute_cached(
                "INSERT INTO stream_chunks (job_id, stream, start_offset, phase, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job_id, stream.as_str(), to_i64("stream offset", at)?, phase, new_bytes],
            )
            .during("appending to a stream")?;
            Ok(acknowledged)
        })
    }

    fn stream_end(&self, job_id: &str, stream: StreamKind) -> Result<u64> {
        self.read(|connection| stream_end_in(connection, job_id, stream))
    }

    fn read_stream(
        &self,
        job_id: &str,
        stream: StreamKind,
        from: u64,
        phase: Option<&str>,
    ) -> Result<Vec<StreamChunk>> {
        let from = to_i64("stream offset", from)?;
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT start_offset, phase, bytes FROM stream_chunks
                     WHERE job_id = ?1 AND stream = ?2 AND start_offset + length(bytes) > ?3
                       AND (?4 IS NULL OR phase = ?4)
                     ORDER BY start_offset",
                )
                .during("reading a stream")?;
            let rows = statement
                .query_map(params![job_id, stream.as_str(), from, phase], |row| {
                    Ok(StreamChunk {
                        offset: row.get(0)?,
                        phase: row.get(1)?,
                        bytes: row.get(2)?,
                    })
                })
                .during("reading a stream")?;
            let chunks: Vec<StreamChunk> = rows
                .collect::<rusqlite::Result<_>>()
                .during("reading a stream")?;
            // A chunk proves its job exists (a foreign key); only an empty answer needs to ask.
            if chunks.is_empty() {
                ensure_job_exists(connection, job_id)?;
            }
            Ok(chunks)
        })
    }

    fn test_runs(&self, job_id: &str) -> Result<Vec<TestRun>> {
        self.read(|connection| {
            ensure_job_exists(connection, job_id)?;
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {TEST_RUN_COLUMNS} FROM test_runs WHERE job_id = ?1 ORDER BY test_id, attempt, seq"
                ))
                .during("reading test runs")?;
            let rows = statement.query_map([job_id], test_run_row).during("reading test runs")?;
            rows.collect::<rusqlite::Result<_>>().during("reading test runs")
        })
    }

    fn test_history(&self, test_id: &str, jobs: u32) -> Result<Vec<TestHistoryRun>> {
        self.read(|connection| {
            let columns: Vec<String> = TEST_RUN_COLUMNS
                .split(", ")
                .map(|column| format!("r.{column}"))
                .collect();
            let mut statement = connection
                .prepare_cached(&format!(
                    "WITH recent AS (
                         SELECT j.id, j.name, j.created_at, j.seq FROM jobs j
                         WHERE j.id IN (SELECT DISTINCT job_id FROM test_runs WHERE test_id = ?1)
                         ORDER BY j.created_at DESC, j.seq DESC LIMIT ?2)
                     SELECT recent.id AS job_id, recent.name AS job_name, recent.created_at AS job_created_at, {}
                     FROM recent JOIN test_runs r ON r.job_id = recent.id AND r.test_id = ?1
                     ORDER BY recent.created_at DESC, recent.seq DESC, r.attempt, r.seq",
                    columns.join(", ")
                ))
                .during("reading a test's history")?;
            let rows = statement
                .query_map(params![test_id, jobs], test_history_row)
                .during("reading a test's history")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("reading a test's history")
        })
    }

    fn open_test_runs(&self, job_id: &str, attempt: u32) -> Result<Vec<TestRun>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {TEST_RUN_COLUMNS} FROM test_runs
                     WHERE job_id = ?1 AND attempt = ?2 AND status = 'inprogress' ORDER BY seq"
                ))
                .during("reading open test runs")?;
            let rows = statement
                .query_map(params![job_id, attempt], test_run_row)
                .during("reading open test runs")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("reading open test runs")
        })
    }

    fn job_attempts(&self, job_id: &str) -> Result<Vec<JobAttempt>> {
        self.read(|connection| {
            ensure_job_exists(connection, job_id)?;
            let mut statement = connection
                .prepare_cached(
                    "SELECT attempt, agent_id, claimed_at, log_base, results_base, end_reason FROM job_attempts
                     WHERE job_id = ?1 ORDER BY attempt",
                )
                .during("reading the job's attempts")?;
            let rows = statement.query_map([job_id], attempt_row).during("reading the job's attempts")?;
            rows.collect::<rusqlite::Result<_>>().during("reading the job's attempts")
        })
    }

    fn results_progress(&self, job_id: &str) -> Result<ResultsProgress> {
        self.read(|connection| results_progress_in(connection, job_id))
    }

    fn record_parsed_results(
        &self,
        job_id: &str,
        from: &ResultsProgress,
        to: &ResultsProgress,
        runs: &[TestRun],
    ) -> Result<bool> {
        self.write("recording parsed test runs", |tx| {
            let current = results_progress_in(tx, job_id)?;
            // A later attempt claimed while the parse read the stream: the bytes past its start are its own, not
            // this attempt's, and the parse must go again knowing it.
            let later_start: Option<u64> = tx
                .query_row_cached(
                    "SELECT MIN(results_base) FROM job_attempts WHERE job_id = ?1 AND attempt > ?2",
                    params![job_id, to.attempt],
                    |row| row.get(0),
                )
                .during("recording parsed test runs")?;
            if !parse_applies(&current, from, to, later_start) {
                return Ok(false);
            }
            for run in runs {
                record_test_run(tx, job_id, run)?;
            }
            tx.execute_cached(
                "INSERT INTO results_parsing (job_id, attempt, parsed_offset, problem) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (job_id) DO UPDATE
                 SET attempt = excluded.attempt, parsed_offset = excluded.parsed_offset, problem = excluded.problem",
                params![job_id, to.attempt, to_i64("results parse offset", to.parsed_offset)?, to.problem],
            )
            .during("recording the results parse offset")?;
            Ok(true)
        })
    }

    fn store_attachments(&self, job_id: &str, tar_gz: &[u8], now: Timestamp) -> Result<()> {
        self.write("storing attachments", |tx| {
            let job = job_in(tx, job_id)?;
            // A held job cancelled before its attachments came has nothing left to release.
            if !job.held || job.state != JobState::Queued {
                return Err(StoreError::NotHeld { job: job.id });
            }
            tx.execute_cached(
                "INSERT INTO attachments (job_id, tar_gz, uploaded_at) VALUES (?1, ?2, ?3)",
                params![job_id, tar_gz, micros(now)],
            )
            .during("storing attachments")?;
            tx.execute_cached("UPDATE jobs SET held = 0 WHERE id = ?1", [job_id])
                .during("releasing a job")?;
            Ok(())
        })
    }

    fn attachments(&self, job_id: &str) -> Result<Option<Vec<u8>>> {
        self.read(|connection| {
            ensure_job_exists(connection, job_id)?;
            connection
                .query_row_cached(
                    "SELECT tar_gz FROM attachments WHERE job_id = ?1",
                    [job_id],
                    |row| row.get(0),
                )
                .optional()
                .during("reading attachments")
        })
    }

    fn put_artifact(&self, job_id: &str, artifact: &Artifact) -> Result<()> {
        let size = to_i64("artifact size", artifact.size)?;
        self.write("storing an artifact", |tx| {
            ensure_job_exists(tx, job_id)?;
            tx.execute_cached(
                "INSERT INTO artifacts (job_id, name, size, blob) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (job_id, name) DO UPDATE SET size = excluded.size, blob = excluded.blob",
                params![job_id, artifact.name, size, artifact.content],
            )
            .during("storing an artifact")?;
            Ok(())
        })
    }

    fn artifacts(&self, job_id: &str) -> Result<Vec<Artifact>> {
        self.read(|connection| {
            ensure_job_exists(connection, job_id)?;
            let mut statement = connection
                .prepare_cached(
                    "SELECT name, size, blob FROM artifacts WHERE job_id = ?1 ORDER BY name",
                )
                .during("listing artifacts")?;
            let rows = statement
                .query_map([job_id], rows::artifact_row)
                .during("listing artifacts")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("listing artifacts")
        })
    }

    fn put_recipe(&self, recipe: &Recipe, now: Timestamp) -> Result<()> {
        let options = to_json("recipe options", &recipe.default_options)?;
        self.write("storing a recipe", |tx| {
            tx.execute_cached(
                "INSERT INTO recipes (name, script, default_options, queue, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET script = excluded.script,
                     default_options = excluded.default_options, queue = excluded.queue,
                     updated_at = excluded.updated_at",
                params![recipe.name, recipe.script, options, recipe.queue, micros(now)],
            )
            .during("storing a recipe")?;
            Ok(())
        })
    }

    fn recipe(&self, name: &str) -> Result<Recipe> {
        self.read(|connection| {
            connection
                .query_row_cached(
                    "SELECT name, script, default_options, queue FROM recipes WHERE name = ?1",
                    [name],
                    recipe_row,
                )
                .optional()
                .during("reading a recipe")?
                .ok_or_else(|| StoreError::RecipeNotFound(name.to_owned()))
        })
    }

    fn recipes(&self) -> Result<Vec<Recipe>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT name, script, default_options, queue FROM recipes ORDER BY name",
                )
                .during("listing recipes")?;
            let rows = statement
                .query_map([], recipe_row)
                .during("listing recipes")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("listing recipes")
        })
    }

    fn remove_recipe(&self, name: &str) -> Result<()> {
        self.write("removing a recipe", |tx| {
            let removed = tx
                .execute_cached("DELETE FROM recipes WHERE name = ?1", [name])
                .during("removing a recipe")?;
            if removed == 0 {
                return Err(StoreError::RecipeNotFound(name.to_owned()));
            }
            Ok(())
        })
    }

    fn create_token(&self, role: Role, queues: &[String], now: Timestamp) -> Result<IssuedToken> {
        let secret = secret::generate()?;
        let queues_json = to_json("token queues", queues)?;
        let token = Token {
            id: uuid::Uuid::new_v4().to_string(),
            role,
            queues: queues.to_vec(),
            created_at: now,
        };
        self.write("creating a token", |tx| {
            tx.execute_cached(
                "INSERT INTO tokens (id, secret_hash, role, queues, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token.id, secret::hash(&secret), role.as_str(), queues_json, micros(now)],
            )
            .during("creating a token")?;
            Ok(())
        })?;
        Ok(IssuedToken { token, secret })
    }

    fn verify_token(&self, secret: &str) -> Result<Option<Token>> {
        let hash = secret::hash(secret);
        self.read(|connection| {
            connection
                .query_row_cached(
                    "SELECT id, role, queues, created_at FROM tokens WHERE secret_hash = ?1",
                    [hash],
                    token_row,
                )
                .optional()
                .during("verifying a token")
        })
    }

    fn verify_job_token(&self, secret: &str) -> Result<Option<JobTokenUse>> {
        let hash = secret::hash(secret);
        self.read(|connection| {
            connection
                .query_row_cached(
                    "SELECT t.job_id, j.state, 1 AS current FROM job_tokens t JOIN jobs j ON j.id = t.job_id
                     WHERE t.secret_hash = ?1
                     UNION ALL
                     SELECT s.job_id, j.state, 0 AS current FROM superseded_job_tokens s JOIN jobs j ON j.id = s.job_id
                     WHERE s.secret_hash = ?1",
                    [hash],
                    |row| {
                        Ok(JobTokenUse {
                            job_id: row.get("job_id")?,
                            job_state: rows::parsed(row, "state")?,
                            current: row.get("current")?,
                        })
                    },
                )
                .optional()
                .during("verifying a job token")
        })
    }

    fn export_rows(&self, table: &Table, offset: u64, limit: u32) -> Result<Vec<Vec<Value>>> {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT ?1 OFFSET ?2",
            table.columns.join(", "),
            table.name,
            table.order.join(", ")
        );
        let offset = to_i64("export offset", offset)?;
        self.read(|connection| {
            let mut statement = connection.prepare(&sql).during("exporting rows")?;
            let rows = statement
                .query_map(params![limit, offset], |row| {
                    (0..table.columns.len())
                        .map(|index| row.get_ref(index).map(copy_value))
                        .collect()
                })
                .during("exporting rows")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("exporting rows")
        })
    }

    fn import_rows(&self, table: &Table, rows: &[Vec<Value>]) -> Result<()> {
        let placeholders: Vec<String> = (1..=table.columns.len())
            .map(|index| format!("?{index}"))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            table.columns.join(", "),
            placeholders.join(", ")
        );
        self.write("importing rows", |tx| {
            let mut statement = tx.prepare(&sql).during("importing rows")?;
            for row in rows {
                if row.len() != table.columns.len() {
                    return Err(StoreError::BadRow {
                        table: table.name,
                        detail: format!("{} values for {} columns", row.len(), table.columns.len()),
                    });
                }
                let values = row.iter().map(sql_value);
                statement
                    .execute(rusqlite::params_from_iter(values))
                    .during("importing rows")?;
            }
            Ok(())
        })
    }

    fn has_tokens(&self) -> Result<bool> {
        self.read(|connection| {
            connection
                .query_row_cached("SELECT EXISTS (SELECT 1 FROM tokens)", [], |row| row.get(0))
                .during("counting tokens")
        })
    }

    fn tokens(&self) -> Result<Vec<Token>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, role, queues, created_at FROM tokens ORDER BY created_at, id",
                )
                .during("listing tokens")?;
            let rows = statement
                .query_map([], token_row)
                .during("listing tokens")?;
            rows.collect::<rusqlite::Result<_>>()
                .during("listing tokens")
        })
    }

    fn revoke_token(&self, token_id: &str) -> Result<()> {
        self.write("revoking a token", |tx| {
            let removed = tx
                .execute_cached("DELETE FROM tokens WHERE id = ?1", [token_id])
                .during("revoking a token")?;
            if removed == 0 {
                return Err(StoreError::TokenNotFound(token_id.to_owned()));
            }
            Ok(())
        })
    }
}

/// How far a job's results are parsed (nothing yet, in its first attempt, when it has no parsing row). Read from
/// the job's row, so one query also answers [`StoreError::JobNotFound`].
fn results_progress_in(connection: &Connection, job_id: &str) -> Result<ResultsProgress> {
    connection
        .query_row_cached(
            "SELECT r.attempt, r.parsed_offset, r.problem FROM jobs j LEFT JOIN results_parsing r ON r.job_id = j.id
             WHERE j.id = ?1",
            [job_id],
            |row| {
                Ok(ResultsProgress {
                    attempt: row.get::<_, Option<u32>>(0)?.unwrap_or(1),
                    parsed_offset: row.get::<_, Option<u64>>(1)?.unwrap_or_default(),
                    problem: row.get(2)?,
                })
            },
        )
        .optional()
        .during("reading the results parse offset")?
        .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

/// Where the job's current attempt starts in `stream` (0 before any claim, for jobs claimed before attempts were
/// recorded, and always for the streams that count from the job's start, see [`attempt_base_column`]).
fn attempt_base_in(connection: &Connection, job_id: &str, stream: StreamKind) -> Result<u64> {
    let Some(column) = attempt_base_column(stream) else {
        return Ok(0);
    };
    let base: Option<u64> = connection
        .query_row_cached(
            &format!(
                "SELECT {column} FROM job_attempts WHERE job_id = ?1 ORDER BY attempt DESC LIMIT 1"
            ),
            [job_id],
            |row| row.get(0),
        )
        .optional()
        .during("reading where the job's attempt starts")?;
    Ok(base.unwrap_or_default())
}

/// Records one parsed run: it replaces the open run of its attempt, test id and route code, or is a new row. The
/// agent is the attempt's.
fn record_test_run(tx: &Transaction, job_id: &str, run: &TestRun) -> Result<()> {
    let tags = to_json("test run tags", &run.tags)?;
    let duration = run
        .duration_us
        .map(|us| to_i64("test duration", us))
        .transpose()?;
    let values = params![
        job_id,
        run.attempt,
        run.test_id,
        run.route_code,
        run.retry,
        run.status.as_str(),
        run.reason,
        run.started_at.map(micros),
        run.ended_at.map(micros),
        duration,
        tags
    ];
    let replaced = tx
        .prepare_cached(
            "UPDATE test_runs SET retry = ?5, status = ?6, reason = ?7, started_at = ?8, ended_at = ?9,
                 duration_us = ?10, tags = ?11
             WHERE seq = (SELECT seq FROM test_runs
                          WHERE job_id = ?1 AND attempt = ?2 AND test_id = ?3 AND route_code IS ?4
                            AND status = 'inprogress'
                          ORDER BY seq LIMIT 1)",
        )
        .during("recording a test run")?
        .execute(values)
        .during("recording a test run")?;
    if replaced == 0 {
        tx.prepare_cached(
            "INSERT INTO test_runs (job_id, attempt, test_id, route_code, retry, status, reason, started_at,
                                    ended_at, duration_us, tags, agent_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                     (SELECT COALESCE((SELECT agent_id FROM job_attempts WHERE job_id = ?1 AND attempt = ?2),
                                      (SELECT agent_id FROM jobs WHERE id = ?1))))",
        )
        .during("recording a test run")?
        .execute(values)
        .during("recording a test run")?;
    }
    Ok(())
}

/// A queue with its counts; `{filter}` narrows it to one queue or none.
macro_rules! queue_query {
    ($filter:literal) => {
        concat!(
            "SELECT q.name, q.first_served_at IS NOT NULL,
                 (SELECT COUNT(*) FROM jobs j WHERE j.state = 'queued' AND j.queue = q.name),
                 (SELECT COUNT(*) FROM jobs j WHERE j.state = 'running' AND j.queue = q.name),
                 (SELECT COUNT(*) FROM agent_queues aq JOIN agents a ON a.id = aq.agent_id
                  WHERE aq.queue = q.name AND a.state <> 'offline')
             FROM queues q ",
            $filter,
            " ORDER BY q.name"
        )
    };
}

const QUEUE_QUERY_ALL: &str = queue_query!("");
const QUEUE_QUERY_ONE: &str = queue_query!("WHERE q.name = ?1");

#[cfg(test)]
mod tests {
    use super::*;

    /// Each append looks up where its stream ends; without the planner stability guarantee SQLite re-planned
    /// (re-parsed) that statement at every call, as a newly bound value might change its plan.
    #[test]
    fn the_stream_end_lookup_is_planned_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path()).expect("the store opens");
        let now = Timestamp::from_second(1_700_000_000).expect("a valid timestamp");
        for round in 0..3 {
            let job = NewJob {
                queue: "lab".into(),
                name: None,
                priority: 0,
                definition: serde_json::json!({ "job_queue": "lab" }),
                max_attempts: 1,
                submitter: None,
                held: false,
                recipe_script: None,
            };
            let id = store.submit_job(&job, now).expect("submitted").id;
            for stream in [StreamKind::Log, StreamKind::Results] {
                let mut end = 0;
                for chunk in 0..5 {
                    end = store
                        .append_stream(
                            &id,
                            stream,
                            end,
                            Some("test"),
                            format!("round {round} chunk {chunk}").as_bytes(),
                        )
                        .expect("appended");
                    assert_eq!(store.stream_end(&id, stream).expect("the end"), end);
                }
            }
        }
        let connection = store.connection.lock().expect("the lock");
        let statement = connection.prepare_cached(STREAM_END).expect("cached");
        assert_eq!(
            statement.get_status(rusqlite::StatementStatus::RePrepare),
            0
        );
    }
}
