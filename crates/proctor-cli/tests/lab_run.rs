//! One run over a lab's agents (`proctor run --lab URL --queue Q`): real `proctor server` and `proctor agent`
//! processes, the run's tests going to the agents' copies of its tree, results stored here as a local run's are;
//! an agent lost mid-run gives its test back; an interrupted run stops its tests there and ends its jobs.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proctor_api::{JobState, JobSummaryView, JobsQuery};
use proctor_subunit::{EventReader, Status};
use support::{eventually, last_run, text, token, Lab, PATIENCE};
use tempfile::TempDir;

/// `proctor run` in `project`, over `lab`'s queue `fleet` when given.
fn run_command(project: &Path, lab: Option<&Lab>, args: &[&str]) -> Command {
    let mut command = support::proctor_run(project);
    if let Some(lab) = lab {
        command.args(["--lab", &lab.url, "--queue", "fleet"]);
    }
    command.args(args);
    command
}

fn run(project: &Path, lab: Option<&Lab>, args: &[&str]) -> Output {
    run_command(project, lab, args).output().unwrap()
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Each test's last final status and the route codes it ran on, from a subunit stream.
fn outcomes(stream: &[u8]) -> BTreeMap<String, (Status, BTreeSet<String>)> {
    let mut outcomes: BTreeMap<String, (Status, BTreeSet<String>)> = BTreeMap::new();
    for event in EventReader::new(stream) {
        let event = event.unwrap();
        let (Some(id), Some(status)) = (event.test_id, event.status) else {
            continue;
        };
        let entry = outcomes
            .entry(id)
            .or_insert((Status::InProgress, BTreeSet::new()));
        entry.1.extend(event.route_code);
        if status.is_final() && status != Status::Exists {
            entry.0 = status;
        }
    }
    outcomes
}

fn statuses(stream: &[u8]) -> BTreeMap<String, Status> {
    outcomes(stream)
        .into_iter()
        .map(|(id, (status, _))| (id, status))
        .collect()
}

/// The lab's jobs that held agents for runs.
fn run_jobs(lab: &Lab, token: Option<&str>) -> Vec<JobSummaryView> {
    let jobs = lab
        .client(token)
        .jobs(&JobsQuery {
            queue: Some("fleet".to_owned()),
            ..JobsQuery::default()
        })
        .unwrap();
    jobs.jobs
        .into_iter()
        .filter(|job| {
            job.name
                .as_deref()
                .is_some_and(|name| name.starts_with("proctor run of "))
        })
        .collect()
}

/// Waits until every job that held an agent has ended; the jobs.
fn all_ended(lab: &Lab, token: Option<&str>) -> Vec<JobSummaryView> {
    let mut jobs = Vec::new();
    eventually(|| {
        jobs = run_jobs(lab, token);
        jobs.iter().all(|job| job.state.is_final())
    });
    jobs
}

/// A lab with agents `a1` and `a2` on queue `fleet`.
fn lab_of_two() -> Lab {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "fleet", &[]);
    lab.agent("a2", "fleet", &[]);
    lab
}

