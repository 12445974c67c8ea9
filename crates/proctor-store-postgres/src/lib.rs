//! The PostgreSQL implementation of [`Store`], for labs with several servers: every server
//! process connects to one database, and no state lives in a process, so any server may take any request.
//! [`PostgresStore::connect`] opens a pool of connections and migrates the schema (numbered SQL files under
//! `migrations/`, recorded in `schema_migrations`); it behaves as the SQLite store does, method for method, which
//! the conformance suite of `proctor-store` checks.
//!
//! ```no_run
//! use std::time::Duration;
//! use proctor_store::{AgentRegistration, Store};
//! use proctor_store_postgres::PostgresStore;
//!
//! // Outside async code (or in `spawn_blocking`): the client blocks, on a runtime of its own.
//! let store = PostgresStore::connect("postgres://proctor@db.example/proctor")?;
//! let now = jiff::Timestamp::now();
//! store.register_agent(&AgentRegistration { id: "a1".into(), queues: vec!["lab".into()], images: vec![] }, now)?;
//! let claim = store.claim_job("a1", &["lab".into()], now, Duration::from_secs(20))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Concurrency
//!
//! Every method is one transaction at PostgreSQL's default isolation, READ COMMITTED, with explicit row locks where
//! two servers could otherwise interleave. READ COMMITTED rather than SERIALIZABLE because the dispatch path is a
//! queue: under SERIALIZABLE concurrent claimers of one queue fail each other with serialization errors (each one
//! retried, each retry racing again), while `FOR UPDATE SKIP LOCKED` under READ COMMITTED lets each claimer take the
//! next job nobody else is taking, without waiting and without retries. The locks:
//!
//! - A claim locks the agent's row, then picks the best queued job with `FOR NO KEY UPDATE SKIP LOCKED`: no job is
//!   claimed twice, and no claimer waits behind another's job.
//! - The reaper takes the lapsed jobs `FOR NO KEY UPDATE SKIP LOCKED`, and re-checks (as READ COMMITTED does for a
//!   locked row) that each is still running with a lapsed lease: replicas reaping at once handle each job once, and
//!   a job whose row is busy (its heartbeat or its finish is being written) is left to the next round.
//! - Appends to a job's streams, the results parse's compare-and-set, cancels, finishes and attachments lock the
//!   job's row first, so concurrent uploaders of one job take turns, and each reads the stream's end, the parse's
//!   progress or the job's state as the last one left it (each statement after the lock sees what was committed
//!   before it).
//! - An agent's `busy`/`idle` state is recomputed from its running jobs only while holding the agent's row lock, by
//!   a statement that starts after the lock is taken, so two transactions changing one agent's jobs cannot leave a
//!   stale state behind.
//! - Locks are taken jobs before agents, and several agents in order of id; the one exception, a claim (agent, then
//!   a job), never waits for a job. Should a deadlock happen anyway (PostgreSQL detects it and aborts one side), the
//!   aborted transaction is run again, up to [`MAX_TRIES`] times.
//!
//! Migrations run in one transaction under a transaction-scoped advisory lock, so servers starting at once apply
//! each migration once.
//!
//! # Changes
//!
//! A write that changes what a waiter may wait for (a job queued, claimed, requeued or ended, a cancel for an agent,
//! a phase, a stream's new bytes) sends [`Change`]s with `pg_notify` on the channel `proctor_changes` just before it
//! commits; PostgreSQL delivers them at the commit, in commit order, and never for a transaction that rolled back.
//! [`Store::follow_changes`] listens on a connection of its own, so each server wakes its waiters for the other
//! servers' writes.
//!
//! # Blocking
//!
//! The `postgres` client is synchronous: each connection drives a small tokio runtime of its own, and calling it
//! from a thread that is running async tasks panics. Call [`PostgresStore::connect`] and every [`Store`] method
//! from a thread that may block: the server calls the store through `spawn_blocking`.

mod changes;
mod location;
mod migrations;

mod rows;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

use proctor_store::copy::{Table, Value};
use proctor_store::{secret, Change, ChangeFeed, DatabaseError, Result, Store, StoreError};
use proctor_store::{
    Agent, AgentRegistration, AgentState, Artifact, CancelOutcome, Claim, FinalState,
    HeartbeatReply, IssuedToken, Job, JobAttempt, JobFilter, JobPage, JobState, JobTokenUse,
    NewJob, PhaseRecord, QueueInfo, ReapedJob, Recipe, ResultsProgress, Role, StreamChunk,
    StreamKind, TestHistoryRun, TestRun, Token,
};

pub use location::without_password;
use proctor_store::rules::{
    attempt_base_column, finishing_holder, heartbeat_reply, job_list_query, job_page, lease_expiry,
    parse_applies, plan_append, reaped_state, to_i64, to_json, Append,
};
use rows::{
    agent_row, artifact_row, attempt_row, chunk_row, claimed_row, job_row, optional_unsigned,
    parsed, phase_row, progress_row, queue_row, recipe_row, small, summary_row, test_history_row,
    test_run_row, token_row, unsigned, RowError, JOB_COLUMNS, SUMMARY_COLUMNS, TEST_RUN_COLUMNS,
    TEST_RUN_COLUMNS_OF_R,
};

/// How many connections a store's pool opens at most, unless [`PostgresStore::connect_with`] says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How many times a transaction is run when PostgreSQL aborts it for a deadlock or a serialization failure.
pub const MAX_TRIES: u32 = 5;

