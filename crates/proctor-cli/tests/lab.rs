//! End-to-end tests of the lab with real processes: `proctor server` and `proctor agent` (and `proctor up`) as
//! children on 127.0.0.1 ephemeral ports, driven by the `proctor` client commands. Leases, heartbeats and grace
//! periods are shortened through the hidden flags so that failures are found in seconds.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use proctor_api::{JobState, JobsQuery, RegisterAgent};
use proctor_client::Client;
use proctor_subunit::{Event, Status, Timestamp};
use support::{eventually, proctor, Children, Lab};

fn count_lines(text: &str, line: &str) -> usize {
    text.lines().filter(|candidate| *candidate == line).count()
}

#[test]
fn jobs_pass_fail_and_error_with_their_exit_statuses() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let config = lab.job_file(
        "broken.toml",
        &format!(
            "agent_id = \"broken\"\nserver_address = \"{}\"\njob_queues = [\"broken\"]\nsetup_command = \"echo cannot set up; exit 3\"\n",
            lab.url
        ),
    );
    lab.agent("broken", "broken", &["--config", &config]);

    let pass = lab.job_file(
        "pass.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: [echo first line, echo second line]\n",
    );
    let (code, out, err) = lab.run(&["submit", &pass, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim();
    assert!(err.contains("passed"), "{err}");
    let log = lab.log(id);
    assert_eq!(count_lines(&log, "first line"), 1, "{log}");
    assert_eq!(count_lines(&log, "second line"), 1, "{log}");
    let (_, status, _) = lab.run(&["status", id, "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "passed");

    let fail = lab.job_file(
        "fail.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: exit 4\n",
    );
    let (code, _, err) = lab.run(&["submit", &fail, "--wait"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed"), "{err}");

    let error = lab.job_file(
        "error.yaml",
        "job_queue: broken\ntest_data:\n  test_cmds: echo never\n",
    );
    let (code, out, err) = lab.run(&["submit", &error, "--wait"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(lab.job(out.trim()).state, JobState::Error);
    assert!(!lab.log(out.trim()).contains("never"));
}

#[test]
fn jobs_queues_and_agents_list_as_tables_and_as_json() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let job = lab.job_file(
        "named.yaml",
        "job_queue: local\nname: listed\ntest_data:\n  test_cmds: \"true\"\n",
    );
    let id = lab.submit(&job);
    assert_eq!(lab.ended(&id).state, JobState::Passed);
    let row = |args: &[&str], starts: &str| {
        let (code, out, err) = lab.run(args);
        assert_eq!(code, 0, "{err}");
        let mut lines = out.lines();
        let header = lines.next().unwrap_or_default().to_owned();
        let row = lines
            .find(|line| line.starts_with(starts))
            .unwrap_or_else(|| panic!("no row for {starts} in {out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        (header, row)
    };
    let (header, job_row) = row(&["jobs"], &id);
    assert!(
        header.starts_with("ID") && header.ends_with("NAME"),
        "{header}"
    );
    assert_eq!(job_row, [id.as_str(), "passed", "local", "listed"]);
    let (_, queue_row) = row(&["queues"], "local");
    assert_eq!(queue_row, ["local", "0", "0", "1"]);
    let (_, agent_row) = row(&["agents"], "a1");
    assert_eq!(agent_row.first().map(String::as_str), Some("a1"));
    assert_eq!(agent_row.last().map(String::as_str), Some("local"));
    for (args, key, expected) in [
        (["jobs", "--json"], "id", id.as_str()),
        (["queues", "--json"], "name", "local"),
        (["agents", "--json"], "id", "a1"),
    ] {
        let (code, out, err) = lab.run(&args);
        assert_eq!(code, 0, "{err}");
        let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(listed[0][key], expected, "{out}");
    }
}

#[test]
fn the_global_and_the_output_timeouts_kill_jobs() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let global = lab.job_file("global.yaml", "job_queue: local\nglobal_timeout: 2\ntest_data:\n  test_cmds: while true; do echo tick; sleep 0.2; done\n");
    let quiet = lab.job_file(
        "quiet.yaml",
        "job_queue: local\noutput_timeout: 1\ntest_data:\n  test_cmds: echo once; sleep 60\n",
    );
    for file in [global, quiet] {
        let (code, out, err) = lab.run(&["submit", &file, "--wait"]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(lab.job(out.trim()).state, JobState::Killed, "{file}");
    }
}

#[test]
fn a_cancelled_job_ends_cancelled_with_its_process_tree_gone() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let pid_file = lab.dir.path().join("sleeper.pid");
    let job = lab.job_file(
        "sleepy.yaml",
        &format!(
            "job_queue: local\ntest_data:\n  test_cmds: sleep 300 & echo $! > {}; wait\n",
            pid_file.display()
        ),
    );
    let id = lab.submit(&job);
    eventually(|| std::fs::read_to_string(&pid_file).is_ok_and(|pid| !pid.trim().is_empty()));
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    let (code, out, err) = lab.run(&["cancel", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id));
    assert_eq!(lab.ended(&id).state, JobState::Cancelled);
    assert!(!alive(&pid), "the job's sleep {pid} survived its cancel");
}

/// Whether a process exists and is not a zombie.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn a_malformed_job_file_is_pointed_at_and_never_sent() {
    let lab = Lab::start(&[]);
    let bad = lab.job_file(
        "bad.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: echo hi\n  colour: blue\n",
    );
    let (code, _, err) = lab.run(&["submit", &bad]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:4:3"), "{err}");
    assert!(err.contains("colour"), "{err}");
    let jobs = lab.client(None).jobs(&JobsQuery::default()).unwrap().jobs;
    assert!(jobs.is_empty());
}

#[test]
fn an_unreachable_server_is_named() {
    let (code, _, err) = {
        let output = proctor()
            .args(["jobs", "--server", "http://127.0.0.1:9"])
            .output()
            .unwrap();
        (
            output.status.code(),
            (),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(2));
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
}

#[test]
fn a_job_whose_agent_is_killed_ends_in_error_within_the_lease() {
    let mut lab = Lab::start(&[]);
    let agent = lab.agent("a1", "local", &[]);
    let job = lab.job_file(
        "long.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: echo started; sleep 60\n",
    );
    let id = lab.submit(&job);
    eventually(|| lab.log(&id).contains("started"));
    lab.children.kill(agent);
    let killed_at = jiff::Timestamp::now();
    let ended = lab.ended(&id);
    assert_eq!(ended.state, JobState::Error);
    assert!(ended.reason.unwrap_or_default().contains("agent lost"));
    // The lease is 3 s (renewed every second until the kill); the reaper looks at least once a second. Ten seconds
    // is a bound on correctness, far under the 60 s the wait above would allow.
    let after_kill = ended.ended_at.expect("an ended job has its end") - killed_at;
    assert!(
        after_kill.get_seconds() < 10,
        "ended {after_kill:#} after the agent was killed"
    );
}

#[test]
fn a_job_whose_agent_is_killed_is_requeued_and_passes_on_another() {
    let mut lab = Lab::start(&[]);
    let agent = lab.agent("a1", "local", &[]);
    let marker = lab.dir.path().join("first-attempt");
    let job = lab.job_file(
        "retry.yaml",
        &format!(
            "job_queue: local\nmax_attempts: 2\ntest_data:\n  test_cmds: if [ -e {m} ]; then {start}; {pass}; echo second attempt; else touch {m}; {start}; echo first attempt; sleep 60; fi\n",
            m = marker.display(),
            start = emit("--start demo.retry"),
            pass = emit("--test demo.retry --status success"),
        ),
    );
    let id = lab.submit(&job);
    let client = lab.client(None);
    eventually(|| {
        lab.log(&id).contains("first attempt")
            && client.tests(&id).is_ok_and(|tests| tests.runs.total == 1)
    });
    lab.children.kill(agent);
    lab.agent("a2", "local", &[]);
    let ended = lab.ended(&id);
    assert_eq!(ended.state, JobState::Passed, "{:?}", ended.reason);
    assert_eq!(ended.agent_id.as_deref(), Some("a2"));
    // Both attempts' runs are kept: the lost one did not finish, and the test passed only on the rerun.
    let (code, table, err) = lab.run(&["results", &id]);
    assert_eq!(code, 0, "{table}{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("flaky") && lines[0].ends_with("demo.retry"),
        "{table}"
    );
    assert!(
        lines[1].contains("unfinished")
            && lines[1].contains("attempt 1, on a1")
            && lines[1].contains("a1 lost"),
        "{table}"
    );
    assert!(
        lines[2].contains("success") && lines[2].contains("attempt 2, on a2"),
        "{table}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("1 tests: 0 passed, 0 failed, 0 skipped, 1 flaky; 2 runs: 1 passed, 1 failed, 0 skipped")
    );
}

/// A job printing numbered lines slowly, for tests that disturb the server while it runs.
fn counting_job(lab: &Lab, lines: u32) -> String {
    lab.job_file(
        "count.yaml",
        &format!("job_queue: local\ntest_data:\n  test_cmds: for i in $(seq 1 {lines}); do echo line $i; sleep 0.1; done\n"),
    )
}

fn assert_whole(log: &str, lines: u32) {
    for i in 1..=lines {
        assert_eq!(
            count_lines(log, &format!("line {i}")),
            1,
            "line {i} in {log}"
        );
    }
}

#[test]
fn a_server_killed_mid_job_and_restarted_gets_the_whole_log_once() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let id = lab.submit(&counting_job(&lab, 40));
    eventually(|| lab.log(&id).contains("line 5"));
    lab.kill_server();
    std::thread::sleep(Duration::from_secs(1));
    lab.start_server(&[]);
    let ended = lab.ended(&id);
    assert_eq!(ended.state, JobState::Passed, "{:?}", ended.reason);
    assert_whole(&lab.log(&id), 40);
}

/// `--wait` holds one request on the server until the job's state changes: a server killed under that request and
/// started again is ridden out, and the wait still ends with the job's verdict.
#[test]
fn a_wait_held_on_a_server_that_is_killed_and_restarted_ends_with_the_verdict() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let job = counting_job(&lab, 30);
    let waiting = lab
        .command(&["submit", &job, "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = lab.client(None);
    eventually(|| {
        client
            .jobs(&JobsQuery::default())
            .is_ok_and(|page| page.jobs.iter().any(|job| job.state == JobState::Running))
    });
    lab.kill_server();
    std::thread::sleep(Duration::from_secs(1));
    lab.start_server(&[]);
    let output = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("retrying") && err.contains("passed"), "{err}");
}

#[test]
fn a_server_unreachable_for_a_while_gets_the_whole_log() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let id = lab.submit(&counting_job(&lab, 30));
    eventually(|| lab.log(&id).contains("line 3"));
    let pid = lab.server_pid.to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(2));
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let ended = lab.ended(&id);
    assert_eq!(ended.state, JobState::Passed, "{:?}", ended.reason);
    assert_whole(&lab.log(&id), 30);
}

#[test]
fn tokens_are_required_once_one_exists_and_roles_are_checked() {
    let lab = Lab::start(&[]);
    // Tokens are made in the data directory, beside the running server, which checks for them on each request.
    let token = |role: &str| {
        let output = proctor()
            .args(["token", "create", "--role", role, "--data-dir"])
            .arg(lab.data_dir())
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let (admin, user, agent) = (token("admin"), token("user"), token("agent"));
    let listed = proctor()
        .args(["token", "list", "--data-dir"])
        .arg(lab.data_dir())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 4);
    let mut lab = lab;

    let (code, _, err) = lab.run(&["jobs"]);
    assert_eq!(code, 2);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = lab.run(&["jobs", "--token", &admin]);
    assert_eq!(code, 0, "{err}");

    let registration = RegisterAgent {
        queues: vec!["local".into()],
        images: vec![],
    };
    let refused = lab
        .client(Some(&user))
        .register_agent("a1", &registration)
        .unwrap_err();
    assert_eq!(refused.status().map(|status| status.as_u16()), Some(403));

    let agent_process = proctor()
        .args([
            "agent",
            "--server",
            &lab.url,
            "--id",
            "a1",
            "--queue",
            "local",
            "--heartbeat",
            "1",
            "--work-dir",
        ])
        .arg(lab.dir.path().join("work"))
        .env("PROCTOR_TOKEN", &agent)
        .spawn()
        .unwrap();
    lab.children.add(agent_process);
    let job = lab.job_file(
        "hi.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: echo hi\n",
    );
    let (code, _, err) = lab.run(&[
        "submit",
        &job,
        "--wait",
        "--allow-unknown-queue",
        "--token",
        &user,
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_oversize_upload_is_refused_with_413() {
    let lab = Lab::start(&["--max-body", "1000"]);
    let long = format!(
        "job_queue: local\ntest_data:\n  test_cmds: echo {}\n",
        "x".repeat(2000)
    );
    let job = lab.job_file("big.yaml", &long);
    let (code, _, err) = lab.run(&["submit", &job, "--allow-unknown-queue"]);
    assert_eq!(code, 2);
    assert!(err.contains("413"), "{err}");
}

#[test]
fn proctor_up_runs_the_hello_example() {
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children::default();
    let mut up = proctor()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(up.stdout.take().unwrap());
    children.add(up);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line.split_whitespace().last().unwrap().to_owned();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.yaml");
    let output = proctor()
        .arg("submit")
        .arg(hello)
        .args(["--follow", "--server", &url])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert_eq!(count_lines(&log, "step 3 of 3"), 1, "{log}");
}

// --- These need the server and agent helpers' work (recipes, attachments, artifacts, results, follow waits). ---

#[test]
fn a_recipe_starts_with_its_options_on_the_command_line() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let script = lab.job_file(
        "argv.py",
        "#!/usr/bin/env python3\nimport sys\nprint('argv', sys.argv[1:])\n",
    );
    let (code, _, err) = lab.run(&[
        "recipe",
        "add",
        "argv",
        &script,
        "--queue",
        "local",
        "--option",
        "size=small",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, listed, _) = lab.run(&["recipe", "list"]);
    assert!(listed.contains("argv"), "{listed}");
    let (code, out, err) = lab.run(&[
        "recipe",
        "start",
        "argv",
        "--option",
        "name=demo",
        "--follow",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("'--name', 'demo'"), "{out}");
    assert!(out.contains("'--size', 'small'"), "{out}");
    let (code, _, _) = lab.run(&["recipe", "remove", "argv"]);
    assert_eq!(code, 0);
    let (code, list, err) = lab.run(&["recipe", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!list.contains("argv"), "{list}");
    let (code, _, err) = lab.run(&["recipe", "show", "argv"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn attachments_go_in_and_artifacts_come_back() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    std::fs::write(lab.dir.path().join("data.txt"), "attached bytes\n").unwrap();
    let job = lab.job_file(
        "attach.yaml",
        "job_queue: local\ntest_data:\n  attachments:\n    - local: data.txt\n      agent: in/data.txt\n  test_cmds: cat attachments/test/in/data.txt && cp attachments/test/in/data.txt \"$PROCTOR_ARTIFACTS/copy.txt\"\n",
    );
    let (code, out, err) = lab.run(&["submit", &job, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim();
    assert_eq!(count_lines(&lab.log(id), "attached bytes"), 1);
    let target = lab.dir.path().join("artifacts");
    let (code, _, err) = lab.run(&["artifacts", id, "-o", &target.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(target.join("copy.txt")).unwrap(),
        "attached bytes\n"
    );
}

/// Attachments are packed before the job is submitted, so one that cannot be packed leaves no job behind; a bundle
/// the server will not take (here over its body limit) gets the job cancelled rather than held for ever.
#[test]
fn a_job_whose_attachments_do_not_arrive_is_not_left_waiting_for_them() {
    let lab = Lab::start(&["--max-body", "4000"]);
    let missing = lab.job_file(
        "missing.yaml",
        "job_queue: local\ntest_data:\n  attachments:\n    - local: nowhere.txt\n  test_cmds: echo never\n",
    );
    let (code, _, err) = lab.run(&["submit", &missing, "--allow-unknown-queue"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nowhere.txt"), "{err}");
    assert!(lab
        .client(None)
        .jobs(&JobsQuery::default())
        .unwrap()
        .jobs
        .is_empty());

    // Random bytes do not compress: the bundle stays over the 4 000-byte limit while the job file is far under it.
    let mut noise = vec![0; 20_000];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(lab.dir.path().join("noise.bin"), noise).unwrap();
    let oversize = lab.job_file(
        "oversize.yaml",
        "job_queue: local\ntest_data:\n  attachments:\n    - local: noise.bin\n  test_cmds: echo never\n",
    );
    let (code, out, err) = lab.run(&["submit", &oversize, "--allow-unknown-queue"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("413") && err.contains("was cancelled"),
        "{err}"
    );
    let jobs = lab.client(None).jobs(&JobsQuery::default()).unwrap().jobs;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state, JobState::Cancelled, "{jobs:?}");
}

/// A bundle from a hostile client, written with Python's `tarfile` (which, unlike the tar crate, writes any name).
fn hostile_bundle(dir: &Path) -> Vec<u8> {
    let path = dir.join("hostile.tar.gz");
    let script = "import io, sys, tarfile\n\
        with tarfile.open(sys.argv[1], 'w:gz') as bundle:\n\
        \x20   entry = tarfile.TarInfo('test/../../escape.txt')\n\
        \x20   entry.size = 2\n\
        \x20   bundle.addfile(entry, io.BytesIO(b'hi'))\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

#[test]
fn attachments_with_an_escaping_entry_are_refused_and_the_job_stays_held() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let client = Client::new(&lab.url, None).unwrap();
    let job = client
        .submit_job(
            b"job_queue: local\ntest_data:\n  attachments:\n    - local: data.txt\n  test_cmds: echo ran\n",
            false,
        )
        .unwrap();
    let refused = client
        .upload_attachments(&job.id, hostile_bundle(lab.dir.path()))
        .unwrap_err();
    assert_eq!(refused.status().map(|status| status.as_u16()), Some(422));
    assert!(
        refused.to_string().contains("test/../../escape.txt"),
        "{refused}"
    );
    // The agent is idle and long-polling: a claimable job would be running within moments.
    std::thread::sleep(Duration::from_secs(1));
    let (code, out, err) = lab.run(&["status", &job.id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state"], "queued", "{status}");
}

#[test]
fn an_agent_told_to_stop_finishes_its_job_then_exits_cleanly() {
    let mut lab = Lab::start(&[]);
    let agent = lab.agent("a1", "local", &[]);
    let job = lab.job_file(
        "slow.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: [echo begun, sleep 2, echo finished]\n",
    );
    let id = lab.submit(&job);
    eventually(|| lab.log(&id).contains("begun"));
    let status = lab.children.terminate(agent);
    assert!(status.success(), "{status:?}");
    let job = lab.ended(&id);
    assert_eq!(job.state, JobState::Passed, "{job:?}");
    assert_eq!(count_lines(&lab.log(&id), "finished"), 1);
}

/// A test command appending one subunit event (`proctor subunit emit ARGS`) to the job's results.
fn emit(args: &str) -> String {
    format!(
        "{} subunit emit {args} >> \"$PROCTOR_RESULTS\"",
        assert_cmd::cargo::cargo_bin("proctor").display()
    )
}

#[test]
fn results_come_as_a_table_subunit_and_junit() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let job = lab.job_file(
        "results.yaml",
        &format!(
            "job_queue: local\ntest_data:\n  test_cmds:\n    - {}\n    - {}\n",
            emit("--start demo.ok"),
            emit("--test demo.ok --status success")
        ),
    );
    let (code, out, err) = lab.run(&["submit", &job, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim();
    let (code, table, err) = lab.run(&["results", id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("passed") && line.ends_with("demo.ok")),
        "{table}"
    );
    assert!(
        table.contains("1 tests: 1 passed, 0 failed, 0 skipped"),
        "{table}"
    );
    let nowhere = lab.dir.path().join("no-artifacts");
    let (code, _, err) = lab.run(&["artifacts", id, "-o", &nowhere.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no artifacts"), "{err}");
    assert!(!nowhere.exists());
    let raw = lab
        .command(&["results", id, "--subunit"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        raw.first(),
        Some(&0xb3),
        "a subunit v2 packet starts with 0xb3"
    );
    let junit = lab.dir.path().join("report.xml");
    let (code, _, err) = lab.run(&["results", id, "--junit", &junit.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(
        xml.contains(r#"<testcase name="ok" classname="demo""#),
        "{xml}"
    );
}

/// `proctor results` fails a test the stream never finished (as the agent's verdict and every summary in Proctor
/// do) and a stream the server could not read to its end, saying so; `status` says it too.
#[test]
fn results_count_an_unfinished_test_and_an_unreadable_stream_as_failures() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let unfinished = lab.job_file(
        "unfinished.yaml",
        &format!(
            "job_queue: local\ntest_data:\n  test_cmds:\n    - {}\n    - {}\n    - {}\n",
            emit("--start demo.ok"),
            emit("--test demo.ok --status success"),
            emit("--start demo.cut")
        ),
    );
    let id = lab.submit(&unfinished);
    assert_eq!(lab.ended(&id).state, JobState::Failed);
    let (code, table, err) = lab.run(&["results", &id]);
    assert_eq!(code, 1, "{table}{err}");
    assert!(
        table.contains("2 tests: 1 passed, 1 failed, 0 skipped"),
        "{table}"
    );

    let corrupt = lab.job_file(
        "corrupt.yaml",
        // A packet whose checksum is wrong (all zeros): signature, version-2 flags, length 8, CRC.
        "job_queue: local\ntest_data:\n  test_cmds: printf '\\263\\040\\000\\010\\000\\000\\000\\000' >> \"$PROCTOR_RESULTS\"\n",
    );
    let id = lab.submit(&corrupt);
    assert_eq!(lab.ended(&id).state, JobState::Failed);
    let (code, table, err) = lab.run(&["results", &id]);
    assert_eq!(code, 1, "{table}{err}");
    assert!(table.contains("could not be read to its end"), "{table}");
    let (code, status, err) = lab.run(&["status", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        status.contains("could not be read to their end"),
        "{status}"
    );
}

/// One planned run of a test in a results stream: where it runs and what it comes to (`None`: it starts and never
/// finishes).
struct PlannedRun {
    test_id: String,
    route: Option<&'static str>,
    status: Option<Status>,
    /// The runner's retry it is (tagged `proctor-retry:N`), 0 for a first run.
    retry: u32,
}

impl PlannedRun {
    fn new(test_id: &str, route: Option<&'static str>, status: Option<Status>) -> PlannedRun {
        PlannedRun {
            test_id: test_id.to_owned(),
            route,
            status,
            retry: 0,
        }
    }

    /// Its events, in order: a start, a traceback for a failure, its end.
    fn events(&self, second: u32) -> Vec<Event> {
        let routed = |event: Event| {
            let event = match self.route {
                Some(route) => event.routed(route),
                None => event,
            };
            match self.retry {
                0 => event,
                n => event.tagged(format!("proctor-retry:{n}")),
            }
        };
        let mut events = vec![routed(
            Event::test(&self.test_id, Status::InProgress).at(Timestamp::new(second, 0)),
        )];
        if self.status == Some(Status::Fail) {
            events.push(routed(Event::text(
                Some(self.test_id.clone()),
                "traceback",
                "AssertionError: boom",
            )));
        }
        if let Some(status) = self.status {
            events.push(routed(
                Event::test(&self.test_id, status).at(Timestamp::new(second + 1, 0)),
            ));
        }
        events
    }

    fn failed(&self) -> bool {
        matches!(self.status, None | Some(Status::Fail | Status::UxSuccess))
    }

    fn passed(&self) -> bool {
        matches!(self.status, Some(Status::Success | Status::XFail))
    }
}

/// The totals every reader of a job's results must give for `runs` (all in one attempt), counted here from the plan
/// itself: runs as runs; a test by its latest retry that ran (skips aside): failed when a run of it failed on any
/// route, flaky when it passed after an earlier retry failed.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    runs: usize,
    runs_passed: usize,
    runs_failed: usize,
    runs_skipped: usize,
    tests: usize,
    tests_passed: usize,
    tests_failed: usize,
    tests_flaky: usize,
    tests_skipped: usize,
}

impl Totals {
    fn of(runs: &[PlannedRun]) -> Totals {
        let mut totals = Totals {
            runs: runs.len(),
            runs_passed: runs.iter().filter(|run| run.passed()).count(),
            runs_failed: runs.iter().filter(|run| run.failed()).count(),
            ..Totals::default()
        };
        totals.runs_skipped = totals.runs - totals.runs_passed - totals.runs_failed;
        let mut ids: Vec<&str> = runs.iter().map(|run| run.test_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        totals.tests = ids.len();
        for id in ids {
            let deciding: Vec<&PlannedRun> = runs
                .iter()
                .filter(|run| run.test_id == id && (run.failed() || run.passed()))
                .collect();
            let Some(latest) = deciding.iter().map(|run| run.retry).max() else {
                totals.tests_skipped += 1;
                continue;
            };
            let failed = |retries: &dyn Fn(u32) -> bool| {
                deciding
                    .iter()
                    .any(|run| retries(run.retry) && run.failed())
            };
            if failed(&|retry| retry == latest) {
                totals.tests_failed += 1;
            } else if failed(&|retry| retry < latest) {
                totals.tests_flaky += 1;
            } else {
                totals.tests_passed += 1;
            }
        }
        totals
    }

    /// The line `proctor results` ends with.
    fn line(&self) -> String {
        let mut tests = format!(
            "{} tests: {} passed, {} failed, {} skipped",
            self.tests, self.tests_passed, self.tests_failed, self.tests_skipped
        );
        if self.tests_flaky > 0 {
            tests.push_str(&format!(", {} flaky", self.tests_flaky));
        }
        if self.runs == self.tests {
            return tests;
        }
        format!(
            "{tests}; {} runs: {} passed, {} failed, {} skipped",
            self.runs, self.runs_passed, self.runs_failed, self.runs_skipped
        )
    }
}

/// A test id and the route code it runs on.
type RouteOfTest = (String, Option<&'static str>);

/// A small deterministic generator for the fuzzed streams (xorshift; the seed is in each failure's message).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A random plan: a few tests, each run once to three times on distinct routes, some retried (on any route, after
/// the runs on that route), with every status and runs that never finish, and a random interleaving of all their
/// events (the runs on one route of one test stay in order) with plain text between packets.
fn fuzzed_stream(seed: u64) -> (Vec<PlannedRun>, Vec<u8>) {
    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let statuses = [
        Some(Status::Success),
        Some(Status::Fail),
        Some(Status::Skip),
        Some(Status::XFail),
        Some(Status::UxSuccess),
        None,
    ];
    let routes = [None, Some("0"), Some("1"), Some("2")];
    let mut runs = Vec::new();
    for test in 0..3 + dice.below(5) {
        let mut free = routes.to_vec();
        for _ in 0..1 + dice.below(3) {
            let route = free.remove(dice.below(free.len()));
            let status = statuses[dice.below(statuses.len())];
            runs.push(PlannedRun::new(&format!("fuzz.t{test}"), route, status));
        }
        for retry in 1..=dice.below(3) as u32 {
            let route = routes[dice.below(routes.len())];
            // A retry always ends: a second start on a route whose run never ended would be that same run.
            let status = statuses[dice.below(statuses.len() - 1)];
            runs.push(PlannedRun {
                retry,
                ..PlannedRun::new(&format!("fuzz.t{test}"), route, status)
            });
        }
    }
    // One queue of events per test and route: a run there starts after the one before it ended (a run that
    // never finishes is last on its route, as a worker that never ends it would be).
    let mut queues: Vec<(RouteOfTest, std::collections::VecDeque<Event>)> = Vec::new();
    runs.sort_by_key(|run| run.status.is_none());
    for (i, run) in runs.iter().enumerate() {
        let key = (run.test_id.clone(), run.route);
        let events = run.events(1_000 + 10 * i as u32);
        match queues.iter_mut().find(|(k, _)| *k == key) {
            Some((_, queue)) => queue.extend(events),
            None => queues.push((key, events.into())),
        }
    }
    let mut pending: Vec<std::collections::VecDeque<Event>> =
        queues.into_iter().map(|(_, queue)| queue).collect();
    let mut stream = Vec::new();
    while !pending.is_empty() {
        let pick = dice.below(pending.len());
        let event = pending[pick].pop_front().unwrap();
        proctor_subunit::encode(&event, &mut stream).unwrap();
        if dice.below(4) == 0 {
            stream.extend_from_slice(b"some plain output\n");
        }
        if pending[pick].is_empty() {
            pending.remove(pick);
        }
    }
    (runs, stream)
}

/// Runs a job that writes `stream` into its results in `pieces` (so the agent uploads it in parts, packets cut
/// across uploads), and checks that the agent's verdict, the API's rows, `proctor results`, `proctor results
/// --junit` and `subunit-stats` on `proctor results --subunit` all give `expected`. Returns the job's id.
fn assert_every_reader_agrees(
    lab: &Lab,
    name: &str,
    stream: &[u8],
    pieces: &[usize],
    expected: &Totals,
) -> String {
    let file = lab.dir.path().join(format!("{name}.subunit"));
    std::fs::write(&file, stream).unwrap();
    let mut script = String::new();
    let mut at = 0;
    for &end in pieces.iter().chain([&stream.len()]) {
        script.push_str(&format!(
            "    - dd if={} bs=1 skip={at} count={} status=none >> \"$PROCTOR_RESULTS\"; sleep 0.3\n",
            file.display(),
            end - at
        ));
        at = end;
    }
    let job = lab.job_file(
        &format!("{name}.yaml"),
        &format!("job_queue: local\ntest_data:\n  test_cmds:\n{script}"),
    );
    let id = lab.submit(&job);
    let ended = lab.ended(&id);
    let context = format!("{name}: expected {expected:?}");
    let reason = ended.reason.clone().unwrap_or_default();
    if expected.tests_failed > 0 {
        assert_eq!(ended.state, JobState::Failed, "{context}: {reason}");
        let runs = format!(
            "{} of {} test runs failed",
            expected.runs_failed, expected.runs
        );
        let tests = format!(
            "{} of {} tests failed",
            expected.tests_failed, expected.tests
        );
        assert!(
            reason.contains(&runs) && reason.contains(&tests),
            "{context}: {reason}"
        );
    } else {
        assert_eq!(ended.state, JobState::Passed, "{context}: {reason}");
    }

    let rows = lab.client(None).tests(&id).unwrap();
    let api = Totals {
        runs: rows.runs.total,
        runs_passed: rows.runs.passed,
        runs_failed: rows.runs.failed,
        runs_skipped: rows.runs.skipped,
        tests: rows.tests.total,
        tests_passed: rows.tests.passed,
        tests_failed: rows.tests.failed,
        tests_flaky: rows.tests.flaky,
        tests_skipped: rows.tests.skipped,
    };
    assert_eq!(&api, expected, "{context}: the API's rows {rows:?}");
    assert_eq!(rows.runs.running, 0, "{context}: {rows:?}");

    let (code, table, err) = lab.run(&["results", &id]);
    assert_eq!(
        code,
        i32::from(expected.tests_failed > 0),
        "{context}: {table}{err}"
    );
    assert_eq!(
        table.lines().last(),
        Some(expected.line().as_str()),
        "{context}: {table}"
    );

    let junit = lab.dir.path().join(format!("{name}.xml"));
    let (code, _, err) = lab.run(&["results", &id, "--junit", &junit.display().to_string()]);
    assert_eq!(code, 0, "{context}: {err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = document
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .collect();
    let failed = cases
        .iter()
        .filter(|case| {
            case.children()
                .any(|c| c.has_tag_name("failure") || c.has_tag_name("error"))
        })
        .count();
    assert_eq!(
        (cases.len(), failed),
        (expected.runs, expected.runs_failed),
        "{context}: {xml}"
    );

    let raw = lab
        .command(&["results", &id, "--subunit"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        raw, stream,
        "{context}: the stored stream is the stream written"
    );
    let mut stats = proctor_testkit::venv_command("subunit-stats");
    stats.arg("--no-passthrough");
    let stats =
        String::from_utf8_lossy(&proctor_testkit::run_with_stdin(stats, &raw).stdout).into_owned();
    let number = |label: &str| -> usize {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in subunit-stats output:\n{stats}"))
    };
    // subunit-stats counts an unexpected success as passed; Proctor, like testtools' wasSuccessful, as failed.
    let unexpected = stream_uxsuccesses(&raw);
    assert_eq!(
        (number("Total tests:"), number("Failed tests:") + unexpected),
        (expected.runs, expected.runs_failed),
        "{context}: {stats}"
    );
    id
}

/// How many runs of a stream end `uxsuccess`.
fn stream_uxsuccesses(stream: &[u8]) -> usize {
    let mut count = 0;
    for event in proctor_subunit::EventReader::new(stream).map_while(Result::ok) {
        count += usize::from(event.status == Some(Status::UxSuccess));
    }
    count
}

/// Issue 16's stream: `a.ok` passes, `a.hang` starts and never finishes, `a.dup` fails on route 0 and passes on
/// route 1. Every reader counts 4 runs, 2 failed, and 3 tests, 2 failed (a.dup failed on one of its routes; a.hang
/// did not finish); then the same holds for fuzzed streams.
#[test]
fn every_reader_of_a_jobs_results_gives_the_same_totals() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let runs = [
        PlannedRun::new("a.ok", None, Some(Status::Success)),
        PlannedRun::new("a.hang", None, None),
        PlannedRun::new("a.dup", Some("0"), Some(Status::Fail)),
        PlannedRun::new("a.dup", Some("1"), Some(Status::Success)),
    ];
    let mut stream = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for event in run.events(100 + 10 * i as u32) {
            proctor_subunit::encode(&event, &mut stream).unwrap();
        }
    }
    let expected = Totals::of(&runs);
    assert_eq!(
        (
            expected.runs,
            expected.runs_failed,
            expected.tests,
            expected.tests_failed
        ),
        (4, 2, 3, 2)
    );
    let third = stream.len() / 3;
    let id = assert_every_reader_agrees(&lab, "issue", &stream, &[third, 2 * third + 1], &expected);
    let (_, table, _) = lab.run(&["results", &id]);
    assert!(
        table
            .lines()
            .any(|line| line.contains("unfinished")
                && line.contains("its stream ended before it did")),
        "the unfinished run says why: {table}"
    );

    let (mut seen_flaky, mut seen_failed_retry) = (false, false);
    for seed in 1..=6 {
        let (runs, stream) = fuzzed_stream(seed);
        let mut dice = Dice(seed);
        let mut pieces: Vec<usize> = (0..2 + dice.below(4))
            .map(|_| dice.below(stream.len()))
            .collect();
        pieces.sort_unstable();
        let expected = Totals::of(&runs);
        seen_flaky |= expected.tests_flaky > 0;
        seen_failed_retry |= runs.iter().any(|run| run.retry > 0 && run.failed());
        assert_every_reader_agrees(&lab, &format!("fuzz-{seed}"), &stream, &pieces, &expected);
    }
    assert!(
        seen_flaky && seen_failed_retry,
        "the seeds cover flaky tests and failed retries"
    );
}

#[test]
fn logs_follow_prints_a_running_job_once_and_ends_with_it() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let id = lab.submit(&counting_job(&lab, 15));
    let (code, out, err) = lab.run(&["logs", &id, "--follow"]);
    assert_eq!(code, 0, "{err}");
    assert_whole(&out, 15);
    assert!(lab.job(&id).state.is_final());
}

/// Adds a recipe printing its work directory to the lab at `url` and starts it, following; its exit code and output.
fn start_a_recipe(dir: &Path, url: &str) -> (i32, String) {
    std::fs::write(
        dir.join("where.py"),
        "#!/usr/bin/env python3\nimport os\nprint('recipe ran in', os.getcwd())\n",
    )
    .unwrap();
    let client = |args: &[&str]| {
        let output = proctor()
            .args(args)
            .env("PROCTOR_SERVER", url)
            .env_remove("PROCTOR_TOKEN")
            .current_dir(dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    };
    let (code, text) = client(&["recipe", "add", "where", "where.py", "--queue", "local"]);
    assert_eq!(code, 0, "{text}");
    client(&["recipe", "start", "where", "--follow"])
}

/// Starts a lab process in `dir` and reads the URL from the first line it prints.
fn start_in(dir: &Path, args: &[&str], children: &mut Children) -> String {
    let mut child = proctor()
        .args(args)
        .current_dir(dir)
        .env_remove("PROCTOR_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    children.add(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // The rest of the output is drained so the process never writes to a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned()
}

#[test]
fn relative_data_and_work_directories_of_up_run_recipes() {
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children::default();
    let up = [
        "up",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "lab",
        "--work-dir",
        "jobs",
    ];
    let url = start_in(dir.path(), &up, &mut children);
    let (code, out) = start_a_recipe(dir.path(), &url);
    assert_eq!(code, 0, "{out}");
    let jobs = dir.path().canonicalize().unwrap().join("jobs");
    assert!(
        out.contains(&format!("recipe ran in {}", jobs.display())),
        "{out}"
    );
    assert!(dir.path().join("lab").is_dir());
}

#[test]
fn relative_data_and_work_directories_of_server_and_agent_run_recipes() {
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children::default();
    let server = ["server", "--listen", "127.0.0.1:0", "--data-dir", "data"];
    let url = start_in(dir.path(), &server, &mut children);
    let agent = |args: &[&str], children: &mut Children| {
        let child = proctor()
            .args([
                "agent",
                "--server",
                &url,
                "--queue",
                "local",
                "--claim-wait",
                "1",
            ])
            .args(args)
            .current_dir(dir.path())
            .env_remove("PROCTOR_TOKEN")
            .spawn()
            .unwrap();
        children.add(child)
    };
    let first = agent(&["--id", "a1", "--work-dir", "work"], &mut children);
    let (code, out) = start_a_recipe(dir.path(), &url);
    assert_eq!(code, 0, "{out}");
    let root = dir.path().canonicalize().unwrap();
    assert!(
        out.contains(&format!("recipe ran in {}", root.join("work").display())),
        "{out}"
    );
    assert_eq!(children.terminate(first).code(), Some(0));

    // A relative execution_basedir in agent.toml is beside the file, wherever the agent starts.
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/agent.toml"),
        "agent_id = \"a2\"\njob_queues = [\"local\"]\nexecution_basedir = \"runs\"\n",
    )
    .unwrap();
    agent(&["--config", "conf/agent.toml"], &mut children);
    let (code, out) = start_a_recipe(dir.path(), &url);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "recipe ran in {}",
            root.join("conf/runs").display()
        )),
        "{out}"
    );
}

/// A job file as teams keep them for Testflinger (mode line, comments, `set -ex`, `mkdir artifacts`, a `local:`
/// attachment by its path, Testflinger-only fields, `lp:`/`gh:` keys) runs unchanged on an agent whose
/// `agent.toml` describes its device: `$DEVICE_IP` and friends are set, `{device_ip}` placeholders are filled as
/// Testflinger's device connectors fill them, the fields Proctor does not act on reach `job.json` and are named once
/// by `submit`, and both `artifacts/` and `$PROCTOR_ARTIFACTS` come back.
#[test]
fn a_testflinger_job_runs_unchanged_against_the_agents_device() {
    let mut lab = Lab::start(&[]);
    let config = lab.dir.path().join("agent.toml");
    std::fs::write(
        &config,
        r#"agent_id = "dut-1"
job_queues = ["rpi4b"]

# The machine under test, with the keys of a Testflinger device connector's default.yaml.
[device]
device_ip = "10.0.0.42"
serial_host = "10.0.0.9"
serial_port = 3001
reboot_script = ["snmpset -c private -v2c 10.0.0.2 i 0", "sleep 30"]

[device.env]
WPA_SSID = "lab-ap"
"#,
    )
    .unwrap();
    let config = config.display().to_string();
    lab.agent("dut-1", "rpi4b", &["--config", &config]);
    std::fs::create_dir(lab.dir.path().join("scripts")).unwrap();
    std::fs::write(
        lab.dir.path().join("scripts/check-device.sh"),
        "echo \"checking $DEVICE_IP\"\n",
    )
    .unwrap();
    let job = lab.job_file(
        "smoke.yaml",
        r#"# -*- mode: yaml -*-
# Smoke test for the lab's Pi, submitted to Testflinger as it is.
job_queue: rpi4b
global_timeout: 3600
output_timeout: 900
job_status_webhook: https://ci.example.com/hooks/testflinger  # nobody listens in this lab
provision_data:
  url: https://cdimage.ubuntu.com/ubuntu-core/22/stable/current/ubuntu-core-22-arm64+raspi.img.xz
test_data:
  test_username: ubuntu
  test_password: insecure
  attachments:
    - local: scripts/check-device.sh
  test_cmds: |
    #!/bin/bash
    set -ex
    mkdir artifacts
    bash attachments/test/scripts/check-device.sh
    echo "ip {device_ip} serial {serial_host}:{serial_port} ssid {env[WPA_SSID]} kept {{braces}} {unknown} ${WPA_SSID}" > artifacts/placeholders.txt
    echo "$DEVICE_IP|$SERIAL_PORT|$WPA_SSID|$AGENT_NAME|$REBOOT_SCRIPT" > artifacts/env.txt
    echo "written by a Proctor script" > "$PROCTOR_ARTIFACTS/proctor.txt"
reserve_data:
  ssh_keys:
    - lp:alice
    - gh:bob
  timeout: 1
"#,
    );
    let (code, out, err) = lab.run(&["submit", &job, "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = out.lines().next().unwrap().trim().to_owned();
    let log = lab.log(&id);
    assert_eq!(lab.job(&id).state, JobState::Passed, "{log}");
    assert_eq!(count_lines(&log, "checking 10.0.0.42"), 1, "{log}");

    let notice = "proctor: this lab keeps but does not act on job_status_webhook, test_data.test_username, test_data.test_password (they reach the phase commands in job.json)";
    assert_eq!(count_lines(&err, notice), 1, "{err}");
    let job_json = lab.dir.path().join("work/dut-1").join(&id).join("job.json");
    let job_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job_json).unwrap()).unwrap();
    assert_eq!(job_json["test_data"]["test_username"], "ubuntu");
    assert_eq!(job_json["test_data"]["test_password"], "insecure");
    assert_eq!(
        job_json["job_status_webhook"],
        "https://ci.example.com/hooks/testflinger"
    );

    let target = lab.dir.path().join("fetched");
    let (code, _, err) = lab.run(&["artifacts", &id, "-o", &target.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
    assert_eq!(
        read("placeholders.txt"),
        "ip 10.0.0.42 serial 10.0.0.9:3001 ssid lab-ap kept {braces} {unknown} lab-ap\n"
    );
    assert_eq!(
        read("env.txt"),
        "10.0.0.42|3001|lab-ap|dut-1|snmpset -c private -v2c 10.0.0.2 i 0;sleep 30\n"
    );
    assert_eq!(read("proctor.txt"), "written by a Proctor script\n");
}

/// Issue 11, item 3, through the binaries: the server's caps are flags (`proctor submit` of attachments that unpack
/// past `--max-attachments-expanded-bytes` is refused naming the cap, and the job does not run), and `proctor
/// artifacts` checks the caps again as it unpacks, so artifacts stored before the caps existed cannot fill the disk.
#[test]
fn bundles_past_their_caps_are_refused_on_submit_and_on_download() {
    let lab = Lab::start(&["--max-attachments-expanded-bytes", "1000"]);
    std::fs::write(lab.dir.path().join("data.bin"), vec![b'x'; 2000]).unwrap();
    let job = lab.job_file(
        "big.yaml",
        "job_queue: local\ntest_data:\n  attachments:\n    - local: data.bin\n  test_cmds: echo never\n",
    );
    let (code, out, err) = lab.run(&["submit", &job, "--allow-unknown-queue"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("413") && err.contains("cap of 1000 bytes"),
        "{err}"
    );

    let small = lab.job_file(
        "small.yaml",
        "job_queue: local\ntest_data:\n  test_cmds: echo never\n",
    );
    let (code, out, err) = lab.run(&["submit", &small, "--allow-unknown-queue"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = out.lines().next().unwrap().trim().to_owned();
    let store = proctor_store_sqlite::SqliteStore::open(&lab.data_dir()).unwrap();
    proctor_store::Store::put_artifact(
        &store,
        &id,
        &proctor_store::Artifact {
            name: "artifacts.tar.gz".into(),
            size: 0,
            content: proctor_testkit::bundle_claiming("disk-filler.img", 5 << 30),
        },
    )
    .unwrap();
    let target = lab.dir.path().join("fetched");
    let (code, _, err) = lab.run(&["artifacts", &id, "-o", &target.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cap of 4294967296 bytes"), "{err}");
    assert!(!target.join("disk-filler.img").exists());
    let (code, _, err) = lab.run(&[
        "artifacts",
        &id,
        "-o",
        &target.display().to_string(),
        "--max-expanded-bytes",
        "100",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cap of 100 bytes"), "{err}");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (like `4m`) at `path`, made if missing. Mounting needs root: without it the test
    /// is skipped with a notice, except on CI (`CI` set), which runs as root and must not skip it.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Tmpfs(path.to_owned())),
            outcome => {
                let on_ci = std::env::var("CI").is_ok_and(|value| value != "false");
                assert!(
                    !on_ci,
                    "CI must mount a tmpfs (it runs as root): {outcome:?}"
                );
                eprintln!("SKIPPED: cannot mount a tmpfs here (not root?): {outcome:?}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue 11, item 5: the server's data directory fills up mid-job. Writes answer 507 saying the storage is full
/// (reads keep working), the agent spools and retries, and the lease does not lapse for the server's own failure to
/// store heartbeats: once space is back, the whole log arrives and the job ends as its phases earned, passed.
#[test]
fn a_full_disk_mid_job_loses_nothing_and_the_job_ends_as_its_phases_earned() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_tmpfs) = Tmpfs::mount(&data, "6m") else {
        return;
    };
    let mut lab = Lab::start_in(dir, &[]);
    lab.agent("a1", "local", &[]);
    let lines = 150;
    let job = lab.job_file(
        "chatty.yaml",
        &format!(
            "job_queue: local\ntest_data:\n  test_cmds: |\n    for i in $(seq 1 {lines}); do printf 'line %04d %0500d\\n' $i 0; sleep 0.05; done\n"
        ),
    );
    let id = lab.submit(&job);
    eventually(|| lab.job(&id).state == JobState::Running && lab.log(&id).contains("line 0005"));
    // Fill what is left of the data directory's filesystem.
    let filler = lab.data_dir().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let (code, out, err) = lab.run(&["submit", &job]);
    assert_eq!(code, 2, "a write while full is refused: {out}{err}");
    assert!(
        err.contains("507") && err.contains("storage is full"),
        "{err}"
    );
    assert_eq!(lab.job(&id).state, JobState::Running, "reads still work");
    // Full for longer than the 3 s lease while the job goes on printing.
    std::thread::sleep(Duration::from_secs(5));
    std::fs::remove_file(&filler).unwrap();
    let ended = lab.ended(&id);
    assert_eq!(ended.state, JobState::Passed, "{ended:?}");
    let log = lab.log(&id);
    let printed: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("line "))
        .collect();
    assert_eq!(printed.len(), lines, "{log}");
    for (index, line) in printed.iter().enumerate() {
        assert!(
            line.starts_with(&format!("line {:04} ", index + 1)),
            "{line}"
        );
    }
}
