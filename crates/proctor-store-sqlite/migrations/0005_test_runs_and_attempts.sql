-- Issue 16: one row per test run, and each attempt of a job with where its streams start.

-- Each claim of a job: who ran it, and where its log and results begin in the job's streams (an attempt's uploads
-- are offsets within the attempt, so a requeued job's next attempt appends after the last one instead of being
-- taken for a resend of it). `end_reason` says why the attempt ended when it did not end the job (requeued).
CREATE TABLE job_attempts (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    agent_id     TEXT,
    claimed_at   INTEGER NOT NULL,
    log_base     INTEGER NOT NULL,
    results_base INTEGER NOT NULL,
    end_reason   TEXT,
    PRIMARY KEY (job_id, attempt)
);

-- One row per run of a test: a test id may run on several route codes, be retried, and run again in a later
-- attempt; every run keeps its own row. `inprogress` rows are the runs the parse left open (at most one per test
-- id and route code in an attempt); `unfinished` is a run its stream ended before, with the reason.
CREATE TABLE test_runs (
    seq         INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    test_id     TEXT NOT NULL,
    route_code  TEXT,
    retry       INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL
                CHECK (status IN ('inprogress', 'success', 'fail', 'skip', 'xfail', 'uxsuccess', 'unfinished')),
    reason      TEXT,
    started_at  INTEGER,
    ended_at    INTEGER,
    duration_us INTEGER,
    agent_id    TEXT,
    tags        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX test_runs_by_job ON test_runs (job_id, test_id, attempt);

-- The rows of the per-test table become runs of the job's last attempt. A test the old parser left `inprogress`
-- on a job that has ended did not finish.
INSERT INTO test_runs (job_id, attempt, test_id, status, reason, started_at, duration_us, agent_id)
SELECT r.job_id, MAX(j.attempts, 1), r.test_id,
       CASE WHEN r.status = 'inprogress' AND j.state NOT IN ('queued', 'running') THEN 'unfinished'
            WHEN r.status IN ('inprogress', 'success', 'fail', 'skip', 'xfail', 'uxsuccess') THEN r.status
            ELSE 'fail' END,
       CASE WHEN r.status = 'inprogress' AND j.state NOT IN ('queued', 'running')
            THEN 'the results stream ended before it finished'
            WHEN r.status NOT IN ('inprogress', 'success', 'fail', 'skip', 'xfail', 'uxsuccess')
            THEN 'stored with the unknown status ' || r.status END,
       r.started_at, r.duration_us, j.agent_id
FROM test_results r JOIN jobs j ON j.id = r.job_id
ORDER BY r.job_id, r.test_id;
DROP TABLE test_results;

-- The attempt whose stream the parse is in: the stream's bytes from parsed_offset up to the next attempt's
-- results_base belong to it. A job parsed before this migration is in its last attempt.
ALTER TABLE results_parsing ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
UPDATE results_parsing SET attempt = (SELECT MAX(attempts, 1) FROM jobs WHERE jobs.id = results_parsing.job_id);
