-- One test's runs across every job, newest job first: the web UI's test history.
CREATE INDEX test_runs_by_test ON test_runs (test_id, job_id);
