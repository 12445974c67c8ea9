//! Test sources: proctor.toml suites, .stestr.conf/.testr.conf projects and directories of executables, and how to list and run their tests.
