-- Job lists are newest first, filtered by queue, state or submitter, and paged with a keyset cursor on
-- (created_at, seq): each filter gets an index in that order, so a page costs its own rows whatever the table holds.
CREATE INDEX jobs_newest ON jobs (created_at DESC, seq DESC);
CREATE INDEX jobs_newest_by_queue ON jobs (queue, created_at DESC, seq DESC);
CREATE INDEX jobs_newest_by_state ON jobs (state, created_at DESC, seq DESC);
CREATE INDEX jobs_newest_by_submitter ON jobs (submitter, created_at DESC, seq DESC);
