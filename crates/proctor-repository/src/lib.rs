//! The run repository (.proctor/ in a project): every run's subunit stream, per-test duration history and the failing set.
