//! The lab service's storage: a Store trait over queues, agents, jobs, phases, log chunks, per-test results, artifacts, recipes and tokens, with the SQLite implementation and its migrations.