/// How long opening a connection may take, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`] in a PostgreSQL database, shared with any number of other servers.
///
/// It holds a pool of connections (at most [`DEFAULT_MAX_CONNECTIONS`], opened as needed and kept while in use);
/// each operation takes one for its transaction, so operations on many threads run in parallel. Each connection
/// keeps its prepared statements. Cloning the store shares its pool.
///
/// **Blocking:** the `postgres` client runs a small tokio runtime per connection and panics when called on a thread
/// that is running async tasks. Connect, and call every method, from a thread that may block (the server calls
/// the store through `spawn_blocking`). A connection dropped on such a thread (the last clone of the store dropped
/// in async code) is closed on a thread of its own instead.
#[derive(Clone)]
pub struct PostgresStore {
    pool: r2d2::Pool<Manager>,
    /// Where a change feed connects.
    config: postgres::Config,
    location: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .field("pool", &self.pool.state())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`, or a `key=value`
    /// connection string; no TLS), migrates its schema, and opens a pool of up to [`DEFAULT_MAX_CONNECTIONS`].
    ///
    /// Fails with [`StoreError::Open`] when the database cannot be reached, [`StoreError::Migration`] when a
    /// migration fails (the schema stays as it was), and [`StoreError::SchemaTooNew`] when a newer Proctor
    /// migrated the database. Blocks: see the type's documentation.
    ///
    /// The role needs to be allowed to create tables in the database's `public` schema, which its owner is (since
    /// PostgreSQL 15 other roles are not, unless granted `CREATE` on it).
    pub fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::connect_with(url, DEFAULT_MAX_CONNECTIONS)
    }

    /// [`connect`](PostgresStore::connect), with a pool of up to `max_connections` (at least 1). A server needs
    /// about as many as it runs store operations at once (its blocking threads); the database's
    /// `max_connections` must allow every server's pool.
    pub fn connect_with(url: &str, max_connections: u32) -> Result<PostgresStore> {
        let location = without_password(url);
        let open_error = |source: postgres::Error| StoreError::Open {
            location: location.clone(),
            source: database_error(source),
        };
        let mut config: postgres::Config = url.parse().map_err(open_error)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("proctor");
        }
        // One connection of its own for the migrations: a wrong address or password fails here at once, with the
        // server's own answer, rather than as a pool's timeout.
        let mut client = config.connect(NoTls).map_err(open_error)?;
        migrations::migrate(&mut client)?;
        drop(client);
        let max_connections = max_connections.max(1);
        let pool = r2d2::Pool::builder()
            .max_size(max_connections)
            // Opened as operations need them, and kept (up to the maximum) until idle for 10 minutes.
            .min_idle(Some(0))
            // A connection the server closed fails the one operation that finds it (as any database error does)
            // and is then dropped; checking each one on checkout would cost a round trip per operation.
            .test_on_check_out(false)
            .build_unchecked(Manager(PostgresConnectionManager::new(
                config.clone(),
                NoTls,
            )));
        Ok(PostgresStore {
            pool,
            config,
            location,
        })
    }

    /// The database, as messages show it: its URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A connection from the pool.
    fn connection(&self, doing: &'static str) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool.get().map_err(|source| StoreError::Database {
            doing,
            source: DatabaseError::new(source, false),
        })
    }

    /// Runs read-only `work` on a connection, each statement on its own (a read that needs one snapshot is one
    /// statement).
    fn read<T>(
        &self,
        doing: &'static str,
        work: impl FnOnce(&mut Session<'_, Client>) -> Result<T>,
    ) -> Result<T> {
        let mut connection = self.connection(doing)?;
        let (client, statements) = connection.parts();
        work(&mut Session::new(client, statements, doing))
    }

    /// Runs `work` in one READ COMMITTED transaction and commits it, with the changes it made known to every
    /// server's change feed; runs it again when PostgreSQL aborted it for a deadlock or a serialization failure (up
    /// to [`MAX_TRIES`] times in all).
    fn write<T>(
        &self,
        doing: &'static str,
        work: impl Fn(&mut Session<'_, Transaction<'_>>) -> Result<T>,
    ) -> Result<T> {
        let mut connection = self.connection(doing)?;
        let (client, statements) = connection.parts();
        let mut tries = 0;
        loop {
            tries += 1;
            let mut transaction = client.transaction().map_err(|e| failure(doing, e))?;
            let mut session = Session::new(&mut transaction, &mut *statements, doing);
            let outcome = work(&mut session).and_then(|value| {
                session.send_changes()?;
                Ok(value)
            });
            let again = session.retry && tries < MAX_TRIES;
            match outcome {
                Ok(value) => match transaction.commit() {
                    Ok(()) => return Ok(value),
                    Err(error) if is_retryable(&error) && tries < MAX_TRIES => {}
                    Err(error) => return Err(failure(doing, error)),
                },
                // Dropping the transaction rolls it back.
                Err(_) if again => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// The pool's connections: `postgres` clients, each with its prepared statements.
#[derive(Debug)]
struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Ok(Connection::new(self.0.connect()?))
    }

    fn is_valid(&self, connection: &mut Connection) -> Result<(), postgres::Error> {
        self.0.is_valid(connection.parts().0)
    }

    fn has_broken(&self, connection: &mut Connection) -> bool {
        connection
            .client
            .as_mut()
            .is_none_or(|client| self.0.has_broken(client))
    }
}

/// The statements a connection has prepared, by their text.
type Statements = HashMap<String, Statement>;

/// A pooled connection.
struct Connection {
    /// The client; `None` only once dropped.
    client: Option<Client>,
    statements: Statements,
}

impl Connection {
    fn new(client: Client) -> Connection {
        Connection {
            client: Some(client),
            statements: HashMap::new(),
        }
    }

    fn parts(&mut self) -> (&mut Client, &mut Statements) {
        match &mut self.client {
            Some(client) => (client, &mut self.statements),
            None => unreachable!("a connection's client is only taken when it is dropped"),
        }
    }
}

impl Drop for Connection {
    /// Closing a client blocks on its runtime, which panics on a thread that runs async tasks: there, the client is
    /// closed on a thread of its own.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Some(client) = self.client.take() {
                std::thread::spawn(move || drop(client));
            }
        }
    }
}

/// One operation's use of a connection (in a transaction for writes): statements prepared once per connection,
/// errors told what the store was doing.
struct Session<'a, C> {
    client: &'a mut C,
    statements: &'a mut Statements,
    doing: &'static str,
    /// Set when a statement failed for a deadlock or a serialization failure: the transaction may be run again.
    retry: bool,
    /// What the transaction changed, for the other servers' waiters.
    changes: Vec<Change>,
}

/// A statement's values.
type Params<'a> = [&'a (dyn ToSql + Sync)];

impl<'a, C: GenericClient> Session<'a, C> {
    fn new(client: &'a mut C, statements: &'a mut Statements, doing: &'static str) -> Self {
        Session {
            client,
            statements,
            doing,
            retry: false,
            changes: Vec::new(),
        }
    }

    /// Records a change to send when the transaction commits.
    fn changed(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Sends the recorded changes (PostgreSQL delivers them when the transaction commits).
    fn send_changes(&mut self) -> Result<()> {
        let payloads = changes::payloads(&self.changes);
        if !payloads.is_empty() {
            self.execute(changes::NOTIFY, &[&payloads])?;
        }
        Ok(())
    }

    /// A database error as the store reports it, noting whether running the transaction again may succeed.
    fn fail(&mut self, error: postgres::Error) -> StoreError {
        self.retry |= is_retryable(&error);
        failure(self.doing, error)
    }

    fn decode_failure(&mut self, error: RowError) -> StoreError {
        match error {
            RowError::Postgres(error) => self.fail(error),
            error => StoreError::Database {
                doing: self.doing,
                source: DatabaseError::new(error, false),
            },
        }
    }

    /// The statement `sql`, prepared on this connection the first time it runs there.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(|e| self.fail(e))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs a statement; how many rows it changed.
    fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let statement = self.statement(sql)?;
        self.client
            .execute(&statement, params)
            .map_err(|e| self.fail(e))
    }

    /// Runs a query and reads every row it returns.
    fn rows<T>(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        read: impl Fn(&Row) -> Result<T, RowError>,
    ) -> Result<Vec<T>> {
        let statement = self.statement(sql)?;
        let rows = self
            .client
            .query(&statement, params)
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|row| read(row).map_err(|e| self.decode_failure(e)))
            .collect()
    }

    /// Runs a query and reads its first row, if it returns any.
    fn row<T>(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        read: impl Fn(&Row) -> Result<T, RowError>,
    ) -> Result<Option<T>> {
        let statement = self.statement(sql)?;
        let rows = self
            .client
            .query(&statement, params)
            .map_err(|e| self.fail(e))?;
        rows.first()
            .map(|row| read(row).map_err(|e| self.decode_failure(e)))
            .transpose()
    }
}

/// Whether PostgreSQL aborted the transaction so that it may succeed when run again.
fn is_retryable(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn failure(doing: &'static str, error: postgres::Error) -> StoreError {
    StoreError::Database {
        doing,
        source: database_error(error),
    }
}

/// A PostgreSQL error as the store reports it, marked when it means the database's disk is full (SQLSTATE 53100,
/// `disk_full`).
pub(crate) fn database_error(error: postgres::Error) -> DatabaseError {
    let full = error.code() == Some(&SqlState::DISK_FULL);
    DatabaseError::new(error, full)
}

fn job_in<C: GenericClient>(s: &mut Session<'_, C>, job_id: &str) -> Result<Job> {
    s.row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
        &[&job_id],
        job_row,
    )?
    .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

/// Locks the job's row for this transaction (so that its other statements see the job as the last writer left
/// it, and the next writer sees this one's changes).
fn lock_job<C: GenericClient>(s: &mut Session<'_, C>, job_id: &str) -> Result<()> {
    s.row(
        "SELECT 1 FROM jobs WHERE id = $1 FOR NO KEY UPDATE",
        &[&job_id],
        |_| Ok(()),
    )?
    .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

fn ensure_job_exists<C: GenericClient>(s: &mut Session<'_, C>, job_id: &str) -> Result<()> {
    let exists = s
        .row(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1) AS found",
            &[&job_id],
            |row| Ok(row.try_get::<_, bool>("found")?),
        )?
        .unwrap_or_default();
    if exists {
        Ok(())
    } else {
        Err(StoreError::JobNotFound(job_id.to_owned()))
    }
}

/// What an agent gets with a job it claimed (with its recipe script and whether it has attachments): a fresh token
/// for the job, stored by its hash, replacing an earlier attempt's (which is kept as superseded), and the attempt's
/// record with where its streams start.
fn hand_over<C: GenericClient>(
    s: &mut Session<'_, C>,
    (job, recipe_script, has_attachments): (Job, Option<String>, bool),
    now: i64,
) -> Result<Claim> {
    let job_token = secret::generate()?;
    s.execute(
        "WITH retired AS (
             INSERT INTO superseded_job_tokens (secret_hash, job_id, superseded_at)
             SELECT secret_hash, job_id, $3 FROM job_tokens WHERE job_id = $1
         ), attempt AS (
             INSERT INTO job_attempts (job_id, attempt, agent_id, claimed_at, log_base, results_base)
             VALUES ($1, $4, $5, $3,
                     COALESCE((SELECT start_offset + octet_length(bytes) FROM stream_chunks
                               WHERE job_id = $1 AND stream = 'log' ORDER BY start_offset DESC LIMIT 1), 0),
                     COALESCE((SELECT start_offset + octet_length(bytes) FROM stream_chunks
                               WHERE job_id = $1 AND stream = 'results' ORDER BY start_offset DESC LIMIT 1), 0))
         )
         INSERT INTO job_tokens (job_id, secret_hash, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (job_id) DO UPDATE SET secret_hash = excluded.secret_hash, created_at = excluded.created_at",
        &[
            &job.id,
            &secret::hash(&job_token),
            &now,
            &i64::from(job.attempts),
            &job.agent_id,
        ],
    )?;
    Ok(Claim {
        job,
        job_token,
        recipe_script,
        has_attachments,
    })
}

/// Records a job's queue name (new queues are not served).
fn record_queue<C: GenericClient>(s: &mut Session<'_, C>, name: &str, now: i64) -> Result<()> {
    // DO NOTHING takes no lock on an existing queue's row: submissions to one queue do not queue up behind each
    // other.
    s.execute(
        "INSERT INTO queues (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &now],
    )?;
    Ok(())
}

/// Records the queues an agent serves, marking them served.
fn record_served_queues<C: GenericClient>(
    s: &mut Session<'_, C>,
    names: &[String],
    now: i64,
) -> Result<()> {
    s.execute(
        "INSERT INTO queues (name, created_at, first_served_at) SELECT name, $2, $2 FROM unnest($1::TEXT[]) AS name
         ON CONFLICT (name) DO NOTHING",
        &[&names, &now],
    )?;
    // Only queues never served before are written (and so locked).
    s.execute(
        "UPDATE queues SET first_served_at = $2 WHERE name = ANY($1) AND first_served_at IS NULL",
        &[&names, &now],
    )?;
    Ok(())
}

/// Locks agents' rows, in order of id (the order every transaction that locks several takes them in).
fn lock_agents<C: GenericClient>(s: &mut Session<'_, C>, agent_ids: &[String]) -> Result<()> {
    s.rows(
        "SELECT id FROM agents WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        &[&agent_ids],
        |_| Ok(()),
    )?;
    Ok(())
}

/// Whether an agent is `busy` or `idle`, from whether it holds running jobs (maintenance stays).
const AGENT_STATE: &str = "CASE
    WHEN state = 'maintenance' THEN state
    WHEN EXISTS (SELECT 1 FROM jobs WHERE agent_id = agents.id AND state = 'running') THEN 'busy'
    ELSE 'idle' END";

/// Sets an agent `busy` or `idle` by whether it holds running jobs, leaving maintenance alone. The caller holds
/// the agent's row lock (taken by an earlier statement), so this statement sees every committed change to the
/// agent's jobs, and any later one waits for this transaction.
fn refresh_agent_state<C: GenericClient>(s: &mut Session<'_, C>, agent_id: &str) -> Result<()> {
    s.execute(
        &format!("UPDATE agents SET state = {AGENT_STATE} WHERE id = $1"),
        &[&agent_id],
    )?;
    Ok(())
}

/// An agent with its queues, sorted; `{filter}` narrows the list.
macro_rules! agent_query {
    ($filter:literal) => {
        concat!(
            "SELECT a.id, a.state, a.images, a.last_heartbeat,
                    COALESCE(array_agg(q.queue ORDER BY q.queue) FILTER (WHERE q.queue IS NOT NULL), '{}') AS queues
             FROM agents a LEFT JOIN agent_queues q ON q.agent_id = a.id ",
            $filter,
            " GROUP BY a.id ORDER BY a.id"
        )
    };
}

fn agent_in<C: GenericClient>(s: &mut Session<'_, C>, agent_id: &str) -> Result<Agent> {
    s.row(agent_query!("WHERE a.id = $1"), &[&agent_id], agent_row)?
        .ok_or_else(|| StoreError::AgentNotFound(agent_id.to_owned()))
}

/// Where a stream ends: chunks never overlap, so it is where the last one ends. From the job's row, so one query
/// also answers [`StoreError::JobNotFound`].
const STREAM_END: &str = "SELECT (SELECT start_offset + octet_length(bytes) FROM stream_chunks
                                  WHERE job_id = j.id AND stream = $2 ORDER BY start_offset DESC LIMIT 1) AS stream_end
                          FROM jobs j WHERE j.id = $1";

fn stream_end_in<C: GenericClient>(
    s: &mut Session<'_, C>,
    job_id: &str,
    stream: StreamKind,
) -> Result<u64> {
    s.row(STREAM_END, &[&job_id, &stream.as_str()], |row| {
        Ok(optional_unsigned(row, "stream_end")?.unwrap_or_default())
    })?
    .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

/// How far a job's results are parsed (nothing yet, in its first attempt, when it has no parsing row). Read from
/// the job's row, so one query also answers [`StoreError::JobNotFound`].
fn results_progress_in<C: GenericClient>(
    s: &mut Session<'_, C>,
    job_id: &str,
) -> Result<ResultsProgress> {
    s.row(
        "SELECT r.attempt, r.parsed_offset, r.problem FROM jobs j LEFT JOIN results_parsing r ON r.job_id = j.id
         WHERE j.id = $1",
        &[&job_id],
        progress_row,
    )?
    .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
}

/// Records one parsed run: it replaces the open run of its attempt, test id and route code, or is a new row, whose
/// agent is the attempt's. One statement either way.
fn record_test_run<C: GenericClient>(
    s: &mut Session<'_, C>,
    job_id: &str,
    run: &TestRun,
) -> Result<()> {
    let tags = to_json("test run tags", &run.tags)?;
    let duration = run
        .duration_us
        .map(|us| to_i64("test duration", us))
        .transpose()?;
    s.execute(
        "WITH replaced AS (
             UPDATE test_runs SET retry = $5, status = $6, reason = $7, started_at = $8, ended_at = $9,
                                  duration_us = $10, tags = $11
             WHERE seq = (SELECT seq FROM test_runs
                          WHERE job_id = $1 AND attempt = $2 AND test_id = $3 AND route_code IS NOT DISTINCT FROM $4
                            AND status = 'inprogress'
                          ORDER BY seq LIMIT 1)
             RETURNING seq
         )
         INSERT INTO test_runs (job_id, attempt, test_id, route_code, retry, status, reason, started_at, ended_at,
                                duration_us, tags, agent_id)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                COALESCE((SELECT agent_id FROM job_attempts WHERE job_id = $1 AND attempt = $2),
                         (SELECT agent_id FROM jobs WHERE id = $1))
         WHERE NOT EXISTS (SELECT 1 FROM replaced)",
        &[
            &job_id,
            &i64::from(run.attempt),
            &run.test_id,
            &run.route_code,
            &i64::from(run.retry),
            &run.status.as_str(),
            &run.reason,
            &run.started_at.map(|at| at.as_microsecond()),
            &run.ended_at.map(|at| at.as_microsecond()),
            &duration,
            &tags,
        ],
    )?;
    Ok(())
}

/// A queue with its counts; `{filter}` narrows it to one queue or none.
macro_rules! queue_query {
    ($filter:literal) => {
        concat!(
            "SELECT q.name, q.first_served_at IS NOT NULL AS ever_served,
                 (SELECT COUNT(*) FROM jobs j WHERE j.state = 'queued' AND j.queue = q.name) AS queued,
                 (SELECT COUNT(*) FROM jobs j WHERE j.state = 'running' AND j.queue = q.name) AS running,
                 (SELECT COUNT(*) FROM agent_queues aq JOIN agents a ON a.id = aq.agent_id
                  WHERE aq.queue = q.name AND a.state <> 'offline') AS agents_online
             FROM queues q ",
            $filter,
            " ORDER BY q.name"
        )
    };
}

/// A column's value as a copy moves it, by the column's type: flags as 0 or 1, times and counts as integers.
fn copy_value(row: &Row, index: usize) -> Result<Value, RowError> {
    let value = match *row.columns()[index].type_() {
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)?
            .map(|flag| Value::Integer(i64::from(flag))),
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Value::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)?
            .map(|number| Value::Integer(i64::from(number))),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index)?.map(Value::Blob),
        _ => row.try_get::<_, Option<String>>(index)?.map(Value::Text),
    };
    Ok(value.unwrap_or(Value::Null))
}

/// A job list's parameter (text, or a BIGINT time, sequence or limit) for the driver.
fn list_param(value: &Value) -> Box<dyn ToSql + Sync> {
    match value {
        Value::Null => Box::new(None::<String>),
        Value::Integer(number) => Box::new(*number),
        Value::Text(text) => Box::new(text.clone()),
        Value::Blob(bytes) => Box::new(bytes.clone()),
    }
}

/// A copied value for a column of type `column_type`, or why it does not fit.
fn sql_value(value: &Value, column_type: &Type) -> Result<Box<dyn ToSql + Sync>, String> {
    Ok(match (value, column_type) {
        (Value::Null, &Type::BOOL) => Box::new(None::<bool>),
        (Value::Null, &Type::INT8) => Box::new(None::<i64>),
        (Value::Null, &Type::INT4) => Box::new(None::<i32>),
        (Value::Null, &Type::BYTEA) => Box::new(None::<Vec<u8>>),
        (Value::Null, _) => Box::new(None::<String>),
        (Value::Integer(flag @ (0 | 1)), &Type::BOOL) => Box::new(*flag == 1),
        (Value::Integer(number), &Type::INT8) => Box::new(*number),
        (Value::Integer(number), &Type::INT4) => Box::new(
            i32::try_from(*number).map_err(|_| format!("{number} does not fit a 32-bit column"))?,
        ),
        (Value::Text(text), &Type::TEXT) => Box::new(text.clone()),
        (Value::Blob(bytes), &Type::BYTEA) => Box::new(bytes.clone()),
        (value, column_type) => {
            return Err(format!("{value:?} does not fit a {column_type} column"))
        }
    })
}

/// A table or column name quoted for SQL.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn identifiers(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| identifier(name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store for PostgresStore {
    fn queues(&self) -> Result<Vec<QueueInfo>> {
        self.read("listing queues", |s| {
            s.rows(queue_query!(""), &[], queue_row)
        })
    }

    fn queue(&self, name: &str) -> Result<Option<QueueInfo>> {
        self.read("reading a queue", |s| {
            s.row(queue_query!("WHERE q.name = $1"), &[&name], queue_row)
        })
    }

    fn register_agent(&self, agent: &AgentRegistration, now: Timestamp) -> Result<Agent> {
        let images = to_json("advertised images", &agent.images)?;
        let now = now.as_microsecond();
        // Sorted and without repeats: the queue rows are locked in one order by every registration.
        let queues: Vec<String> = agent
            .queues
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.write("registering an agent", |s| {
            s.execute(
                "INSERT INTO agents (id, state, images, registered_at, last_heartbeat) VALUES ($1, 'idle', $2, $3, $3)
                 ON CONFLICT (id) DO UPDATE SET images = excluded.images, last_heartbeat = excluded.last_heartbeat",
                &[&agent.id, &images, &now],
            )?;
            s.execute(
                "DELETE FROM agent_queues WHERE agent_id = $1",
                &[&agent.id],
            )?;
            record_served_queues(s, &queues, now)?;
            s.execute(
                "INSERT INTO agent_queues (agent_id, queue) SELECT $1, queue FROM unnest($2::TEXT[]) AS queue
                 ON CONFLICT DO NOTHING",
                &[&agent.id, &queues],
            )?;
            refresh_agent_state(s, &agent.id)?;
            agent_in(s, &agent.id)
        })
    }

    fn set_agent_state(&self, agent_id: &str, state: AgentState) -> Result<()> {
        self.write("setting an agent's state", |s| {
            let changed = s.execute(
                "UPDATE agents SET state = $2 WHERE id = $1",
                &[&agent_id, &state.as_str()],
            )?;
            if changed == 0 {
                return Err(StoreError::AgentNotFound(agent_id.to_owned()));
            }
            // Back in service means idle or busy, whichever is true.
            if matches!(state, AgentState::Idle | AgentState::Busy) {
                refresh_agent_state(s, agent_id)?;
            }
            Ok(())
        })
    }

    fn agents(&self) -> Result<Vec<Agent>> {
        self.read("listing agents", |s| {
            s.rows(agent_query!(""), &[], agent_row)
        })
    }

    fn online_agents(&self) -> Result<u64> {
        self.read("counting online agents", |s| {
            s.row(
                "SELECT COUNT(*) AS online FROM agents WHERE state <> 'offline'",
                &[],
                |row| unsigned(row, "online"),
            )
            .map(Option::unwrap_or_default)
        })
    }

    fn mark_silent_agents_offline(&self, silent_since: Timestamp) -> Result<Vec<String>> {
        let silent_since = silent_since.as_microsecond();
        self.write("marking silent agents offline", |s| {
            // Locked in order of id (as the reaper locks agents); a heartbeat that came while waiting for a lock
            // takes its agent out of the list (READ COMMITTED re-checks a row it had to wait for).
            let ids = s.rows(
                "SELECT id FROM agents WHERE last_heartbeat < $1 AND state IN ('idle', 'busy')
                 ORDER BY id FOR NO KEY UPDATE",
                &[&silent_since],
                |row| Ok(row.try_get::<_, String>("id")?),
            )?;
            s.execute(
                "UPDATE agents SET state = 'offline' WHERE id = ANY($1)",
                &[&ids],
            )?;
            Ok(ids)
        })
    }

    fn submit_job(&self, job: &NewJob, now: Timestamp) -> Result<Job> {
        if job.max_attempts == 0 {
            return Err(StoreError::NoAttempts);
        }
        let definition = to_json("job definition", &job.definition)?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now.as_microsecond();
        self.write("submitting a job", |s| {
            record_queue(s, &job.queue, now)?;
            s.changed(Change::Queue(job.queue.clone()));
            s.row(
                &format!(
                    "INSERT INTO jobs (id, queue, name, priority, definition, state, max_attempts, submitter, held,
                                       created_at, recipe_script)
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10) RETURNING {JOB_COLUMNS}"
                ),
                &[
                    &id,
                    &job.queue,
                    &job.name,
                    &job.priority,
                    &definition,
                    &i64::from(job.max_attempts),
                    &job.submitter,
                    &job.held,
                    &now,
                    &job.recipe_script,
                ],
                job_row,
            )?
            .ok_or_else(|| StoreError::JobNotFound(id.clone()))
        })
    }

    fn job(&self, job_id: &str) -> Result<Job> {
        self.read("reading a job", |s| job_in(s, job_id))
    }

    fn job_queue(&self, job_id: &str) -> Result<String> {
        self.read("reading a job's queue", |s| {
            s.row("SELECT queue FROM jobs WHERE id = $1", &[&job_id], |row| {
                Ok(row.try_get("queue")?)
            })?
            .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))
        })
    }

    fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage> {
        let (sql, values) = job_list_query(filter, SUMMARY_COLUMNS, '$');
        let values: Vec<Box<dyn ToSql + Sync>> = values.iter().map(list_param).collect();
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|value| &**value).collect();
        self.read("listing jobs", |s| {
            let rows = s.rows(&sql, &params, summary_row)?;
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
        let expiry = lease_expiry(now, lease);
        let now = now.as_microsecond();
        self.write("claiming a job", |s| {
            // The agent's row first (the one lock a claim may wait for): its state cannot change under the claim,
            // and its busy/idle state below is computed under the lock.
            let state: AgentState = s
                .row(
                    "SELECT state FROM agents WHERE id = $1 FOR NO KEY UPDATE",
                    &[&agent_id],
                    |row| parsed(row, "state"),
                )?
                .ok_or_else(|| StoreError::AgentNotFound(agent_id.to_owned()))?;
            if state == AgentState::Maintenance {
                return Ok(None);
            }
            // SKIP LOCKED: a job another claimer is taking is passed over, not waited for; a job another claimer
            // took since this statement's snapshot is re-checked once locked, and passed over as no longer queued.
            let claimed = s.row(
                &format!(
                    "UPDATE jobs
                     SET state = 'running', agent_id = $1, attempts = attempts + 1, started_at = $2,
                         lease_expires_at = $3
                     WHERE seq = (SELECT seq FROM jobs
                                  WHERE state = 'queued' AND NOT held AND queue = ANY($4)
                                  ORDER BY priority DESC, created_at, seq
                                  LIMIT 1
                                  FOR NO KEY UPDATE SKIP LOCKED)
                       AND state = 'queued'
                     RETURNING {JOB_COLUMNS}, recipe_script,
                               EXISTS (SELECT 1 FROM attachments a WHERE a.job_id = jobs.id) AS has_attachments"
                ),
                &[&agent_id, &now, &expiry, &queues],
                claimed_row,
            )?;
            s.execute(
                &format!(
                    "UPDATE agents SET last_heartbeat = $2, state = {AGENT_STATE} WHERE id = $1"
                ),
                &[&agent_id, &now],
            )?;
            let Some(claimed) = claimed else {
                return Ok(None);
            };
            s.changed(Change::Job(claimed.0.id.clone()));
            hand_over(s, claimed, now).map(Some)
        })
    }

    fn heartbeat(&self, agent_id: &str, now: Timestamp, lease: Duration) -> Result<HeartbeatReply> {
        let expiry = lease_expiry(now, lease);
        let now = now.as_microsecond();
        self.write("recording a heartbeat", |s| {
            // The jobs first, then the agent: the order the reaper and finish_job lock them in.
            let renewed = s.rows(
                "UPDATE jobs SET lease_expires_at = $2 WHERE agent_id = $1 AND state = 'running'
                 RETURNING id, cancel_requested",
                &[&agent_id, &expiry],
                |row| Ok((row.try_get("id")?, row.try_get("cancel_requested")?)),
            )?;
            let known = s.execute(
                "UPDATE agents SET last_heartbeat = $2 WHERE id = $1",
                &[&agent_id, &now],
            )?;
            if known == 0 {
                return Err(StoreError::AgentNotFound(agent_id.to_owned()));
            }
            // An agent heard from again is no longer offline.
            refresh_agent_state(s, agent_id)?;
            Ok(heartbeat_reply(renewed))
        })
    }

    fn reap_expired_leases(&self, now: Timestamp) -> Result<Vec<ReapedJob>> {
        let now = now.as_microsecond();
        self.write("reaping lapsed leases", |s| {
            // SKIP LOCKED: a job another reaper is handling (or whose heartbeat or finish is being written) is left
            // alone; one that changed since this statement's snapshot is re-checked once locked.
            let lapsed = s.rows(
                "SELECT id, agent_id, queue, cancel_requested, attempts, max_attempts FROM jobs
                 WHERE state = 'running' AND lease_expires_at < $1
                 ORDER BY seq FOR NO KEY UPDATE SKIP LOCKED",
                &[&now],
                |row| {
                    Ok((
                        row.try_get::<_, String>("id")?,
                        row.try_get::<_, Option<String>>("agent_id")?,
                        row.try_get::<_, String>("queue")?,
                        row.try_get::<_, bool>("cancel_requested")?,
                        small(row, "attempts")?,
                        small(row, "max_attempts")?,
                    ))
                },
            )?;
            let mut reaped = Vec::with_capacity(lapsed.len());
            let mut agents = BTreeSet::new();
            for (job_id, agent_id, queue, cancel_requested, attempts, max_attempts) in lapsed {
                let agent = agent_id.as_deref().unwrap_or("(unknown)");
                let (new_state, reason) =
                    reaped_state(cancel_requested, attempts, max_attempts, agent);
                let requeued = new_state == JobState::Queued;
                s.execute(
                    "UPDATE jobs SET state = $2, reason = $3, lease_expires_at = NULL,
                         agent_id = CASE WHEN $4 THEN NULL ELSE agent_id END,
                         started_at = CASE WHEN $4 THEN NULL ELSE started_at END,
                         ended_at = CASE WHEN $4 THEN NULL ELSE $5::BIGINT END
                     WHERE id = $1",
                    &[&job_id, &new_state.as_str(), &reason, &requeued, &now],
                )?;
                s.execute(
                    "UPDATE job_attempts SET end_reason = $3 WHERE job_id = $1 AND attempt = $2",
                    &[&job_id, &i64::from(attempts), &reason],
                )?;
                if requeued {
                    s.changed(Change::Queue(queue.clone()));
                }
                s.changed(Change::Job(job_id.clone()));
                agents.extend(agent_id.clone());
                reaped.push(ReapedJob {
                    job_id,
                    agent_id,
                    queue,
                    new_state,
                });
            }
            let agents: Vec<String> = agents.into_iter().collect();
            lock_agents(s, &agents)?;
            for agent in &agents {
                refresh_agent_state(s, agent)?;
            }
            Ok(reaped)
        })
    }

    fn request_cancel(&self, job_id: &str, now: Timestamp) -> Result<CancelOutcome> {
        let now = now.as_microsecond();
        self.write("cancelling a job", |s| {
            let (state, agent): (JobState, Option<String>) = s
                .row(
                    "SELECT state, agent_id FROM jobs WHERE id = $1 FOR NO KEY UPDATE",
                    &[&job_id],
                    |row| Ok((parsed(row, "state")?, row.try_get("agent_id")?)),
                )?
                .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))?;
            match state {
                JobState::Queued => {
                    s.execute(
                        "UPDATE jobs SET state = 'cancelled', reason = 'cancelled before it started', ended_at = $2
                         WHERE id = $1",
                        &[&job_id, &now],
                    )?;
                    s.changed(Change::Job(job_id.to_owned()));
                    Ok(CancelOutcome::Cancelled)
                }
                JobState::Running => {
                    s.execute(
                        "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1",
                        &[&job_id],
                    )?;
                    // The agent's heartbeat may be waiting to hear of it.
                    if let Some(agent) = agent {
                        s.changed(Change::Agent(agent));
                    }
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
        let now = now.as_microsecond();
        self.write("finishing a job", |s| {
            let job = s
                .row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR NO KEY UPDATE"),
                    &[&job_id],
                    job_row,
                )?
                .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))?;
            let holder = finishing_holder(&job, agent_id)?;
            let finished = s
                .row(
                    &format!(
                        "UPDATE jobs SET state = $2, reason = $3, ended_at = $4, lease_expires_at = NULL
                         WHERE id = $1 RETURNING {JOB_COLUMNS}"
                    ),
                    &[&job_id, &state.as_str(), &reason, &now],
                    job_row,
                )?
                .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))?;
            lock_agents(s, std::slice::from_ref(&holder))?;
            refresh_agent_state(s, &holder)?;
            s.changed(Change::Job(finished.id.clone()));
            Ok(finished)
        })
    }

    fn start_phase(&self, job_id: &str, phase: &str, now: Timestamp) -> Result<()> {
        let now = now.as_microsecond();
        self.write("recording a phase start", |s| {
            ensure_job_exists(s, job_id)?;
            s.execute(
                "INSERT INTO phases (job_id, name, started_at) VALUES ($1, $2, $3)
                 ON CONFLICT (job_id, name) DO UPDATE
                 SET started_at = excluded.started_at, ended_at = NULL, exit_status = NULL",
                &[&job_id, &phase, &now],
            )?;
            s.changed(Change::Phase(job_id.to_owned()));
            Ok(())
        })
    }

    fn end_phase(&self, job_id: &str, phase: &str, exit_status: i32, now: Timestamp) -> Result<()> {
        let now = now.as_microsecond();
        self.write("recording a phase end", |s| {
            let changed = s.execute(
                "UPDATE phases SET ended_at = $3, exit_status = $4 WHERE job_id = $1 AND name = $2",
                &[&job_id, &phase, &now, &exit_status],
            )?;
            if changed == 0 {
                return Err(StoreError::PhaseNotFound {
                    job: job_id.to_owned(),
                    phase: phase.to_owned(),
                });
            }
            s.changed(Change::Phase(job_id.to_owned()));
            Ok(())
        })
    }

    fn phases(&self, job_id: &str) -> Result<Vec<PhaseRecord>> {
        self.read("listing phases", |s| {
            ensure_job_exists(s, job_id)?;
            s.rows(
                "SELECT name, started_at, ended_at, exit_status FROM phases
                 WHERE job_id = $1 ORDER BY started_at, seq",
                &[&job_id],
                phase_row,
            )
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
        self.write("appending to a stream", |s| {
            // Concurrent uploaders of the job take turns here; each then reads where the stream ends now.
            lock_job(s, job_id)?;
            // The attempt's base, or 0 for a stream that counts from the job's start (one statement per column).
            let base = attempt_base_column(stream).map_or_else(
                || "0".to_owned(),
                |column| {
                    format!(
                        "COALESCE((SELECT {column} FROM job_attempts WHERE job_id = $1
                                   ORDER BY attempt DESC LIMIT 1), 0)"
                    )
                },
            );
            let (base, end) = s
                .row(
                    &format!(
                        "SELECT {base}::BIGINT AS base,
                                COALESCE((SELECT start_offset + octet_length(bytes) FROM stream_chunks
                                          WHERE job_id = $1 AND stream = $2 ORDER BY start_offset DESC LIMIT 1), 0)
                                    AS stream_end"
                    ),
                    &[&job_id, &stream.as_str()],
                    |row| Ok((unsigned(row, "base")?, unsigned(row, "stream_end")?)),
                )?
                .unwrap_or_default();
            match plan_append(job_id, stream, base, end, offset, bytes)? {
                Append::Stored(acknowledged) => Ok(acknowledged),
                Append::Insert {
                    at,
                    bytes,
                    acknowledged,
                } => {
                    s.execute(
                        "INSERT INTO stream_chunks (job_id, stream, start_offset, phase, bytes)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &job_id,
                            &stream.as_str(),
                            &to_i64("stream offset", at)?,
                            &phase,
                            &bytes,
                        ],
                    )?;
                    s.changed(Change::Stream(job_id.to_owned()));
                    Ok(acknowledged)
                }
            }
        })
    }

    fn stream_end(&self, job_id: &str, stream: StreamKind) -> Result<u64> {
        self.read("reading a stream's end", |s| {
            stream_end_in(s, job_id, stream)
        })
    }

    fn read_stream(
        &self,
        job_id: &str,
        stream: StreamKind,
        from: u64,
        phase: Option<&str>,
    ) -> Result<Vec<StreamChunk>> {
        let from = to_i64("stream offset", from)?;
        self.read("reading a stream", |s| {
            // The chunk holding `from` starts at the last start at or before it (chunks are contiguous): the
            // index range starts there, so reading a long stream's tail does not scan its beginning.
            let chunks = s.rows(
                "SELECT start_offset, phase, bytes FROM stream_chunks
                 WHERE job_id = $1 AND stream = $2
                   AND start_offset >= COALESCE((SELECT start_offset FROM stream_chunks
                                                 WHERE job_id = $1 AND stream = $2 AND start_offset <= $3
                                                 ORDER BY start_offset DESC LIMIT 1), 0)
                   AND start_offset + octet_length(bytes) > $3
                   AND ($4::TEXT IS NULL OR phase = $4)
                 ORDER BY start_offset",
                &[&job_id, &stream.as_str(), &from, &phase],
                chunk_row,
            )?;
            // A chunk proves its job exists (a foreign key); only an empty answer needs to ask.
            if chunks.is_empty() {
                ensure_job_exists(s, job_id)?;
            }
            Ok(chunks)
        })
    }

    fn test_runs(&self, job_id: &str) -> Result<Vec<TestRun>> {
        self.read("reading test runs", |s| {
            ensure_job_exists(s, job_id)?;
            s.rows(
                &format!(
                    "SELECT {TEST_RUN_COLUMNS} FROM test_runs WHERE job_id = $1 ORDER BY test_id, attempt, seq"
                ),
                &[&job_id],
                test_run_row,
            )
        })
    }

    fn test_history(&self, test_id: &str, jobs: u32) -> Result<Vec<TestHistoryRun>> {
        self.read("reading a test's history", |s| {
            s.rows(
                &format!(
                    "WITH recent AS (
                         SELECT j.id, j.name, j.created_at, j.seq FROM jobs j
                         WHERE j.id IN (SELECT DISTINCT job_id FROM test_runs WHERE test_id = $1)
                         ORDER BY j.created_at DESC, j.seq DESC LIMIT $2)
                     SELECT recent.id AS job_id, recent.name AS job_name, recent.created_at AS job_created_at,
                            {TEST_RUN_COLUMNS_OF_R}
                     FROM recent JOIN test_runs r ON r.job_id = recent.id AND r.test_id = $1
                     ORDER BY recent.created_at DESC, recent.seq DESC, r.attempt, r.seq"
                ),
                &[&test_id, &i64::from(jobs)],
                test_history_row,
            )
        })
    }

    fn open_test_runs(&self, job_id: &str, attempt: u32) -> Result<Vec<TestRun>> {
        self.read("reading open test runs", |s| {
            s.rows(
                &format!(
                    "SELECT {TEST_RUN_COLUMNS} FROM test_runs
                     WHERE job_id = $1 AND attempt = $2 AND status = 'inprogress' ORDER BY seq"
                ),
                &[&job_id, &i64::from(attempt)],
                test_run_row,
            )
        })
    }

    fn job_attempts(&self, job_id: &str) -> Result<Vec<JobAttempt>> {
        self.read("reading the job's attempts", |s| {
            ensure_job_exists(s, job_id)?;
            s.rows(
                "SELECT attempt, agent_id, claimed_at, log_base, results_base, end_reason FROM job_attempts
                 WHERE job_id = $1 ORDER BY attempt",
                &[&job_id],
                attempt_row,
            )
        })
    }

    fn results_progress(&self, job_id: &str) -> Result<ResultsProgress> {
        self.read("reading the results parse offset", |s| {
            results_progress_in(s, job_id)
        })
    }

    fn record_parsed_results(
        &self,
        job_id: &str,
        from: &ResultsProgress,
        to: &ResultsProgress,
        runs: &[TestRun],
    ) -> Result<bool> {
        let parsed_offset = to_i64("results parse offset", to.parsed_offset)?;
        self.write("recording parsed test runs", |s| {
            // Concurrent parsers of the job take turns here: the compare-and-set below sees the last one's result.
            lock_job(s, job_id)?;
            let current = results_progress_in(s, job_id)?;
            // A later attempt claimed while the parse read the stream: the bytes past its start are its own.
            let later_start = s
                .row(
                    "SELECT MIN(results_base) AS start FROM job_attempts WHERE job_id = $1 AND attempt > $2",
                    &[&job_id, &i64::from(to.attempt)],
                    |row| optional_unsigned(row, "start"),
                )?
                .flatten();
            if !parse_applies(&current, from, to, later_start) {
                return Ok(false);
            }
            for run in runs {
                record_test_run(s, job_id, run)?;
            }
            s.execute(
                "INSERT INTO results_parsing (job_id, attempt, parsed_offset, problem) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job_id) DO UPDATE
                 SET attempt = excluded.attempt, parsed_offset = excluded.parsed_offset, problem = excluded.problem",
                &[&job_id, &i64::from(to.attempt), &parsed_offset, &to.problem],
            )?;
            Ok(true)
        })
    }

    fn put_artifact(&self, job_id: &str, artifact: &Artifact) -> Result<()> {
        let size = to_i64("artifact size", artifact.size)?;
        self.write("storing an artifact", |s| {
            ensure_job_exists(s, job_id)?;
            s.execute(
                "INSERT INTO artifacts (job_id, name, size, blob) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job_id, name) DO UPDATE SET size = excluded.size, blob = excluded.blob",
                &[&job_id, &artifact.name, &size, &artifact.content],
            )?;
            Ok(())
        })
    }

    fn artifacts(&self, job_id: &str) -> Result<Vec<Artifact>> {
        self.read("listing artifacts", |s| {
            ensure_job_exists(s, job_id)?;
            s.rows(
                "SELECT name, size, blob FROM artifacts WHERE job_id = $1 ORDER BY name",
                &[&job_id],
                artifact_row,
            )
        })
    }

    fn store_attachments(&self, job_id: &str, tar_gz: &[u8], now: Timestamp) -> Result<()> {
        let now = now.as_microsecond();
        self.write("storing attachments", |s| {
            let (held, state, queue) = s
                .row(
                    "SELECT held, state, queue FROM jobs WHERE id = $1 FOR NO KEY UPDATE",
                    &[&job_id],
                    |row| {
                        Ok((
                            row.try_get::<_, bool>("held")?,
                            parsed::<JobState>(row, "state")?,
                            row.try_get::<_, String>("queue")?,
                        ))
                    },
                )?
                .ok_or_else(|| StoreError::JobNotFound(job_id.to_owned()))?;
            // A held job cancelled before its attachments came has nothing left to release.
            if !held || state != JobState::Queued {
                return Err(StoreError::NotHeld {
                    job: job_id.to_owned(),
                });
            }
            s.execute(
                "INSERT INTO attachments (job_id, tar_gz, uploaded_at) VALUES ($1, $2, $3)",
                &[&job_id, &tar_gz, &now],
            )?;
            s.execute("UPDATE jobs SET held = FALSE WHERE id = $1", &[&job_id])?;
            s.changed(Change::Queue(queue));
            s.changed(Change::Job(job_id.to_owned()));
            Ok(())
        })
    }

    fn attachments(&self, job_id: &str) -> Result<Option<Vec<u8>>> {
        self.read("reading attachments", |s| {
            ensure_job_exists(s, job_id)?;
            s.row(
                "SELECT tar_gz FROM attachments WHERE job_id = $1",
                &[&job_id],
                |row| Ok(row.try_get("tar_gz")?),
            )
        })
    }

    fn put_recipe(&self, recipe: &Recipe, now: Timestamp) -> Result<()> {
        let options = to_json("recipe options", &recipe.default_options)?;
        let now = now.as_microsecond();
        self.write("storing a recipe", |s| {
            s.execute(
                "INSERT INTO recipes (name, script, default_options, queue, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET script = excluded.script,
                     default_options = excluded.default_options, queue = excluded.queue,
                     updated_at = excluded.updated_at",
                &[&recipe.name, &recipe.script, &options, &recipe.queue, &now],
            )?;
            Ok(())
        })
    }

    fn recipe(&self, name: &str) -> Result<Recipe> {
        self.read("reading a recipe", |s| {
            s.row(
                "SELECT name, script, default_options, queue FROM recipes WHERE name = $1",
                &[&name],
                recipe_row,
            )?
            .ok_or_else(|| StoreError::RecipeNotFound(name.to_owned()))
        })
    }

    fn recipes(&self) -> Result<Vec<Recipe>> {
        self.read("listing recipes", |s| {
            s.rows(
                "SELECT name, script, default_options, queue FROM recipes ORDER BY name",
                &[],
                recipe_row,
            )
        })
    }

    fn remove_recipe(&self, name: &str) -> Result<()> {
        self.write("removing a recipe", |s| {
            let removed = s.execute("DELETE FROM recipes WHERE name = $1", &[&name])?;
            if removed == 0 {
                return Err(StoreError::RecipeNotFound(name.to_owned()));
            }
            Ok(())
        })
    }

    fn create_token(&self, role: Role, queues: &[String], now: Timestamp) -> Result<IssuedToken> {
        let secret = secret::generate()?;
        let hash = secret::hash(&secret);
        let queues_json = to_json("token queues", queues)?;
        let token = Token {
            id: uuid::Uuid::new_v4().to_string(),
            role,
            queues: queues.to_vec(),
            created_at: now,
        };
        let created_at = now.as_microsecond();
        self.write("creating a token", |s| {
            s.execute(
                "INSERT INTO tokens (id, secret_hash, role, queues, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&token.id, &hash, &role.as_str(), &queues_json, &created_at],
            )?;
            Ok(())
        })?;
        Ok(IssuedToken { token, secret })
    }

    fn verify_token(&self, secret: &str) -> Result<Option<Token>> {
        let hash = secret::hash(secret);
        self.read("verifying a token", |s| {
            s.row(
                "SELECT id, role, queues, created_at FROM tokens WHERE secret_hash = $1",
                &[&hash],
                token_row,
            )
        })
    }

    fn has_tokens(&self) -> Result<bool> {
        self.read("counting tokens", |s| {
            s.row(
                "SELECT EXISTS (SELECT 1 FROM tokens) AS has_tokens",
                &[],
                |row| Ok(row.try_get("has_tokens")?),
            )
            .map(Option::unwrap_or_default)
        })
    }

    fn tokens(&self) -> Result<Vec<Token>> {
        self.read("listing tokens", |s| {
            s.rows(
                "SELECT id, role, queues, created_at FROM tokens ORDER BY created_at, id",
                &[],
                token_row,
            )
        })
    }

    fn revoke_token(&self, token_id: &str) -> Result<()> {
        self.write("revoking a token", |s| {
            let removed = s.execute("DELETE FROM tokens WHERE id = $1", &[&token_id])?;
            if removed == 0 {
                return Err(StoreError::TokenNotFound(token_id.to_owned()));
            }
            Ok(())
        })
    }

    fn verify_job_token(&self, secret: &str) -> Result<Option<JobTokenUse>> {
        let hash = secret::hash(secret);
        self.read("verifying a job token", |s| {
            s.row(
                "SELECT t.job_id, j.state, TRUE AS current FROM job_tokens t JOIN jobs j ON j.id = t.job_id
                 WHERE t.secret_hash = $1
                 UNION ALL
                 SELECT s.job_id, j.state, FALSE AS current FROM superseded_job_tokens s JOIN jobs j ON j.id = s.job_id
                 WHERE s.secret_hash = $1",
                &[&hash],
                |row| {
                    Ok(JobTokenUse {
                        job_id: row.try_get("job_id")?,
                        job_state: parsed(row, "state")?,
                        current: row.try_get("current")?,
                    })
                },
            )
        })
    }

    fn export_rows(&self, table: &Table, offset: u64, limit: u32) -> Result<Vec<Vec<Value>>> {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT $1 OFFSET $2",
            identifiers(table.columns),
            identifier(table.name),
            identifiers(table.order)
        );
        let offset = to_i64("export offset", offset)?;
        self.read("exporting rows", |s| {
            s.rows(&sql, &[&i64::from(limit), &offset], |row| {
                (0..row.len()).map(|index| copy_value(row, index)).collect()
            })
        })
    }

    fn import_rows(&self, table: &Table, rows: &[Vec<Value>]) -> Result<()> {
        let placeholders: Vec<String> = (1..=table.columns.len())
            .map(|index| format!("${index}"))
            .collect();
        // OVERRIDING SYSTEM VALUE: a sequence column (a job's `seq`) keeps the number it had.
        let sql = format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
            identifier(table.name),
            identifiers(table.columns),
            placeholders.join(", ")
        );
        self.write("importing rows", |s| {
            let statement = s.statement(&sql)?;
            let types = statement.params();
            for row in rows {
                if row.len() != types.len() {
                    return Err(StoreError::BadRow {
                        table: table.name,
                        detail: format!("{} values for {} columns", row.len(), types.len()),
                    });
                }
                let values = row
                    .iter()
                    .zip(types)
                    .zip(table.columns)
                    .map(|((value, column_type), column)| {
                        sql_value(value, column_type).map_err(|detail| StoreError::BadRow {
                            table: table.name,
                            detail: format!("{column}: {detail}"),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|value| &**value).collect();
                s.execute(&sql, &params)?;
            }
            Ok(())
        })
    }

    /// A connection of its own that `LISTEN`s: it hears every change any server sharing the database commits
    /// (this one's too), in commit order. Blocks like every method.
    fn follow_changes(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        Ok(Some(Box::new(changes::follow(&self.config)?)))
    }

    fn finish_import(&self, table: &Table) -> Result<()> {
        self.write("finishing an import", |s| {
            let columns = s.rows(
                "SELECT attname::TEXT AS name FROM pg_attribute
                 WHERE attrelid = $1::TEXT::REGCLASS AND attidentity <> '' AND NOT attisdropped",
                &[&table.name],
                |row| Ok(row.try_get::<_, String>("name")?),
            )?;
            // The next number a sequence column gives follows the rows copied in.
            for column in columns {
                s.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({}), 0) + 1, false) FROM {}",
                        identifier(&column),
                        identifier(table.name)
                    ),
                    &[&table.name, &column],
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's own `disk_full` error (raised by the server, as a full disk would) is reported as storage
    /// full; other errors are not.
    #[test]
    fn a_full_disk_is_reported_as_storage_full() {
        let url = std::env::var("PROCTOR_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!(
                "PROCTOR_TEST_POSTGRES is not set: run ./scripts/test (which starts a PostgreSQL for the tests), \
                 or set it to an admin URL such as postgres://postgres@127.0.0.1:5432/postgres"
            )
        });
        let mut client = Client::connect(&url, NoTls).unwrap_or_else(|error| panic!("{error}"));
        let raise = |client: &mut Client, code: &str| {
            let error = client
                .batch_execute(&format!(
                    "DO $$ BEGIN RAISE EXCEPTION 'no room' USING ERRCODE = '{code}'; END $$"
                ))
                .err()
                .unwrap_or_else(|| panic!("the block raises {code}"));
            failure("testing", error)
        };
        assert!(raise(&mut client, "53100").is_storage_full());
        assert!(!raise(&mut client, "23505").is_storage_full());
    }
}
