-- Times are microseconds since the Unix epoch (UTC), so ordering and lease
-- comparisons are plain integer comparisons in SQLite and PostgreSQL alike.

CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    created_at      INTEGER NOT NULL,
    -- NULL until an agent serves the queue: submit rejects such queues unless told otherwise.
    first_served_at INTEGER
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY,
    state          TEXT NOT NULL CHECK (state IN ('idle', 'busy', 'offline', 'maintenance')),
    images         TEXT NOT NULL DEFAULT '[]',
    registered_at  INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL
);

CREATE TABLE agent_queues (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    queue    TEXT NOT NULL REFERENCES queues (name),
    PRIMARY KEY (agent_id, queue)
);

CREATE TABLE jobs (
    -- seq breaks ties between jobs created in the same microsecond, keeping claims first-come first-served.
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    queue            TEXT NOT NULL REFERENCES queues (name),
    name             TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    definition       TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'passed', 'failed', 'error', 'killed', 'cancelled')),
    reason           TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    submitter        TEXT,
    -- A held job waits for its attachments and is not claimable.
    held             INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    ended_at         INTEGER,
    lease_expires_at INTEGER,
    agent_id         TEXT REFERENCES agents (id)
);

-- The claim query's access path: queued jobs of a queue, best first.
CREATE INDEX jobs_claim_order ON jobs (queue, priority DESC, created_at, seq) WHERE state = 'queued' AND held = 0;
CREATE INDEX jobs_running_by_agent ON jobs (agent_id) WHERE state = 'running';
CREATE INDEX jobs_running_by_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, queue);

CREATE TABLE phases (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    exit_status INTEGER,
    PRIMARY KEY (job_id, name)
);

-- Byte streams uploaded in chunks: 'log' (the job's output, each chunk tagged with its phase) and 'results' (the
-- subunit v2 stream). Offsets are per (job, stream); chunks never overlap, so their lengths add up to the end.
CREATE TABLE stream_chunks (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stream TEXT NOT NULL CHECK (stream IN ('log', 'results')),
    start_offset INTEGER NOT NULL,
    phase  TEXT,
    bytes  BLOB NOT NULL,
    PRIMARY KEY (job_id, stream, start_offset)
);

CREATE TABLE test_results (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    test_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    duration_us INTEGER,
    PRIMARY KEY (job_id, test_id)
);

CREATE TABLE artifacts (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    size   INTEGER NOT NULL,
    -- Exactly one of path (a file the server keeps) and blob (bytes kept here).
    path   TEXT,
    blob   BLOB,
    CHECK ((path IS NULL) <> (blob IS NULL)),
    PRIMARY KEY (job_id, name)
);

CREATE TABLE recipes (
    name            TEXT PRIMARY KEY,
    script          TEXT NOT NULL,
    default_options TEXT NOT NULL DEFAULT '{}',
    queue           TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'user', 'agent')),
    -- JSON array; empty means every queue.
    queues      TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL
);