/// Every process whose working directory is under `dir`: what an agent's phases run there.
fn processes_under(dir: &Path) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie has no working directory left to speak of, and `kill -0` would still find it.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn a_run_over_two_agents_is_stored_as_a_local_run_and_its_jobs_end_with_it() {
    let lab = lab_of_two();
    let project = TempDir::new().unwrap();
    let tests = project.path().join("t");
    let marks = project.path().join("marks");
    fs::create_dir_all(&marks).unwrap();
    for i in 0..8 {
        script(
            &tests,
            &format!("t{i}.sh"),
            &format!("echo \"$PWD\" > {}/t{i}; sleep 0.4", marks.display()),
        );
    }
    script(&tests, "fail.sh", "echo broken >&2; exit 1");
    script(&tests, "skip.sh", "exit 77");

    let output = run(project.path(), Some(&lab), &["--executables", "t"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("10 tests"), "{shown}");
    assert!(
        shown.contains("FAIL") && shown.contains("broken"),
        "a remote test's standard error is shown as a local one's: {shown}"
    );

    // The tests ran in the agents' copies of the tree (before the local run below writes the marks again).
    let work = lab.dir.path().join("work");
    for i in 0..8 {
        let ran_in = fs::read_to_string(marks.join(format!("t{i}"))).unwrap();
        assert!(
            Path::new(ran_in.trim()).starts_with(&work),
            "t{i} ran in {ran_in}, not on an agent"
        );
    }

    // The stored run says what a local run of the same tree says, test by test.
    let stored = outcomes(&last_run(project.path()));
    let local = run(
        project.path(),
        None,
        &["--executables", "t", "--no-store", "--subunit"],
    );
    assert_eq!(
        stored
            .iter()
            .map(|(id, (status, _))| (id.clone(), *status))
            .collect::<BTreeMap<_, _>>(),
        statuses(&local.stdout)
    );
    // Each test ran on one of the agents, and both agents worked.
    let routes: BTreeSet<String> = stored.values().flat_map(|(_, r)| r.clone()).collect();
    assert_eq!(
        routes,
        BTreeSet::from(["a1".to_owned(), "a2".to_owned()]),
        "{stored:?}"
    );
    // The run held one job per agent, named for it; both ended with the run.
    let jobs = run_jobs(&lab, None);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for job in &jobs {
        assert_eq!(job.state, JobState::Passed, "{job:?}");
        let name = job.name.as_deref().unwrap();
        assert!(name.contains(&tests.display().to_string()), "{name}");
    }
    let (code, listed, err) = lab.run(&["jobs", "--queue", "fleet"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listed.matches("proctor run of").count(), 2, "{listed}");

    // `--failing` reruns exactly the failure, over the lab again.
    let again = run(
        project.path(),
        Some(&lab),
        &["--executables", "t", "--failing", "--subunit"],
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert_eq!(
        statuses(&again.stdout).into_keys().collect::<Vec<_>>(),
        ["fail.sh"]
    );
    assert_eq!(all_ended(&lab, None).len(), 4);

    // `proctor pool check` holds each of a lab provisioner's agents once, naming them, and lets them go.
    let pool = project.path().join("pool.toml");
    fs::write(
        &pool,
        format!(
            "[[provisioner]]\nkind = \"lab\"\nserver = \"{}\"\nqueue = \"fleet\"\nmax_workers = 2\n",
            lab.url
        ),
    )
    .unwrap();
    let checked = support::proctor()
        .args(["pool", "check"])
        .arg(&pool)
        .current_dir(&tests)
        .env_remove("PROCTOR_TOKEN")
        .output()
        .unwrap();
    let said = text(&checked);
    assert_eq!(checked.status.code(), Some(0), "{said}");
    assert!(said.contains("provisioner 0 (lab): 2 worker(s)"), "{said}");
    assert!(said.contains("a1: ") && said.contains("a2: "), "{said}");
    assert_eq!(all_ended(&lab, None).len(), 6);
}

/// A testrepository project of unittest modules `a`, `b`, `c` (each with a failing test), run by python-subunit
/// with `--load-list $IDFILE`: batches of several tests in one process.
fn testr_project(project: &Path) {
    fs::create_dir_all(project.join("tests")).unwrap();
    fs::write(project.join("tests/__init__.py"), "").unwrap();
    for module in ["a", "b", "c"] {
        fs::write(
            project.join(format!("tests/test_{module}.py")),
            format!(
                "import time, unittest\n\nclass T(unittest.TestCase):\n    def test_one(self):\n        time.sleep(0.1)\n\n\
                 \x20   def test_two(self):\n        time.sleep(0.1)\n\n    def test_fails(self):\n        \
                 self.assertEqual(1, 2, '{module} broke')\n"
            ),
        )
        .unwrap();
    }
    fs::write(
        project.join(".testr.conf"),
        format!(
            "[DEFAULT]\ntest_command={} -m subunit.run discover -t . tests $LISTOPT $IDOPTION\n\
             test_id_option=--load-list $IDFILE\ntest_list_option=--list\n",
            proctor_testkit::python().display()
        ),
    )
    .unwrap();
}

#[test]
fn a_testr_project_on_a_lab_with_tokens_gives_the_totals_of_a_local_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (user, agent) = (token(&data, "user"), token(&data, "agent"));
    let mut lab = Lab::start_in(dir, &[]);
    lab.agent("a1", "fleet", &["--token", &agent]);
    lab.agent("a2", "fleet", &["--token", &agent]);
    let project = TempDir::new().unwrap();
    testr_project(project.path());

    // Without a token the lab refuses the run's jobs, and the run says so.
    let refused = run(project.path(), Some(&lab), &["--workers", "1"]);
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused));
    assert!(
        text(&refused).contains("token"),
        "the refusal is explained: {}",
        text(&refused)
    );

    let output = run_command(project.path(), Some(&lab), &[])
        .env("PROCTOR_TOKEN", &user)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("b broke"), "{}", text(&output));
    let over_lab = statuses(&last_run(project.path()));
    let local = run(
        project.path(),
        None,
        &["--no-store", "--subunit", "-j", "2"],
    );
    assert_eq!(over_lab, statuses(&local.stdout));
    assert_eq!(over_lab.len(), 9, "{over_lab:?}");
    assert_eq!(
        over_lab
            .values()
            .filter(|status| **status == Status::Fail)
            .count(),
        3
    );
    for job in all_ended(&lab, Some(&user)) {
        assert_eq!(job.state, JobState::Passed, "{job:?}");
    }
}

