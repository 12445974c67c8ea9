-- Issue 14: `proctor run --lab` talks to the lab job that serves it as a worker through two more of the job's
-- streams: `work` (what the run asks, written by the job's submitter) and `work-done` (what the worker reports,
-- written by the job's holder). SQLite cannot alter a CHECK constraint, so the table is rebuilt with the wider one,
-- keeping every chunk (nothing references stream_chunks, and it has no index besides its primary key).
CREATE TABLE stream_chunks_new (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stream TEXT NOT NULL CHECK (stream IN ('log', 'results', 'work', 'work-done')),
    start_offset INTEGER NOT NULL,
    phase  TEXT,
    bytes  BLOB NOT NULL,
    PRIMARY KEY (job_id, stream, start_offset)
);

INSERT INTO stream_chunks_new (job_id, stream, start_offset, phase, bytes)
SELECT job_id, stream, start_offset, phase, bytes FROM stream_chunks;

DROP TABLE stream_chunks;

ALTER TABLE stream_chunks_new RENAME TO stream_chunks;
