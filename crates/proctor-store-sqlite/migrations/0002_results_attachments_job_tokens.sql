-- Issue 4, second part: per-test results parsed as the stream arrives, attachments, recipe snapshots and
-- job-scoped tokens.

-- When each test started, from its `inprogress` event, so the event that ends it (possibly in a later upload)
-- gives its duration.
ALTER TABLE test_results ADD COLUMN started_at INTEGER;

-- How far the server has parsed each job's subunit results stream into test_results, and why it stopped when the
-- stream turned out corrupt (the bytes are kept; only the parsing stops).
CREATE TABLE results_parsing (
    job_id        TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    parsed_offset INTEGER NOT NULL,
    problem       TEXT
);

-- A job's attachments as the submitter uploaded them (a tar.gz of <phase>/<path> entries, already checked).
CREATE TABLE attachments (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tar_gz      BLOB NOT NULL,
    uploaded_at INTEGER NOT NULL
);

-- The script of the recipe a job was started from, copied at start so later edits do not change the job.
ALTER TABLE jobs ADD COLUMN recipe_script TEXT;

-- Bearer tokens scoped to one job, issued at each claim (a new claim replaces the old one). Kept apart from
-- `tokens`, so they never turn a local open lab into an authenticated one, nor show in the token list.
CREATE TABLE job_tokens (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