#[test]
fn an_agent_lost_mid_run_gives_its_test_back_to_the_run() {
    let mut lab = Lab::start(&[]);
    let doomed = lab.agent("a1", "fleet", &[]);
    lab.agent("a2", "fleet", &[]);
    let project = TempDir::new().unwrap();
    let tests = project.path().join("t");
    let marks = project.path().join("marks");
    fs::create_dir_all(&marks).unwrap();
    for i in 0..6 {
        script(
            &tests,
            &format!("t{i}.sh"),
            &format!("echo \"$PWD\" >> {}/t{i}; sleep 2", marks.display()),
        );
    }
    let running = run_command(project.path(), Some(&lab), &["--executables", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The machine of a1 dies while one of its tests runs: the agent and everything it started.
    let a1_work = lab.dir.path().join("work/a1");
    let started_on_a1 = || {
        fs::read_dir(&marks).unwrap().any(|mark| {
            fs::read_to_string(mark.unwrap().path()).is_ok_and(|ran| ran.contains("/work/a1/"))
        })
    };
    eventually(started_on_a1);
    lab.children.kill(doomed);
    for pid in processes_under(&a1_work) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let output = running.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let shown = text(&output);
    assert!(
        shown.contains("on agent a1 ended"),
        "the lost worker is reported: {shown}"
    );

    // Every test passed in the end; the one that was on a1 ran again on a2.
    let stored = outcomes(&last_run(project.path()));
    assert_eq!(stored.len(), 6);
    assert!(
        stored
            .values()
            .all(|(status, _)| *status == Status::Success),
        "{stored:?}"
    );
    let again: Vec<&String> = stored
        .iter()
        .filter(|(_, (_, routes))| routes.len() == 2)
        .map(|(id, _)| id)
        .collect();
    assert!(!again.is_empty(), "no test ran on both agents: {stored:?}");

    // a1's job ended once, as lost; no job is left holding or waiting for an agent.
    let jobs = all_ended(&lab, None);
    assert!(
        jobs.iter().any(|job| job.state == JobState::Error),
        "{jobs:?}"
    );
    assert!(
        jobs.iter().all(|job| job.state != JobState::Queued),
        "{jobs:?}"
    );
}

#[test]
fn an_interrupted_run_stops_its_tests_on_the_agents_and_ends_its_jobs() {
    let lab = lab_of_two();
    let project = TempDir::new().unwrap();
    let tests = project.path().join("t");
    let pids = project.path().join("pids");
    fs::create_dir_all(&pids).unwrap();
    for i in 0..4 {
        script(
            &tests,
            &format!("t{i}.sh"),
            &format!("echo $$ > {}/t{i}; exec sleep 60", pids.display()),
        );
    }
    let mut running = run_command(project.path(), Some(&lab), &["--executables", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = || -> Vec<i32> {
        fs::read_dir(&pids)
            .unwrap()
            .filter_map(|file| {
                fs::read_to_string(file.ok()?.path())
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect()
    };
    eventually(|| started().len() == 2);
    let remote: Vec<i32> = started();
    Command::new("kill")
        .args(["-INT", &running.id().to_string()])
        .status()
        .unwrap();
    let begun = Instant::now();
    let status = loop {
        if let Some(status) = running.try_wait().unwrap() {
            break status;
        }
        assert!(begun.elapsed() < PATIENCE, "the run did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    eventually(|| remote.iter().all(|pid| !alive(*pid)));
    let jobs = all_ended(&lab, None);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
}

#[test]
fn a_queue_with_no_agent_is_refused_saying_so() {
    let lab = Lab::start(&[]);
    let project = TempDir::new().unwrap();
    script(&project.path().join("t"), "a.sh", "exit 0");
    let output = run(project.path(), Some(&lab), &["--executables", "t"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("no agent of queue fleet is online"),
        "{}",
        text(&output)
    );
    let usage = run(project.path(), None, &["--queue", "fleet"]);
    assert_eq!(usage.status.code(), Some(2), "--queue without --lab");
}

#[test]
fn the_lab_worker_outside_a_run_job_says_what_it_is_for() {
    let outside = support::proctor()
        .args(["lab-worker", "--idle", "1"])
        .env_remove("PROCTOR_SERVER")
        .output()
        .unwrap();
    assert_eq!(outside.status.code(), Some(2));
    assert!(
        text(&outside).contains("runs as the test phase of a lab job"),
        "{}",
        text(&outside)
    );
    // A job of the lab that did not come from `proctor run --lab` has no tree to serve.
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "fleet", &[]);
    let file = lab.job_file(
        "worker.yaml",
        "job_queue: fleet\ntest_data:\n  test_cmds: exec \"$PROCTOR_BIN\" lab-worker --idle 1\n",
    );
    let id = lab.submit(&file);
    let job = lab.ended(&id);
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert!(
        lab.log(&id)
            .contains("it was not submitted by `proctor run --lab`"),
        "{}",
        lab.log(&id)
    );

    // With a tree but no run asking for batches (a run killed outright), the worker gives the agent back once its
    // idle window has passed.
    let tree = lab.dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("t.sh"), "exit 0\n").unwrap();
    let file = lab.job_file(
        "idle.yaml",
        "job_queue: fleet\ntest_data:\n  attachments:\n    - local: tree\n      agent: tree\n  \
         test_cmds: exec \"$PROCTOR_BIN\" lab-worker --idle 1\n",
    );
    let id = lab.submit(&file);
    let job = lab.ended(&id);
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let log = lab.log(&id);
    assert!(log.contains("ready in"), "{log}");
    assert!(
        log.contains("no batch came for 1 s: the run is gone"),
        "{log}"
    );
}
