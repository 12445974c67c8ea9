-- The whole schema as the SQLite store's migrations 1 to 6 leave it, in PostgreSQL's types.
--
-- Times are microseconds since the Unix epoch (UTC) in BIGINT, as in the SQLite store: exact, and ordering and
-- lease comparisons are plain integer comparisons. JSON values are TEXT, so they read back exactly as written.
-- Counts and offsets are BIGINT (the store's u32 and u64 values, range-checked on the way in and out).
--
-- Names and ids that lists are ordered by are COLLATE "C": byte order, as SQLite's BINARY collation and Rust's
-- string order have it, whatever collation the database was created with.

CREATE TABLE queues (
    name            TEXT COLLATE "C" PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    -- NULL until an agent serves the queue: submit rejects such queues unless told otherwise.
    first_served_at BIGINT
);

CREATE TABLE agents (
    id             TEXT COLLATE "C" PRIMARY KEY,
    state          TEXT NOT NULL CHECK (state IN ('idle', 'busy', 'offline', 'maintenance')),
    images         TEXT NOT NULL DEFAULT '[]',
    registered_at  BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL
);

CREATE TABLE agent_queues (
    agent_id TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    queue    TEXT COLLATE "C" NOT NULL REFERENCES queues (name),
    PRIMARY KEY (agent_id, queue)
);

CREATE TABLE jobs (
    -- seq breaks ties between jobs created in the same microsecond, keeping claims first-come first-served.
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT COLLATE "C" NOT NULL UNIQUE,
    queue            TEXT COLLATE "C" NOT NULL REFERENCES queues (name),
    name             TEXT,
    priority         BIGINT NOT NULL DEFAULT 0,
    definition       TEXT NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('queued', 'running', 'passed', 'failed', 'error', 'killed', 'cancelled')),
    reason           TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL CHECK (max_attempts >= 1),
    submitter        TEXT COLLATE "C",
    -- A held job waits for its attachments and is not claimable.
    held             BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    ended_at         BIGINT,
    lease_expires_at BIGINT,
    agent_id         TEXT COLLATE "C" REFERENCES agents (id),
    -- The script of the recipe a job was started from, copied at start so later edits do not change the job.
    recipe_script    TEXT
);

-- The claim query's access path: queued jobs of a queue, best first.
CREATE INDEX jobs_claim_order ON jobs (queue, priority DESC, created_at, seq) WHERE state = 'queued' AND NOT held;
CREATE INDEX jobs_running_by_agent ON jobs (agent_id) WHERE state = 'running';
CREATE INDEX jobs_running_by_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, queue);
-- Job lists are newest first, filtered by queue, state or submitter, and paged with a keyset cursor on
-- (created_at, seq): each filter gets an index in that order, so a page costs its own rows whatever the table holds.
CREATE INDEX jobs_newest ON jobs (created_at DESC, seq DESC);
CREATE INDEX jobs_newest_by_queue ON jobs (queue, created_at DESC, seq DESC);
CREATE INDEX jobs_newest_by_state ON jobs (state, created_at DESC, seq DESC);
CREATE INDEX jobs_newest_by_submitter ON jobs (submitter, created_at DESC, seq DESC);

CREATE TABLE phases (
    -- The order phases were first started in (SQLite's rowid): a restarted phase keeps its place.
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    job_id      TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    exit_status INTEGER,
    PRIMARY KEY (job_id, name)
);

-- Byte streams uploaded in chunks: 'log' (the job's output, each chunk tagged with its phase) and 'results' (the
-- subunit v2 stream). Offsets are per (job, stream); chunks never overlap, so their lengths add up to the end.
CREATE TABLE stream_chunks (
    job_id       TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stream       TEXT NOT NULL CHECK (stream IN ('log', 'results')),
    start_offset BIGINT NOT NULL,
    phase        TEXT,
    bytes        BYTEA NOT NULL,
    PRIMARY KEY (job_id, stream, start_offset)
);

CREATE TABLE artifacts (
    job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name   TEXT COLLATE "C" NOT NULL,
    size   BIGINT NOT NULL,
    -- Exactly one of path (a file the server keeps) and blob (bytes kept here).
    path   TEXT,
    blob   BYTEA,
    CHECK ((path IS NULL) <> (blob IS NULL)),
    PRIMARY KEY (job_id, name)
);

CREATE TABLE recipes (
    name            TEXT COLLATE "C" PRIMARY KEY,
    script          TEXT NOT NULL,
    default_options TEXT NOT NULL DEFAULT '{}',
    queue           TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'user', 'agent')),
    -- JSON array; empty means every queue.
    queues      TEXT NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL
);

-- How far the server has parsed each job's subunit results stream into test runs, in which attempt's part of the
-- stream, and why it stopped when the stream turned out corrupt (the bytes are kept; only the parsing stops).
CREATE TABLE results_parsing (
    job_id        TEXT COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    parsed_offset BIGINT NOT NULL,
    problem       TEXT,
    attempt       BIGINT NOT NULL DEFAULT 1
);

-- A job's attachments as the submitter uploaded them (a tar.gz of <phase>/<path> entries, already checked).
CREATE TABLE attachments (
    job_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tar_gz      BYTEA NOT NULL,
    uploaded_at BIGINT NOT NULL
);

-- Bearer tokens scoped to one job, issued at each claim (a new claim replaces the old one). Kept apart from
-- `tokens`, so they never turn a local open lab into an authenticated one, nor show in the token list.
CREATE TABLE job_tokens (
    job_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- Job tokens replaced by a later claim of their job. Kept so the server can tell the agent that held an earlier
-- attempt why it is refused (its job was claimed again), rather than answering as if the token were forged.
CREATE TABLE superseded_job_tokens (
    secret_hash   TEXT PRIMARY KEY,
    job_id        TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    superseded_at BIGINT NOT NULL
);

-- Each claim of a job: who ran it, and where its log and results begin in the job's streams (an attempt's uploads
-- are offsets within the attempt, so a requeued job's next attempt appends after the last one instead of being
-- taken for a resend of it). `end_reason` says why the attempt ended when it did not end the job (requeued).
CREATE TABLE job_attempts (
    job_id       TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    agent_id     TEXT,
    claimed_at   BIGINT NOT NULL,
    log_base     BIGINT NOT NULL,
    results_base BIGINT NOT NULL,
    end_reason   TEXT,
    PRIMARY KEY (job_id, attempt)
);

-- One row per run of a test: a test id may run on several route codes, be retried, and run again in a later
-- attempt; every run keeps its own row. `inprogress` rows are the runs the parse left open (at most one per test
-- id and route code in an attempt); `unfinished` is a run its stream ended before, with the reason.
CREATE TABLE test_runs (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    test_id     TEXT COLLATE "C" NOT NULL,
    route_code  TEXT,
    retry       BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL
                CHECK (status IN ('inprogress', 'success', 'fail', 'skip', 'xfail', 'uxsuccess', 'unfinished')),
    reason      TEXT,
    started_at  BIGINT,
    ended_at    BIGINT,
    duration_us BIGINT,
    agent_id    TEXT,
    tags        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX test_runs_by_job ON test_runs (job_id, test_id, attempt);
-- One test's runs across every job, newest job first: the web UI's test history.
CREATE INDEX test_runs_by_test ON test_runs (test_id, job_id);
