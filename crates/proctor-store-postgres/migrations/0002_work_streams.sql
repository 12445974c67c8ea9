-- Issue 14: `proctor run --lab` talks to the lab job that serves it as a worker through two more of the job's
-- streams: `work` (what the run asks, written by the job's submitter) and `work-done` (what the worker reports,
-- written by the job's holder).
ALTER TABLE stream_chunks DROP CONSTRAINT stream_chunks_stream_check;
ALTER TABLE stream_chunks ADD CONSTRAINT stream_chunks_stream_check
    CHECK (stream IN ('log', 'results', 'work', 'work-done'));
