//! `proctor run` as a real binary on real projects: directories of
//! executables, a `.testr.conf` project with python-subunit's runner, a
//! `.stestr.conf` project with stestr's own runner, time and memory limits,
//! escaped daemons, crashed workers, retries and Ctrl-C.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use proctor_subunit::{EventReader, Status};
use support::statuses;
use tempfile::TempDir;

mod support;

/// `proctor` in `project`, with none of the developer's run settings: no user config file (its directory does not
/// exist) and no `PROCTOR_*` setting variables.
fn proctor(project: &Path) -> Command {
    let mut command = Command::cargo_bin("proctor").expect("the proctor binary is built");
    command
        .current_dir(project)
        .env("PYTHON", proctor_testkit::python())
        .env("XDG_CONFIG_HOME", project.join(".no-user-config"));
    for key in proctor::config::RunSettings::KEYS {
        command.env_remove(proctor::config::env_var(key));
    }
    command
}

fn run(project: &Path, args: &[&str]) -> Output {
    proctor(project)
        .arg("run")
        .args(args)
        .output()
        .expect("proctor runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("creates the directory");
    }
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writes the script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn status_of(stream: &[u8], test_id: &str) -> Option<Status> {
    statuses(stream)
        .into_iter()
        .rev()
        .find(|(id, _)| id == test_id)
        .map(|(_, status)| status)
}

/// The text of a test's attachment in a stream.
fn attachment(stream: &[u8], test_id: &str, name: &str) -> String {
    EventReader::new(stream)
        .map(|event| event.expect("decodes"))
        .filter(|event| event.test_id.as_deref() == Some(test_id))
        .filter_map(|event| event.file.filter(|file| file.name == name))
        .map(|file| String::from_utf8_lossy(&file.content).into_owned())
        .collect()
}

/// The pid a test wrote to `path`.
fn read_pid(path: &Path) -> i32 {
    fs::read_to_string(path)
        .expect("the test wrote its pid")
        .trim()
        .parse()
        .expect("a pid")
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn executables_pass_fail_skip_and_the_run_is_stored() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    script(&tests, "pass.sh", "echo fine");
    script(&tests, "fail.sh", "echo broken >&2; exit 1");
    script(&tests, "skip.sh", "exit 77");
    script(&tests, "nested/deep.sh", "exit 0");
    let output = run(project.path(), &["--executables", "t", "-j", "2"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(
        shown.contains("FAIL") && shown.contains("broken"),
        "{shown}"
    );
    assert!(shown.contains("4 tests"), "{shown}");

    let stream = fs::read(project.path().join(".proctor/runs/0.subunit")).expect("stored run");
    assert_eq!(status_of(&stream, "pass.sh"), Some(Status::Success));
    assert_eq!(status_of(&stream, "fail.sh"), Some(Status::Fail));
    assert_eq!(status_of(&stream, "skip.sh"), Some(Status::Skip));
    assert_eq!(status_of(&stream, "nested/deep.sh"), Some(Status::Success));
    // The stored stream is what python-subunit reads.
    let stats =
        proctor_testkit::run_with_stdin(proctor_testkit::venv_command("subunit-stats"), &stream);
    assert!(
        String::from_utf8_lossy(&stats.stdout).contains("Failed tests:      1"),
        "{stats:?}"
    );

    // Only the failing test runs again.
    let again = run(
        project.path(),
        &["--executables", "t", "--failing", "--subunit"],
    );
    assert_eq!(again.status.code(), Some(1));
    let ran: Vec<String> = statuses(&again.stdout)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ran, ["fail.sh"]);
}

#[test]
fn subunit_output_is_pure_and_routes_name_workers() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    for i in 0..6 {
        script(&tests, &format!("t{i}.sh"), "sleep 0.1");
    }
    let output = run(
        project.path(),
        &["--executables", "t", "-j", "3", "--subunit", "--no-store"],
    );
    assert_eq!(output.status.code(), Some(0));
    let events: Vec<_> = EventReader::new(&output.stdout[..])
        .map(|event| event.expect("pure subunit on stdout"))
        .collect();
    let routes: std::collections::BTreeSet<_> =
        events.iter().filter_map(|e| e.route_code.clone()).collect();
    assert!(routes.len() > 1 && routes.iter().all(|r| ["0", "1", "2"].contains(&r.as_str())));
    assert!(
        !project.path().join(".proctor").exists(),
        "--no-store stored a run"
    );
}

#[test]
fn a_time_limit_kills_the_test_and_says_so() {
    let project = TempDir::new().expect("tempdir");
    fs::write(
        project.path().join("proctor.toml"),
        r#"
[[suite]]
name = "slow"
list = "printf 'quick\nstuck\n'"
run = "case $IDLIST in quick) exit 0;; stuck) sleep 300;; esac"
protocol = "exit-status"
exit_codes = "tmt"
time_limit = "1s"
"#,
    )
    .expect("writes proctor.toml");
    let started = Instant::now();
    let output = run(project.path(), &["--subunit", "--grace", "1"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(status_of(&output.stdout, "quick"), Some(Status::Success));
    assert_eq!(status_of(&output.stdout, "stuck"), Some(Status::Fail));
    let reason = attachment(&output.stdout, "stuck", proctor_runner::REASON);
    assert!(reason.contains("time limit"), "{reason}");
}

#[test]
fn a_daemon_started_by_a_test_is_gone_after_it() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    let pidfile = project.path().join("daemon.pid");
    script(
        &tests,
        "daemon.sh",
        &format!(
            "setsid sh -c 'sleep 300 & echo $! > {}; wait' > /dev/null 2>&1 < /dev/null &\n\
             while [ ! -s {} ]; do sleep 0.05; done",
            pidfile.display(),
            pidfile.display()
        ),
    );
    let output = run(project.path(), &["--executables", "t", "--no-store"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let pid = read_pid(&pidfile);
    assert!(!pid_alive(pid), "the daemon {pid} outlived its test");
}

#[test]
fn a_memory_hog_is_killed() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    let python = proctor_testkit::python();
    script(
        &tests,
        "hog.sh",
        &format!(
            "exec {} -c 'import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20)); time.sleep(0.01)'",
            python.display()
        ),
    );
    script(&tests, "small.sh", "exit 0");
    let output = run(
        project.path(),
        &[
            "--executables",
            "t",
            "--memory-limit",
            "100M",
            "--subunit",
            "--no-store",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(status_of(&output.stdout, "small.sh"), Some(Status::Success));
    assert_eq!(status_of(&output.stdout, "hog.sh"), Some(Status::Fail));
    let reason = attachment(&output.stdout, "hog.sh", proctor_runner::REASON);
    assert!(reason.contains("memory limit"), "{reason}");
}

/// A python package of unittest tests: `tests/test_<module>.py` with classes
/// `One` and `Two`, each test appending "<id> <pid>" to `pids`.
fn python_tests(project: &Path, modules: &[&str]) {
    let tests = project.join("tests");
    fs::create_dir_all(&tests).expect("tests dir");
    fs::write(tests.join("__init__.py"), "").expect("init");
    let pids = project.join("pids");
    for module in modules {
        let mut source = String::from("import os, unittest\n");
        for class in ["One", "Two"] {
            source.push_str(&format!("class {class}(unittest.TestCase):\n"));
            for i in 0..3 {
                source.push_str(&format!(
                    "    def test_{i}(self):\n        open({:?}, 'a').write('%s %d\\n' % (self.id(), os.getpid()))\n",
                    pids.display().to_string()
                ));
            }
        }
        fs::write(tests.join(format!("test_{module}.py")), source).expect("module");
    }
}

/// Which process ran each test, from the `pids` file.
fn pids_by_test(project: &Path) -> std::collections::BTreeMap<String, String> {
    fs::read_to_string(project.join("pids"))
        .expect("tests wrote their pids")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(id, pid)| (id.to_owned(), pid.to_owned()))
        .collect()
}

const TESTR_CONF: &str = "[DEFAULT]
test_command=${PYTHON:-python3} -m subunit.run discover -t . tests $LISTOPT $IDOPTION
test_id_option=--load-list $IDFILE
test_list_option=--list
group_regex=([^\\.]+\\.)+
";

#[test]
fn a_testr_project_runs_with_its_groups_in_one_process() {
    let project = TempDir::new().expect("tempdir");
    python_tests(project.path(), &["a", "b", "c"]);
    fs::write(project.path().join(".testr.conf"), TESTR_CONF).expect("conf");
    let listed = proctor(project.path()).arg("list").output().expect("lists");
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 18);
    let output = run(project.path(), &["-j", "2", "--subunit"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(statuses(&output.stdout).len(), 18);
    let pids = pids_by_test(project.path());
    assert_eq!(pids.len(), 18);
    for module in ["a", "b", "c"] {
        for class in ["One", "Two"] {
            let group: std::collections::BTreeSet<_> = (0..3)
                .map(|i| &pids[&format!("tests.test_{module}.{class}.test_{i}")])
                .collect();
            assert_eq!(group.len(), 1, "{module}.{class} ran in several processes");
        }
    }
}

/// testrepository's instance hooks as shell scripts that log each call to `hooks.log`: provision prints
/// `COUNT` new ids, execute runs the command (the instance is this machine; `$FILES` already are where the command
/// reads them), dispose logs the ids it got.
fn instance_hooks(project: &Path) -> String {
    let log = project.join("hooks.log");
    let log = log.display();
    script(
        &project.join("hooks"),
        "provision.sh",
        &format!(
            "echo \"provision $1\" >> {log}\nn=$(cat {counter} 2>/dev/null || echo 0)\nfor i in $(seq 1 $1); do n=$((n+1)); echo vm-$n; done\necho $n > {counter}",
            counter = project.join("counter").display()
        ),
    );
    script(
        &project.join("hooks"),
        "execute.sh",
        &format!(
            "id=$1; files=$2; shift 3\necho \"execute $id $files\" >> {log}\nexec sh -c \"$*\""
        ),
    );
    script(
        &project.join("hooks"),
        "dispose.sh",
        &format!("echo \"dispose $*\" >> {log}"),
    );
    format!(
        "{TESTR_CONF}instance_provision=hooks/provision.sh $INSTANCE_COUNT\n\
         instance_execute=hooks/execute.sh $INSTANCE_ID \"$FILES\" -- $COMMAND\n\
         instance_dispose=hooks/dispose.sh $INSTANCE_IDS\n"
    )
}

/// A `.testr.conf` project with instance hooks runs unchanged: its batches go through `instance_execute` on the
/// instances `instance_provision` made (their ids are the route codes), which are disposed of at the end, and the
/// results are those `testr run --parallel` gives on the same tree with the same hooks.
#[test]
fn a_testr_project_with_instance_hooks_runs_on_its_instances_as_testr_does() {
    let ours = TempDir::new().expect("tempdir");
    let theirs = TempDir::new().expect("tempdir");
    for project in [ours.path(), theirs.path()] {
        python_tests(project, &["a", "b"]);
        fs::write(
            project.join("tests/test_broken.py"),
            "import unittest\nclass Broken(unittest.TestCase):\n    def test_it(self):\n        self.fail('boom')\n",
        )
        .expect("a failing module");
        let conf = instance_hooks(project);
        fs::write(project.join(".testr.conf"), conf).expect("conf");
    }
    let output = run(ours.path(), &["-j", "2", "--subunit"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let mut our_results = statuses(&output.stdout);
    our_results.sort();
    assert_eq!(our_results.len(), 13, "{our_results:?}");
    let routes: std::collections::BTreeSet<String> = EventReader::new(&output.stdout[..])
        .filter_map(|event| event.expect("decodes").route_code)
        .collect();
    assert!(
        !routes.is_empty()
            && routes
                .iter()
                .all(|route| route == "vm-1" || route == "vm-2"),
        "{routes:?}"
    );
    let log = fs::read_to_string(ours.path().join("hooks.log")).expect("the hooks ran");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.first(), Some(&"provision 2"), "{log}");
    assert_eq!(lines.last(), Some(&"dispose vm-1 vm-2"), "{log}");
    let executions: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("execute "))
        .collect();
    assert!(!executions.is_empty(), "{log}");
    for line in executions {
        let mut words = line.split(' ').skip(1);
        let (id, files) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        assert!(id == "vm-1" || id == "vm-2", "{log}");
        assert!(
            !files.is_empty(),
            "each batch's id file is in $FILES: {log}"
        );
    }

    let testr = |args: &[&str]| {
        let mut command = proctor_testkit::venv_command("testr");
        command
            .args(args)
            .current_dir(theirs.path())
            .env("PYTHON", proctor_testkit::python());
        command.output().expect("testr runs")
    };
    assert!(testr(&["init"]).status.success());
    testr(&["run", "--parallel", "--concurrency", "2"]);
    let their_stream = testr(&["last", "--subunit"]).stdout;
    let mut their_results = statuses(&their_stream);
    their_results.sort();
    assert_eq!(our_results, their_results);
    let their_log =
        fs::read_to_string(theirs.path().join("hooks.log")).expect("testr ran the hooks");
    assert_eq!(
        their_log.lines().last(),
        Some("dispose vm-1 vm-2"),
        "{their_log}"
    );
}

/// A provisioning hook that fails leaves no test hanging: each fails with why, the hook's words are shown, and the
/// run exits 2.
#[test]
fn a_failing_instance_provision_fails_every_test_with_the_hooks_words() {
    let project = TempDir::new().expect("tempdir");
    python_tests(project.path(), &["a"]);
    let conf = format!("{TESTR_CONF}instance_provision=echo no capacity left >&2; exit 3\n");
    fs::write(project.path().join(".testr.conf"), conf).expect("conf");
    let output = run(project.path(), &["--subunit"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let results = statuses(&output.stdout);
    assert_eq!(results.len(), 6, "{results:?}");
    assert!(
        results.iter().all(|(_, status)| *status == Status::Fail),
        "{results:?}"
    );
    let id = &results[0].0;
    let reason = attachment(&output.stdout, id, proctor_runner::REASON);
    assert!(
        reason.contains("instance_provision") && reason.contains("no capacity left"),
        "{reason}"
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("instance_provision") && said.contains("exit status: 3"),
        "{said}"
    );
}

/// A pool of a hooks provisioner whose instances run commands here (logging each call to `hooks.log`) and a local
/// one; `provision` is the hooks' provisioning command.
fn pool_file(project: &Path, provision: &str) -> PathBuf {
    let log = project.join("hooks.log");
    let pool = project.join("pool.toml");
    fs::write(
        &pool,
        format!(
            "[[provisioner]]\nkind = \"hooks\"\nmax_workers = 2\nprovision = \"{provision}\"\n\
             execute = \"echo execute $INSTANCE_ID >> {log}; sh -c '$COMMAND'\"\n\
             dispose = \"echo dispose $INSTANCE_IDS >> {log}\"\n\
             platform = {{ arch = \"riscv64\", distro = \"sim-1\", tags = [\"vm\"] }}\n\n\
             [[provisioner]]\nkind = \"local\"\nmax_workers = 1\n",
            log = log.display()
        ),
    )
    .expect("pool file");
    pool
}

/// `proctor pool check` provisions each provisioner once, prints its workers with their platforms, and releases
/// them; a bad pool file is a pointed error and exit 2.
#[test]
fn pool_check_provisions_each_provisioner_once_and_releases_it() {
    let project = TempDir::new().expect("tempdir");
    let pool = pool_file(project.path(), "echo vm-a vm-b");
    let output = proctor(project.path())
        .args(["pool", "check"])
        .arg(&pool)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("provisioner 0 (hooks): 2 worker(s) in "),
        "{said}"
    );
    assert!(
        said.contains("  vm-a: riscv64 sim-1 +vm") && said.contains("  vm-b: riscv64 sim-1 +vm"),
        "{said}"
    );
    assert!(
        said.contains("provisioner 1 (local): 1 worker(s) in "),
        "{said}"
    );
    assert!(
        said.contains(&format!("  0: {}", std::env::consts::ARCH)),
        "{said}"
    );
    let log = fs::read_to_string(project.path().join("hooks.log")).expect("disposed");
    assert_eq!(log, "dispose vm-a vm-b\n");

    let bad = project.path().join("bad.toml");
    fs::write(
        &bad,
        "[[provisioner]]\nkind = \"local\"\nmax_workers = -1\n",
    )
    .expect("bad pool");
    let output = proctor(project.path())
        .args(["pool", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    // The report is wrapped to the terminal's width: compare its words.
    let report = text(&output);
    let said = report
        .split_whitespace()
        .filter(|word| *word != "│")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        said.contains("`provisioner[0].max_workers` at line 3, column 15"),
        "{said}"
    );
}

/// `proctor run --pool`: batches go to every provisioner's workers (an instance's id is its events' route code)
/// and the instances are disposed of at the end; a provisioner that fails is given up on and the run completes on
/// the others.
#[test]
fn a_run_over_a_pool_uses_every_provisioners_workers_and_survives_one_that_fails() {
    let project = TempDir::new().expect("tempdir");
    for i in 0..6 {
        script(&project.path().join("t"), &format!("t{i}.sh"), "sleep 0.2");
    }
    let pool = pool_file(project.path(), "echo vm-a vm-b");
    let output = run(
        project.path(),
        &[
            "--executables",
            "t",
            "--subunit",
            "--pool",
            pool.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(statuses(&output.stdout).len(), 6);
    let routes: std::collections::BTreeSet<String> = EventReader::new(&output.stdout[..])
        .filter_map(|event| event.expect("decodes").route_code)
        .collect();
    assert!(
        routes
            .iter()
            .all(|r| ["vm-a", "vm-b", "0"].contains(&r.as_str())),
        "{routes:?}"
    );
    assert!(
        routes.contains("vm-a") || routes.contains("vm-b"),
        "{routes:?}"
    );
    let log = fs::read_to_string(project.path().join("hooks.log")).expect("the hooks ran");
    assert!(
        log.lines().any(|line| line.starts_with("execute vm-")),
        "{log}"
    );
    assert_eq!(log.lines().last(), Some("dispose vm-a vm-b"), "{log}");
    // The stored run says where each test ran.
    let last = proctor(project.path())
        .args(["history", "show", "0"])
        .output()
        .expect("runs");
    let shown = text(&last);
    assert!(
        shown.lines().any(|line| line.starts_with("  PASS")
            && (line.ends_with(" on vm-a") || line.ends_with(" on vm-b"))),
        "{shown}"
    );

    let broken = pool_file(project.path(), "echo out of capacity >&2; exit 1");
    let output = run(
        project.path(),
        &[
            "--executables",
            "t",
            "--subunit",
            "--pool",
            broken.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let results = statuses(&output.stdout);
    assert_eq!(results.len(), 6);
    assert!(
        results.iter().all(|(_, status)| *status == Status::Success),
        "{results:?}"
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("gave up on provisioner 0") && said.contains("out of capacity"),
        "{said}"
    );
}

#[test]
fn a_crashed_worker_fails_its_test_and_requeues_the_rest() {
    let project = TempDir::new().expect("tempdir");
    python_tests(project.path(), &["a", "b"]);
    fs::write(
        project.path().join("tests/test_crash.py"),
        "import os, unittest\nclass Crash(unittest.TestCase):\n    def test_crash(self):\n        os.kill(os.getpid(), 9)\n",
    )
    .expect("crashing module");
    // No groups: the crash and other tests share batches.
    fs::write(
        project.path().join(".testr.conf"),
        TESTR_CONF.replace("group_regex=([^\\.]+\\.)+\n", ""),
    )
    .expect("conf");
    let output = run(project.path(), &["-j", "1", "--subunit"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let results = statuses(&output.stdout);
    let crash = "tests.test_crash.Crash.test_crash";
    assert_eq!(status_of(&output.stdout, crash), Some(Status::Fail));
    let reason = attachment(&output.stdout, crash, proctor_runner::REASON);
    assert!(reason.contains("did not finish"), "{reason}");
    let passed = results
        .iter()
        .filter(|(_, s)| *s == Status::Success)
        .count();
    assert_eq!(passed, 12, "{results:?}");
}

/// A `.testr.conf` project whose test command takes 0.3 s to start (as an
/// interpreter importing a large package does) and writes a line to
/// `starts` for every process: `list` for the listing, `run` for a batch.
fn slow_starting_project(project: &Path) {
    python_tests(project, &["a", "b"]);
    script(
        project,
        "start.sh",
        r#"case "$1" in --list) echo list >> starts ;; *) echo run >> starts ;; esac
sleep 0.3
exec "${PYTHON:-python3}" -m subunit.run discover -t . tests "$@""#,
    );
    fs::write(
        project.join(".testr.conf"),
        "[DEFAULT]\ntest_command=./start.sh $LISTOPT $IDOPTION\n\
         test_id_option=--load-list $IDFILE\ntest_list_option=--list\n",
    )
    .expect("conf");
}

/// The processes a run started, from the `starts` file, which it removes.
fn starts(project: &Path) -> Vec<String> {
    let path = project.join("starts");
    let text = fs::read_to_string(&path).expect("the test command logged its starts");
    fs::remove_file(&path).expect("removes the log");
    text.lines().map(str::to_owned).collect()
}

#[test]
fn a_suite_whose_start_up_dominates_runs_one_process_per_worker() {
    let project = TempDir::new().expect("tempdir");
    slow_starting_project(project.path());
    let first = run(project.path(), &["-j", "2"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(starts(project.path())[0], "list");
    // The run stored what the suite's processes cost.
    let history = proctor_repository::Repository::open(project.path())
        .and_then(|repository| repository.history())
        .expect("the run is stored");
    let cost = history
        .suite("testr")
        .and_then(|suite| suite.expected_cost())
        .expect("the suite's process cost is kept");
    assert!(cost.startup >= Duration::from_millis(300), "{cost:?}");
    // With that history, 0.3 s of start-up outweighs 12 quick tests: one
    // process per worker, each with half of them.
    let second = run(project.path(), &["-j", "2", "--subunit"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(starts(project.path()), ["list", "run", "run"]);
    let results = statuses(&second.stdout);
    assert_eq!(results.len(), 12, "{results:?}");
    assert!(results.iter().all(|(_, status)| *status == Status::Success));
}

#[test]
fn a_stestr_project_runs_with_stestr_s_runner() {
    let project = TempDir::new().expect("tempdir");
    python_tests(project.path(), &["a", "b"]);
    fs::write(
        project.path().join(".stestr.conf"),
        "[DEFAULT]\ntest_path=./tests\ntop_dir=./\n",
    )
    .expect("conf");
    let output = run(project.path(), &["-j", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("12 tests"), "{}", text(&output));
    let last = proctor(project.path()).args(["failing", "--list"]).output();
    assert_eq!(last.expect("runs").status.code(), Some(0));
}

/// The line `proctor run` printed for `test_id` (its result label, time and id, and what follows the id).
fn line_of<'a>(shown: &'a str, test_id: &str) -> &'a str {
    shown
        .lines()
        .find(|line| {
            line.contains("s] ")
                && line.split_once("s] ").is_some_and(|(_, rest)| {
                    rest == test_id || rest.starts_with(&format!("{test_id} "))
                })
        })
        .unwrap_or_else(|| panic!("a line for {test_id} in\n{shown}"))
}

/// A passing test's line is as it always was: label, time, id, nothing after the id.
fn assert_plain_pass(shown: &str, test_id: &str) {
    let line = line_of(shown, test_id);
    assert!(
        line.starts_with("  PASS [") && line.ends_with(&format!("s] {test_id}")),
        "{line:?} in\n{shown}"
    );
}

#[test]
fn a_skipped_python_subunit_test_shows_its_reason_on_its_line() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("tests");
    fs::create_dir_all(&tests).expect("tests dir");
    fs::write(tests.join("__init__.py"), "").expect("init");
    fs::write(
        tests.join("test_gpu.py"),
        "import unittest\n\
         class Gpu(unittest.TestCase):\n\
         \x20   def test_kernel(self):\n\
         \x20       self.skipTest('needs a GPU\\nsee docs/gpu.md')\n\
         \x20   def test_cpu(self):\n\
         \x20       print('noise on stdout')\n\
         \x20   def test_also_cpu(self):\n\
         \x20       pass\n",
    )
    .expect("module");
    fs::write(project.path().join(".testr.conf"), TESTR_CONF).expect("conf");
    let output = run(project.path(), &["-j", "1"]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    // One line for the skip, with the first line of python-subunit's `reason` attachment.
    let skip = line_of(&shown, "tests.test_gpu.Gpu.test_kernel");
    assert!(
        skip.starts_with("  SKIP [")
            && skip.ends_with("tests.test_gpu.Gpu.test_kernel (reason: needs a GPU)"),
        "{skip:?} in\n{shown}"
    );
    assert!(
        !shown.contains("docs/gpu.md"),
        "only the reason's first line:\n{shown}"
    );
    // Passing tests print as before, whatever they wrote.
    assert_plain_pass(&shown, "tests.test_gpu.Gpu.test_cpu");
    assert_plain_pass(&shown, "tests.test_gpu.Gpu.test_also_cpu");
    assert!(!shown.contains("noise on stdout"), "{shown}");
    assert!(
        shown.contains("3 tests in ") && shown.contains(": 2 passed, 0 failed, 1 skipped"),
        "{shown}"
    );
    // The reason is what the stored run holds.
    let stream = fs::read(project.path().join(".proctor/runs/0.subunit")).expect("stored run");
    assert!(
        attachment(&stream, "tests.test_gpu.Gpu.test_kernel", "reason").starts_with("needs a GPU"),
        "stored reason"
    );
}

#[test]
fn an_executable_that_exits_77_shows_the_last_line_it_printed_as_its_reason() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    script(
        &tests,
        "docker.sh",
        "echo checking for docker; echo 'no docker here'; exit 77",
    );
    script(&tests, "quiet-skip.sh", "exit 77");
    let long = "x".repeat(500);
    script(&tests, "long.sh", &format!("echo {long}; exit 77"));
    script(&tests, "pass.sh", "echo fine");
    let output = run(project.path(), &["--executables", "t", "-j", "2"]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(
        line_of(&shown, "docker.sh").ends_with("docker.sh (reason: no docker here)"),
        "{shown}"
    );
    // A skip that said nothing has the line it always had.
    assert!(
        line_of(&shown, "quiet-skip.sh").ends_with("s] quiet-skip.sh"),
        "{shown}"
    );
    // A long reason is cut, on one line.
    let cut = line_of(&shown, "long.sh");
    assert!(cut.ends_with("x…)") && cut.len() < 300, "{cut:?}");
    assert_plain_pass(&shown, "pass.sh");
    assert!(!shown.contains("fine"), "{shown}");
}

#[test]
fn retries_report_flaky_tests_in_the_summary_and_junit() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    let marker = project.path().join("ran-once");
    script(
        &tests,
        "flaky.sh",
        &format!(
            "if [ -e {0} ]; then exit 0; fi; touch {0}; exit 1",
            marker.display()
        ),
    );
    script(&tests, "steady.sh", "exit 0");
    let junit = project.path().join("junit.xml");
    let output = run(
        project.path(),
        &[
            "--executables",
            "t",
            "--retries",
            "2",
            "--junit",
            junit.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = text(&output);
    assert!(summary.contains("Flaky"), "{summary}");
    // One results model: the run's closing line counts the tests by verdict and the runs as runs, and `proctor
    // last` reads the stored run the same way.
    let totals = ": 1 passed, 0 failed, 0 skipped, 1 flaky; 3 runs: 2 passed, 1 failed, 0 skipped";
    assert!(
        summary.contains("2 tests in ") && summary.contains(totals),
        "{summary}"
    );
    let last = proctor(project.path()).arg("last").output().expect("runs");
    assert_eq!(last.status.code(), Some(0), "{}", text(&last));
    assert!(text(&last).contains(totals), "{}", text(&last));
    let xml = fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("flakyFailure"), "{xml}");
}

#[test]
fn ctrl_c_stops_running_tests_and_stores_an_interrupted_run() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    let pidfile = project.path().join("sleeper.pid");
    script(
        &tests,
        "sleeper.sh",
        &format!("echo $$ > {}; sleep 300", pidfile.display()),
    );
    let binary = assert_cmd::cargo::cargo_bin("proctor");
    let mut child = StdCommand::new(binary)
        .current_dir(project.path())
        .args(["run", "--executables", "t", "--grace", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts proctor");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() || fs::read_to_string(&pidfile).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "the test never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sleeper = read_pid(&pidfile);
    let proctor_pid = i32::try_from(child.id()).expect("pid fits");
    assert!(StdCommand::new("kill")
        .args(["-INT", &proctor_pid.to_string()])
        .status()
        .expect("kill runs")
        .success());
    let status = child.wait().expect("proctor exits");
    assert_eq!(status.code(), Some(130));
    assert!(!pid_alive(sleeper), "the test outlived the interrupted run");
    let meta = fs::read_to_string(project.path().join(".proctor/runs/0.json")).expect("stored");
    assert!(meta.to_lowercase().contains("interrupted"), "{meta}");
}

#[test]
fn an_fmf_tree_runs_as_tmt_would() {
    let project = TempDir::new().expect("tempdir");
    let root = project.path();
    fs::create_dir_all(root.join(".fmf")).expect("mkdir");
    fs::write(root.join(".fmf/version"), "1\n").expect("version");
    let pidfile = root.join("daemon.pid");
    let python = proctor_testkit::python();
    fs::create_dir_all(root.join("tests/daemon")).expect("mkdir");
    fs::write(
        root.join("tests/main.fmf"),
        format!(
            "environment:\n    GREETING: hello\n\
             /pass:\n    test: test \"$GREETING\" = hello\n\
             /fail:\n    test: exit 1\n\
             /error:\n    test: exit 2\n\
             /expected-failure:\n    test: exit 1\n    result: xfail\n\
             /timeout:\n    test: sleep 300\n    duration: 1s\n\
             /hog:\n    test: \"{} -c 'b = []\\nwhile True: b.append(bytearray(8 << 20))'\"\n\
             /fedora:\n    test: exit 0\n    enabled: false\n    adjust:\n      - when: distro == fedora\n        enabled: true\n",
            python.display()
        ),
    )
    .expect("main.fmf");
    fs::write(
        root.join("tests/daemon/main.fmf"),
        format!(
            "test: |\n    setsid sh -c 'sleep 300 & echo $! > {}; wait' > /dev/null 2>&1 < /dev/null &\n    \
             while [ ! -s {} ]; do sleep 0.05; done\n",
            pidfile.display(),
            pidfile.display()
        ),
    )
    .expect("daemon test");
    let listed = proctor(root).args(["list"]).output().expect("lists");
    let ids = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(!ids.contains("/tests/fedora"), "{ids}");
    let output = run(
        root,
        &[
            "--subunit",
            "--memory-limit",
            "100M",
            "--grace",
            "1",
            "--context",
            "distro=fedora-40",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stream = &output.stdout;
    assert_eq!(status_of(stream, "/tests/pass"), Some(Status::Success));
    assert_eq!(status_of(stream, "/tests/fail"), Some(Status::Fail));
    assert_eq!(status_of(stream, "/tests/error"), Some(Status::Fail));
    assert!(attachment(stream, "/tests/error", proctor_runner::REASON).contains("error"));
    assert_eq!(
        status_of(stream, "/tests/expected-failure"),
        Some(Status::Success)
    );
    assert_eq!(status_of(stream, "/tests/fedora"), Some(Status::Success));
    assert_eq!(status_of(stream, "/tests/timeout"), Some(Status::Fail));
    assert!(attachment(stream, "/tests/timeout", proctor_runner::REASON).contains("time limit"));
    assert_eq!(status_of(stream, "/tests/hog"), Some(Status::Fail));
    assert!(attachment(stream, "/tests/hog", proctor_runner::REASON).contains("memory limit"));
    assert_eq!(status_of(stream, "/tests/daemon"), Some(Status::Success));
    let pid = read_pid(&pidfile);
    assert!(!pid_alive(pid), "the daemon {pid} outlived its test");
}

#[test]
fn filters_pick_the_tests_and_make_the_run_partial() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    for name in ["api_a.sh", "api_b.sh", "ui_a.sh", "ui_b.sh", "db.sh"] {
        script(&tests, name, "exit 0");
    }
    fs::write(project.path().join("include"), "ui_a.sh\nui_b.sh\ndb.sh\n").expect("list");
    fs::write(project.path().join("exclude"), "ui_b.sh\n").expect("list");
    let ran = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--executables", "t", "--subunit"];
        all.extend_from_slice(args);
        let output = run(project.path(), &all);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let mut ids: Vec<String> = statuses(&output.stdout)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ran(&["^api"]), ["api_a.sh", "api_b.sh"]);
    assert_eq!(ran(&["_a", "--exclude", "^ui"]), ["api_a.sh"]);
    assert_eq!(
        ran(&["--include-list", "include", "--exclude-list", "exclude"]),
        ["db.sh", "ui_a.sh"]
    );
    let meta = fs::read_to_string(project.path().join(".proctor/runs/0.json")).expect("stored");
    assert!(meta.contains("artial"), "{meta}");
}

#[test]
fn until_failure_repeats_until_a_test_fails() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    let counter = project.path().join("count");
    script(
        &tests,
        "third_time.sh",
        &format!(
            "n=$(cat {0} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {0}; [ $n -lt 3 ]",
            counter.display()
        ),
    );
    let output = run(project.path(), &["--executables", "t", "--until-failure"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(fs::read_to_string(&counter).expect("counted").trim(), "3");
    assert!(project.path().join(".proctor/runs/2.subunit").exists());
    assert!(!project.path().join(".proctor/runs/3.subunit").exists());
}

#[test]
fn a_tap_suite_reports_each_test() {
    let project = TempDir::new().expect("tempdir");
    fs::write(
        project.path().join("proctor.toml"),
        r#"
[[suite]]
name = "tap"
list = "printf 'one\ntwo\nthree\n'"
run = '''n=0; echo "TAP version 13"; for id in $IDLIST; do n=$((n+1)); if [ $id = two ]; then echo "not ok $n - $id"; else echo "ok $n - $id"; fi; done'''
protocol = "tap"
"#,
    )
    .expect("writes proctor.toml");
    let output = run(project.path(), &["--subunit", "-j", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let results = statuses(&output.stdout);
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.contains(&("one".to_owned(), Status::Success)));
    assert!(results.contains(&("two".to_owned(), Status::Fail)));
}

#[test]
fn a_reader_that_goes_away_stops_the_run_quietly() {
    use std::io::Read;
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    let pids = project.path().join("pids");
    for i in 0..40 {
        script(
            &tests,
            &format!("t{i}.sh"),
            &format!("echo $$ >> {}; sleep 0.3", pids.display()),
        );
    }
    let binary = assert_cmd::cargo::cargo_bin("proctor");
    let mut child = StdCommand::new(binary)
        .current_dir(project.path())
        .args(["run", "--executables", "t", "-j", "2", "--subunit"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts proctor");
    // Like `| head -c 10`: read a little, then close the pipe.
    let mut first = [0u8; 10];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("reads the start of the stream");
    let output = child.wait_with_output().expect("proctor exits");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let meta = fs::read_to_string(project.path().join(".proctor/runs/0.json")).expect("stored");
    assert!(meta.to_lowercase().contains("interrupted"), "{meta}");
    let started = fs::read_to_string(&pids).expect("some tests started");
    assert!(
        started.lines().count() < 40,
        "the run went on after its reader left"
    );
    for pid in started
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        assert!(!pid_alive(pid), "test process {pid} outlived the run");
    }
}

#[test]
fn concurrent_runs_in_one_project_are_both_stored() {
    let project = TempDir::new().expect("tempdir");
    let tests = project.path().join("t");
    for i in 0..4 {
        script(&tests, &format!("t{i}.sh"), "sleep 0.2");
    }
    let binary = assert_cmd::cargo::cargo_bin("proctor");
    let children: Vec<_> = (0..3)
        .map(|_| {
            StdCommand::new(&binary)
                .current_dir(project.path())
                .args(["run", "--executables", "t", "--subunit"])
                .stdout(Stdio::null())
                .spawn()
                .expect("starts proctor")
        })
        .collect();
    for mut child in children {
        assert_eq!(child.wait().expect("exits").code(), Some(0));
    }
    let history = proctor(project.path())
        .arg("history")
        .output()
        .expect("lists runs");
    let listing = String::from_utf8_lossy(&history.stdout).into_owned();
    for id in 0..3 {
        let stream = fs::read(project.path().join(format!(".proctor/runs/{id}.subunit")))
            .unwrap_or_else(|error| panic!("run {id}: {error}\n{listing}"));
        assert_eq!(statuses(&stream).len(), 4, "run {id}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let project = TempDir::new().expect("tempdir");
    let output = run(project.path(), &["--no-store"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!text(&output).is_empty());
    let tests = project.path().join("t");
    script(&tests, "a.sh", "exit 0");
    let output = run(project.path(), &["--executables", "t", "("]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("test filter"), "{}", text(&output));
    let output = run(
        project.path(),
        &["--executables", "t", "--memory-limit", "lots"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("--memory-limit"),
        "{}",
        text(&output)
    );
}

// Pools of ssh hosts: real sshd servers on loopback addresses (started with their own keys by the testkit).

/// An FMF tree whose tests each write where they ran (`$SSH_CONNECTION`, the directory) to `$MARKS/<name>` at
/// their start, then run `body`; `extra` is more of main.fmf.
fn marking_tree(root: &Path, marks: &Path, tests: &[(&str, &str)], extra: &str) {
    fs::create_dir_all(root.join(".fmf")).expect("mkdir");
    fs::write(root.join(".fmf/version"), "1\n").expect("version");
    fs::create_dir_all(marks).expect("mkdir");
    let mut main = format!("environment:\n    MARKS: {}\n", marks.display());
    for (name, body) in tests {
        main.push_str(&format!(
            "/{name}:\n    test: echo \"$SSH_CONNECTION|$PWD|$TMT_TREE\" > \"$MARKS/{name}\"; {body}\n"
        ));
    }
    main.push_str(extra);
    fs::write(root.join("main.fmf"), main).expect("main.fmf");
}

/// Where a test ran, by the mark it wrote: the server address ssh gave it, and its working directory.
fn mark(marks: &Path, name: &str) -> (String, String) {
    let text = fs::read_to_string(marks.join(name)).unwrap_or_default();
    let mut fields = text.trim().split('|');
    let connection = fields.next().unwrap_or_default();
    let server = connection.split_whitespace().nth(2).unwrap_or_default();
    (
        server.to_owned(),
        fields.next().unwrap_or_default().to_owned(),
    )
}

/// A pool file of ssh provisioners, one per `(sshd, workers, extra lines)`.
fn ssh_pool(dir: &Path, name: &str, hosts: &[(&proctor_testkit::Sshd, usize, &str)]) -> PathBuf {
    let mut text = String::new();
    for (sshd, workers, extra) in hosts {
        text.push_str(&format!(
            "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"{}\"]\nworkers_per_host = {workers}\n{}{extra}\n",
            sshd.host_entry(),
            sshd.pool_options()
        ));
    }
    let path = dir.join(name);
    fs::write(&path, text).expect("pool file");
    path
}

/// The route codes of the runs each test had, in order.
fn routes_by_test(stream: &[u8]) -> std::collections::BTreeMap<String, Vec<(String, Status)>> {
    let mut runs: std::collections::BTreeMap<String, Vec<(String, Status)>> = Default::default();
    for event in EventReader::new(stream).map(|event| event.expect("decodes")) {
        if let (Some(id), Some(status)) = (event.test_id, event.status) {
            if status != Status::Exists {
                runs.entry(id)
                    .or_default()
                    .push((event.route_code.unwrap_or_default(), status));
            }
        }
    }
    runs
}

/// Whether a process whose command line contains each of `texts` is running.
fn process_running(texts: &[&str]) -> bool {
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .any(|cmdline| texts.iter().all(|text| cmdline.contains(text)))
}

#[test]
fn an_fmf_suite_runs_over_an_ssh_pool_and_leaves_nothing_on_the_hosts() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let a = proctor_testkit::Sshd::start(&servers.path().join("a"), 2);
    let b = proctor_testkit::Sshd::start(&servers.path().join("b"), 3);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    let tests: Vec<(String, &str)> = (0..8).map(|i| (format!("t{i}"), "sleep 1")).collect();
    let tests: Vec<(&str, &str)> = tests.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    marking_tree(
        &tree,
        &marks,
        &tests,
        "/fails:\n    test: echo broken on purpose; exit 1\n",
    );
    let pool = ssh_pool(project.path(), "pool.toml", &[(&a, 2, ""), (&b, 2, "")]);

    let output = run(&tree, &["--subunit", "--pool", pool.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let runs = routes_by_test(&output.stdout);
    assert_eq!(runs.len(), 9, "{runs:?}");
    assert_eq!(status_of(&output.stdout, "/fails"), Some(Status::Fail));
    let hosts = [a.host_entry(), b.host_entry()];
    let mut servers_used = std::collections::BTreeSet::new();
    for (name, _) in &tests {
        assert_eq!(
            status_of(&output.stdout, &format!("/{name}")),
            Some(Status::Success)
        );
        let (server, directory) = mark(&marks, name);
        servers_used.insert(server.clone());
        // It ran in the run's copy of the tree on the host, which is gone now.
        assert!(directory.contains("/proctor-run."), "{directory}");
        assert!(
            !Path::new(&directory).exists(),
            "{directory} was left behind"
        );
        let (route, _) = &runs[&format!("/{name}")][0];
        let host = route
            .rsplit_once('/')
            .map(|(host, _)| host)
            .unwrap_or_default();
        assert!(
            hosts.iter().any(|entry| entry.ends_with(host)),
            "{route} is not a host of {hosts:?}"
        );
        assert!(
            host.starts_with(&server) || host.contains(&format!("@{server}:")),
            "{route} vs {server}"
        );
    }
    assert_eq!(
        servers_used.len(),
        2,
        "both hosts ran tests: {servers_used:?}"
    );
    // The stored run's time, split by worker: each row a host's slot, all the runs counted once.
    let split = proctor(&tree)
        .args(["slowest", "--by-worker"])
        .output()
        .expect("runs");
    let table = text(&split);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .map(|row| row.split_whitespace().collect())
        .collect();
    assert!(rows.len() >= 2, "{table}");
    let mut runs_counted = 0;
    for row in &rows {
        let worker = row[0]
            .rsplit_once('/')
            .map(|(host, _)| host)
            .unwrap_or_default();
        assert!(hosts.iter().any(|entry| entry == worker), "{table}");
        runs_counted += row[1].parse::<usize>().expect("a count");
    }
    assert_eq!(runs_counted, 9, "{table}");
    assert!(attachment(&output.stdout, "/fails", "stdout").contains("broken on purpose"));
    // The history split by worker, for one test: the worker it failed on, once.
    let failed_on = &runs["/fails"][0].0;
    let history = proctor(&tree)
        .args(["history", "workers", "/fails"])
        .output()
        .expect("runs");
    let table = text(&history);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .map(|row| row.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0][..3], [failed_on.as_str(), "1", "1"], "{table}");

    // pool check connects to each host, reports its platform (found there) and releases it.
    let check = proctor(&tree)
        .args(["pool", "check", pool.to_str().unwrap()])
        .output()
        .expect("runs");
    let said = text(&check);
    assert_eq!(check.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("{}/0: {}", hosts[0], std::env::consts::ARCH)),
        "{said}"
    );
    assert!(said.contains(&format!("{}/1: ", hosts[1])), "{said}");
    for sshd in [&a, &b] {
        let port = format!("-p {} ", sshd.address.port());
        assert!(
            !process_running(&["ControlMaster=yes", &port]),
            "a master connection was left: {said}"
        );
    }
}

#[test]
fn a_host_that_dies_mid_run_loses_no_test() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let mut a = proctor_testkit::Sshd::start(&servers.path().join("a"), 2);
    let b = proctor_testkit::Sshd::start(&servers.path().join("b"), 3);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    let tests: Vec<(String, &str)> = (0..8).map(|i| (format!("t{i}"), "sleep 2")).collect();
    let tests: Vec<(&str, &str)> = tests.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    marking_tree(&tree, &marks, &tests, "");
    let pool = ssh_pool(project.path(), "pool.toml", &[(&a, 2, ""), (&b, 2, "")]);
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("proctor"))
        .current_dir(&tree)
        .args(["run", "--subunit", "--pool", pool.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proctor starts");
    // Once host a runs tests, it dies with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let server_a = a.address.ip().to_string();
    while !tests
        .iter()
        .any(|(name, _)| mark(&marks, name).0 == server_a)
    {
        assert!(Instant::now() < deadline, "host a never ran a test");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill();
    let output = child.wait_with_output().expect("proctor ends");
    let said = String::from_utf8_lossy(&output.stderr);
    let runs = routes_by_test(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{said}\n{runs:#?}");
    let route_a = a.host_entry();
    let mut lost = 0;
    for (name, _) in &tests {
        let id = format!("/{name}");
        assert_eq!(
            status_of(&output.stdout, &id),
            Some(Status::Success),
            "{id}: {:?}",
            runs[&id]
        );
        let on_a =
            |route: &String| route.rsplit_once('/').map(|(host, _)| host) == Some(route_a.as_str());
        let started_on_a = runs[&id]
            .iter()
            .any(|(route, status)| on_a(route) && *status == Status::InProgress);
        let ended_on_a = runs[&id]
            .iter()
            .any(|(route, status)| on_a(route) && status.is_final());
        if started_on_a && !ended_on_a {
            lost += 1;
            // Run again, elsewhere: the lost run is an earlier attempt of it.
            let elsewhere = runs[&id]
                .iter()
                .any(|(route, status)| !on_a(route) && *status == Status::Success);
            assert!(elsewhere, "{id}: {:?}", runs[&id]);
        }
    }
    assert!(lost >= 1, "no test was cut by the host's death: {runs:?}");
    assert!(
        said.contains(&format!("gave up on host {route_a}")),
        "{said}"
    );
}

#[test]
fn tests_restricted_to_a_platform_run_only_where_it_fits_and_the_rest_say_why_not() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let a = proctor_testkit::Sshd::start(&servers.path().join("a"), 4);
    let b = proctor_testkit::Sshd::start(&servers.path().join("b"), 5);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    let only = |distro: &str| {
        format!("    adjust:\n      - when: distro != {distro}\n        enabled: false\n")
    };
    let extra = format!(
        "/fedora-only:\n    test: echo \"$SSH_CONNECTION|$PWD\" > \"$MARKS/fedora-only\"\n{}\
         /centos-only:\n    test: exit 0\n{}",
        only("fedora"),
        only("centos")
    );
    marking_tree(&tree, &marks, &[("anywhere", "true")], &extra);
    // Host a says it is Fedora; host b's platform is found on it (this machine's).
    let pool = ssh_pool(
        project.path(),
        "pool.toml",
        &[
            (&a, 1, "platform = { distro = \"fedora-40\" }\n"),
            (&b, 1, ""),
        ],
    );
    let output = run(&tree, &["--subunit", "--pool", pool.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert_eq!(
        status_of(&output.stdout, "/anywhere"),
        Some(Status::Success)
    );
    assert_eq!(
        status_of(&output.stdout, "/fedora-only"),
        Some(Status::Success)
    );
    assert_eq!(mark(&marks, "fedora-only").0, a.address.ip().to_string());
    assert_eq!(
        status_of(&output.stdout, "/centos-only"),
        Some(Status::Fail)
    );
    let reason = attachment(&output.stdout, "/centos-only", "proctor-reason");
    assert!(
        reason.contains("no worker's platform lets it run") && reason.contains("fedora-40"),
        "{reason}"
    );
    assert!(said.contains("no worker's platform lets it run"), "{said}");
}

#[test]
fn an_unreachable_host_is_named_with_what_ssh_said() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let good = proctor_testkit::Sshd::start(&servers.path().join("good"), 6);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    marking_tree(&tree, &marks, &[("one", "true"), ("two", "true")], "");
    // Nothing listens on this port: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.7:0").expect("binds");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let unreachable = format!(
        "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"root@127.0.0.7:{port}\"]\n{}",
        good.pool_options()
    );
    let alone = project.path().join("alone.toml");
    fs::write(&alone, &unreachable).expect("pool");
    let check = proctor(&tree)
        .args(["pool", "check", alone.to_str().unwrap()])
        .output()
        .expect("runs");
    let said = text(&check);
    assert_eq!(check.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("host root@127.0.0.7:{port}"))
            && said.contains("Connection refused"),
        "{said}"
    );
    let output = run(&tree, &["--subunit", "--pool", alone.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert_eq!(status_of(&output.stdout, "/one"), Some(Status::Fail));
    let reason = attachment(&output.stdout, "/one", "proctor-reason");
    assert!(reason.contains("Connection refused"), "{reason}");

    let both = project.path().join("both.toml");
    fs::write(
        &both,
        format!(
            "{unreachable}\n{}",
            fs::read_to_string(ssh_pool(project.path(), "good.toml", &[(&good, 1, "")]))
                .expect("pool")
        ),
    )
    .expect("pool");
    let output = run(&tree, &["--subunit", "--pool", both.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert_eq!(status_of(&output.stdout, "/two"), Some(Status::Success));
    // The good host may finish the tests before the other is given up: either way it is named, with the reason.
    assert!(
        said.contains(&format!("host root@127.0.0.7:{port}"))
            && said.contains("Connection refused"),
        "{said}"
    );
}

#[test]
fn a_test_killed_on_its_time_limit_is_killed_on_the_host_as_a_whole_tree() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let host = proctor_testkit::Sshd::start(&servers.path().join("host"), 8);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    marking_tree(
        &tree,
        &marks,
        &[],
        "/hangs:\n    test: sleep 3171 & sleep 3172; true\n    duration: 2s\n",
    );
    let pool = ssh_pool(project.path(), "pool.toml", &[(&host, 1, "")]);
    let output = run(&tree, &["--subunit", "--pool", pool.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let reason = attachment(&output.stdout, "/hangs", "proctor-reason");
    assert!(reason.contains("time limit of 2s exceeded"), "{reason}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_running(&["sleep 317"]) {
        assert!(
            Instant::now() < deadline,
            "the test's processes outlived it on the host"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failed_test_is_rerun_on_another_worker() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let a = proctor_testkit::Sshd::start(&servers.path().join("a"), 9);
    let b = proctor_testkit::Sshd::start(&servers.path().join("b"), 10);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    // It fails the first time (after both hosts are up), and passes after.
    let flaky = "if [ -e \"$MARKS/failed-once\" ]; then exit 0; fi; touch \"$MARKS/failed-once\"; sleep 2; exit 1";
    marking_tree(&tree, &marks, &[("flaky", flaky)], "");
    let pool = ssh_pool(project.path(), "pool.toml", &[(&a, 1, ""), (&b, 1, "")]);
    let output = run(
        &tree,
        &[
            "--subunit",
            "--retries",
            "1",
            "--pool",
            pool.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let runs = routes_by_test(&output.stdout);
    let ended: Vec<&(String, Status)> = runs["/flaky"]
        .iter()
        .filter(|(_, s)| s.is_final())
        .collect();
    assert_eq!(ended.len(), 2, "{runs:?}");
    assert_eq!((ended[0].1, ended[1].1), (Status::Fail, Status::Success));
    assert_ne!(
        ended[0].0, ended[1].0,
        "the rerun ran on the same worker: {runs:?}"
    );
}

#[test]
fn tests_that_declare_needs_run_only_on_workers_that_meet_them() {
    let project = TempDir::new().expect("tempdir");
    fs::write(
        project.path().join("proctor.toml"),
        "[[suite]]\nname = \"checks\"\nlist = \"printf 'plain\\\\nkvm-a\\\\nkvm-b\\\\narm\\\\n'\"\n\
         run = \"echo $IDLIST\"\nprotocol = \"exit-status\"\n\n\
         [[suite.needs]]\ntests = \"^kvm-\"\ntags = [\"kvm\"]\n\n\
         [[suite.needs]]\ntests = \"^arm$\"\narch = \"aarch64-none\"\n",
    )
    .expect("proctor.toml");
    let pool = project.path().join("pool.toml");
    fs::write(
        &pool,
        "[[provisioner]]\nkind = \"local\"\nmax_workers = 1\nplatform = { tags = [\"kvm\"] }\n\n\
         [[provisioner]]\nkind = \"local\"\nmax_workers = 1\n",
    )
    .expect("pool");
    let output = run(
        project.path(),
        &["--subunit", "--pool", pool.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let runs = routes_by_test(&output.stdout);
    for kvm in ["kvm-a", "kvm-b"] {
        let ended: Vec<_> = runs[kvm].iter().filter(|(_, s)| s.is_final()).collect();
        assert_eq!(ended, [&("0".to_owned(), Status::Success)], "{runs:?}");
    }
    assert_eq!(status_of(&output.stdout, "plain"), Some(Status::Success));
    assert_eq!(status_of(&output.stdout, "arm"), Some(Status::Fail));
    let reason = attachment(&output.stdout, "arm", "proctor-reason");
    assert!(
        reason.contains("no worker's platform lets it run (it needs arch aarch64-none"),
        "{reason}"
    );

    // Without a pool the run's slots have this machine's platform, which has no tags.
    let output = run(project.path(), &["--subunit", "--no-store"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(status_of(&output.stdout, "plain"), Some(Status::Success));
    let reason = attachment(&output.stdout, "kvm-a", "proctor-reason");
    assert!(reason.contains("it needs tag kvm"), "{reason}");
}

#[test]
fn a_test_that_kills_its_worker_every_time_fails_after_three_losses_and_the_run_goes_on() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let a = proctor_testkit::Sshd::start(&servers.path().join("a"), 31);
    let b = proctor_testkit::Sshd::start(&servers.path().join("b"), 32);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    // It kills the sshd process of its own connection: the worker is lost, never the test's own failure.
    let killer = "p=$$; while [ \"$p\" -gt 1 ]; do p=$(ps -o ppid= -p \"$p\" | tr -d ' '); \
                  if [ \"$(ps -o comm= -p \"$p\")\" = sshd ]; then kill -9 \"$p\"; sleep 5; fi; done";
    marking_tree(
        &tree,
        &marks,
        &[("killer", killer), ("fine", "true"), ("also-fine", "true")],
        "",
    );
    let pool = ssh_pool(project.path(), "pool.toml", &[(&a, 1, ""), (&b, 1, "")]);
    let output = run(&tree, &["--subunit", "--pool", pool.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(status_of(&output.stdout, "/fine"), Some(Status::Success));
    assert_eq!(
        status_of(&output.stdout, "/also-fine"),
        Some(Status::Success)
    );
    let runs = routes_by_test(&output.stdout);
    let started = runs["/killer"]
        .iter()
        .filter(|(_, status)| *status == Status::InProgress)
        .count();
    assert_eq!(started, 3, "it ran once per loss: {runs:?}");
    assert_eq!(status_of(&output.stdout, "/killer"), Some(Status::Fail));
    let reason = attachment(&output.stdout, "/killer", "proctor-reason");
    assert!(
        reason.contains("its worker was lost under it 3 times"),
        "{reason}"
    );
}

#[test]
fn ctrl_c_during_an_ssh_run_stops_the_tests_on_the_host_and_removes_the_run_directory() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let host = proctor_testkit::Sshd::start(&servers.path().join("host"), 33);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    marking_tree(&tree, &marks, &[("sleeper", "sleep 3173")], "");
    let pool = ssh_pool(project.path(), "pool.toml", &[(&host, 1, "")]);
    let binary = assert_cmd::cargo::cargo_bin("proctor");
    let mut child = StdCommand::new(binary)
        .current_dir(&tree)
        .args(["run", "--grace", "1", "--pool", pool.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts proctor");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The mark is written just before the sleep starts.
    while mark(&marks, "sleeper").1.is_empty() || !process_running(&["sleep 3173"]) {
        assert!(Instant::now() < deadline, "the test never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, directory) = mark(&marks, "sleeper");
    assert!(directory.contains("/proctor-run."), "{directory}");
    let proctor_pid = child.id().to_string();
    assert!(StdCommand::new("kill")
        .args(["-INT", &proctor_pid])
        .status()
        .expect("kill runs")
        .success());
    let status = child.wait().expect("proctor exits");
    assert_eq!(status.code(), Some(130));
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_running(&["sleep 3173"]) {
        assert!(
            Instant::now() < deadline,
            "the test outlived the run on the host"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&directory).exists(),
        "{directory} was left behind"
    );
}

#[test]
fn a_suite_that_reads_its_ids_from_idfile_runs_over_ssh() {
    // The host is this machine, so the file must be found in the run directory to show that it was sent.
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let host = proctor_testkit::Sshd::start(&servers.path().join("host"), 34);
    fs::write(
        project.path().join("proctor.toml"),
        r#"
[[suite]]
name = "from-file"
list = "printf 'one\ntwo\nthree\n'"
run = '''[ -n "$SSH_CONNECTION" ] || exit 3; case "$IDFILE" in */proctor-run.*) ;; *) exit 4;; esac; n=0; while read id; do n=$((n+1)); echo "ok $n - $id"; done < $IDFILE; echo "1..$n"'''
protocol = "tap"
"#,
    )
    .expect("writes proctor.toml");
    let pool = ssh_pool(project.path(), "pool.toml", &[(&host, 1, "")]);
    let output = run(
        project.path(),
        &["--subunit", "--pool", pool.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let results = statuses(&output.stdout);
    for id in ["one", "two", "three"] {
        assert!(
            results.contains(&(id.to_owned(), Status::Success)),
            "{results:?}"
        );
    }
}

#[test]
fn a_memory_limit_is_enforced_on_the_host() {
    let project = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let host = proctor_testkit::Sshd::start(&servers.path().join("host"), 35);
    let tree = project.path().join("tree");
    let marks = project.path().join("marks");
    let python = proctor_testkit::python();
    // A safety time limit, should the memory limit not hold.
    let hog = format!(
        "/hog:\n    test: \"{} -c 'b = []\\nwhile True: b.append(bytearray(8 << 20))' memory-hog-3174\"\n    \
         duration: 30s\n",
        python.display()
    );
    marking_tree(&tree, &marks, &[("small", "true")], &hog);
    let pool = ssh_pool(project.path(), "pool.toml", &[(&host, 2, "")]);
    let output = run(
        &tree,
        &[
            "--subunit",
            "--memory-limit",
            "64M",
            "--pool",
            pool.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(status_of(&output.stdout, "/small"), Some(Status::Success));
    assert_eq!(status_of(&output.stdout, "/hog"), Some(Status::Fail));
    let reason = attachment(&output.stdout, "/hog", "proctor-reason");
    assert!(
        reason.contains("memory limit exceeded on the host"),
        "{reason}"
    );
    assert!(
        !process_running(&["memory-hog-3174"]),
        "the hog outlived its test"
    );
}
