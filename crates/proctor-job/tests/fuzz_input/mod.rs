//! One input through every parser of proctor-job, shared by the cargo-fuzz target `job`
//! (`fuzz/fuzz_targets/job.rs`) and the tests that replay its findings.
//!
//! The text is read as a YAML job, a JSON job, an agent configuration and a timeout. Errors are fine;
//! panics are not, and every job that is read must survive its JSON round trip unchanged.

use proctor_job::{parse_timeout, AgentConfig, Job};

/// Runs `data` through the parsers, checking the round trip of whatever parses.
pub fn exercise(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for job in [Job::from_yaml(&text), Job::from_json(&text)]
        .into_iter()
        .flatten()
    {
        let json = serde_json::to_string(&job).expect("a job always serialises");
        let again = Job::from_json(&json)
            .unwrap_or_else(|error| panic!("{json} does not read back: {error}"));
        assert_eq!(again, job, "the JSON round trip changed the job");
    }
    if let Ok(config) = AgentConfig::from_toml(&text) {
        let _ = config.effective_timeouts(&Job::on_queue(config.job_queues[0].clone()));
    }
    let _ = parse_timeout(&text);
}
