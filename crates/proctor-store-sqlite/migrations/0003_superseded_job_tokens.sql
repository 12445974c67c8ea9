-- Job tokens replaced by a later claim of their job. Kept so the server can tell the agent that held an earlier
-- attempt why it is refused (its job was claimed again), rather than answering as if the token were forged.
CREATE TABLE superseded_job_tokens (
    secret_hash   TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    superseded_at INTEGER NOT NULL
);
