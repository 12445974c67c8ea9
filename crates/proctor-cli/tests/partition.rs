//! Partitions, not only crashes: an agent in a network namespace of its own, joined to the server by a veth pair,
//! whose link is cut mid-job. A cut shorter than the lease is ridden out (the job goes on and its log is whole); a
//! cut longer than the lease ends the attempt exactly once (requeued while attempts remain, else `error`, "agent
//! lost"), and the agent, back on the network, stops the lost job's command and takes the next job.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use proctor_api::JobState;
use proctor_testkit::Netns;
use support::{eventually, token, Lab};

/// The server's lease in these labs (`Lab` starts servers with `--lease 3`).
const LEASE: Duration = Duration::from_secs(3);

/// A lab whose server listens on the host side of `netns`'s link, with an agent `a1` inside the namespace.
fn lab_across(netns: &Netns) -> (Lab, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (admin, agent) = (token(&data, "admin"), token(&data, "agent"));
    let mut lab = Lab::start_on(dir, &format!("{}:0", netns.host_address), &[]);
    let child = netns
        .command(&assert_cmd::cargo::cargo_bin("proctor"))
        .args([
            "agent", "--server", &lab.url, "--id", "a1", "--queue", "local",
        ])
        .args([
            "--heartbeat",
            "1",
            "--grace",
            "1",
            "--claim-wait",
            "2",
            "--work-dir",
        ])
        .arg(lab.dir.path().join("work"))
        .env("PROCTOR_TOKEN", &agent)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.add(child);
    let client = lab.client(Some(&admin));
    eventually(|| {
        client
            .agents()
            .map(|agents| agents.iter().any(|listed| listed.id == "a1"))
            .unwrap_or(false)
    });
    (lab, admin)
}

/// Submits a job printing `line 1` … `line N` every 50 ms (and touching a file named after each line, so the
/// test sees whether its command still runs); its id.
fn submit_lines(lab: &Lab, admin: &str, lines: u32, max_attempts: u32) -> String {
    let marks = lab.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let file = lab.job_file(
        "lines.yaml",
        &format!(
            "job_queue: local\nmax_attempts: {max_attempts}\ntest_data:\n  test_cmds: |\n    for i in $(seq {lines}); do \
             echo \"line $i\"; touch {}/$i; sleep 0.05; done\n",
            marks.display()
        ),
    );
    let (code, out, err) = lab.run(&["submit", &file, "--token", admin]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

fn log(lab: &Lab, admin: &str, id: &str) -> String {
    let (code, out, err) = lab.run(&["logs", id, "--token", admin]);
    assert_eq!(code, 0, "{err}");
    out
}

/// The job's `line N` lines, which must be `line 1` … `line K` each once, in order; K.
fn lines_once_in_order(log: &str) -> u32 {
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("line "))
        .collect();
    let expected: Vec<String> = (1..=lines.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "{log}");
    lines.len() as u32
}

fn ended(lab: &Lab, admin: &str, id: &str) -> proctor_api::JobView {
    let client = lab.client(Some(admin));
    let mut job = None;
    eventually(|| {
        job = client
            .job(id)
            .ok()
            .map(|detail| detail.job)
            .filter(|job| job.state.is_final());
        job.is_some()
    });
    job.unwrap()
}

#[test]
fn a_cut_shorter_than_the_lease_is_ridden_out_with_the_log_whole() {
    let netns = Netns::create();
    let (lab, admin) = lab_across(&netns);
    let id = submit_lines(&lab, &admin, 80, 1);
    eventually(|| log(&lab, &admin, &id).contains("line 10\n"));
    netns.cut();
    std::thread::sleep(LEASE / 3);
    netns.mend();
    let job = ended(&lab, &admin, &id);
    assert_eq!(job.state, JobState::Passed, "{:?}", job.reason);
    assert_eq!(job.attempts, 1);
    assert_eq!(lines_once_in_order(&log(&lab, &admin, &id)), 80);
}

#[test]
fn a_cut_longer_than_the_lease_ends_the_attempt_once_and_the_agent_comes_back() {
    let netns = Netns::create();
    let (lab, admin) = lab_across(&netns);
    // Long enough to outlast the cut: the command would still run when the link is back, had the agent not
    // stopped it.
    let id = submit_lines(&lab, &admin, 400, 1);
    eventually(|| log(&lab, &admin, &id).contains("line 10\n"));
    netns.cut();
    let client = lab.client(Some(&admin));
    eventually(|| client.job(&id).unwrap().job.state == JobState::Error);
    std::thread::sleep(LEASE);
    netns.mend();
    let job = ended(&lab, &admin, &id);
    assert_eq!(job.state, JobState::Error);
    assert!(
        job.reason.as_deref().unwrap_or("").contains("agent lost"),
        "{:?}",
        job.reason
    );
    assert_eq!(job.attempts, 1, "ended once, not requeued");
    let stored = lines_once_in_order(&log(&lab, &admin, &id));
    assert!((10..400).contains(&stored), "{stored} lines stored");

    // Back on the network, the agent stopped the lost job's command and serves the queue again.
    let marks = lab.dir.path().join("marks");
    let count = || std::fs::read_dir(&marks).unwrap().count();
    std::thread::sleep(Duration::from_secs(2));
    let settled = count();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(), settled, "the lost job's command still runs");
    assert!(settled < 400);
    let next = submit_lines(&lab, &admin, 3, 1);
    assert_eq!(ended(&lab, &admin, &next).state, JobState::Passed);
}

#[test]
fn a_cut_longer_than_the_lease_requeues_a_job_with_attempts_left_exactly_once() {
    let netns = Netns::create();
    let (lab, admin) = lab_across(&netns);
    let id = submit_lines(&lab, &admin, 120, 2);
    eventually(|| log(&lab, &admin, &id).contains("line 10\n"));
    netns.cut();
    let client = lab.client(Some(&admin));
    eventually(|| client.job(&id).unwrap().job.state == JobState::Queued);
    netns.mend();
    let job = ended(&lab, &admin, &id);
    assert_eq!(job.state, JobState::Passed, "{:?}", job.reason);
    assert_eq!(job.attempts, 2, "requeued once");
    // The second attempt's log follows the first's: its lines are all there, once.
    let whole = log(&lab, &admin, &id);
    let second = whole.rsplit("line 1\n").next().unwrap();
    assert_eq!(
        lines_once_in_order(&format!("line 1\n{second}")),
        120,
        "{whole}"
    );
}
