//! The crate's `examples/`, run as their users would run them (`cargo run --example`), on real projects: FMF
//! trees whose tests leave marks, on this machine's slots and on a pool of real `sshd` hosts.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// Runs an example with `args` and gives what it did.
fn example(name: &str, args: &[&str]) -> Output {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    Command::new(env!("CARGO"))
        .args(["run", "-q", "--manifest-path"])
        .arg(&manifest)
        .args(["--example", name, "--"])
        .args(args)
        .output()
        .expect("cargo runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An FMF tree in `root` whose tests are `(name, shell)`, with `$MARKS` set to `marks`.
fn fmf_tree(root: &Path, marks: &Path, tests: &[(&str, &str)]) {
    fs::create_dir_all(root.join(".fmf")).expect("mkdir");
    fs::write(root.join(".fmf/version"), "1\n").expect("version");
    fs::create_dir_all(marks).expect("mkdir");
    let mut main = format!("environment:\n    MARKS: {}\n", marks.display());
    for (name, shell) in tests {
        main.push_str(&format!("/{name}:\n    test: {shell}\n"));
    }
    fs::write(root.join("main.fmf"), main).expect("main.fmf");
}

#[test]
fn gated_benchmark_runs_the_benchmarks_only_after_the_install_test_passed() {
    let dir = TempDir::new().expect("tempdir");
    let tree = dir.path().join("tree");
    let marks = dir.path().join("marks");
    fmf_tree(
        &tree,
        &marks,
        &[
            (
                "install",
                "if [ -e \"$MARKS/broken\" ]; then echo no compiler; exit 1; fi",
            ),
            ("bench/one", "touch \"$MARKS/one\""),
            ("bench/two", "touch \"$MARKS/two\""),
        ],
    );
    let tree = tree.to_str().unwrap();
    fs::write(marks.join("broken"), "").unwrap();
    let output = example("gated_benchmark", &[tree, "/install", "^/bench/"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("install /install failed: benchmarks not run"),
        "{}",
        text(&output)
    );
    assert!(shown.contains("no compiler"), "{}", text(&output));
    assert!(!marks.join("one").exists() && !marks.join("two").exists());

    fs::remove_file(marks.join("broken")).unwrap();
    let output = example("gated_benchmark", &[tree, "/install", "^/bench/"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("install /install passed"),
        "{}",
        text(&output)
    );
    assert!(
        shown.contains("benchmarks: 2 passed, 0 failed"),
        "{}",
        text(&output)
    );
    assert!(marks.join("one").exists() && marks.join("two").exists());
}

#[test]
fn compare_hosts_runs_the_test_on_each_host_and_names_the_one_that_differs() {
    let dir = TempDir::new().expect("tempdir");
    let servers = TempDir::new().expect("tempdir");
    let a = proctor_testkit::Sshd::start(&servers.path().join("a"), 21);
    let b = proctor_testkit::Sshd::start(&servers.path().join("b"), 22);
    let tree = dir.path().join("tree");
    let marks = dir.path().join("marks");
    // The test fails on the host whose port `$MARKS/bad` names: the last field of `$SSH_CONNECTION`.
    fmf_tree(
        &tree,
        &marks,
        &[(
            "probe",
            "port=${SSH_CONNECTION##* }; echo \"port $port\"; [ \"$port\" != \"$(cat \"$MARKS/bad\")\" ]",
        )],
    );
    let mut pool = String::new();
    for host in [&a, &b] {
        pool.push_str(&format!(
            "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"{}\"]\n{}\n",
            host.host_entry(),
            host.pool_options()
        ));
    }
    let pool_file = dir.path().join("pool.toml");
    fs::write(&pool_file, pool).unwrap();
    let args = [
        tree.to_str().unwrap(),
        pool_file.to_str().unwrap(),
        "/probe",
    ];

    fs::write(marks.join("bad"), b.address.port().to_string()).unwrap();
    let output = example("compare_hosts", &args);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    let (a_name, b_name) = (a.host_entry(), b.host_entry());
    assert!(
        shown.contains(&format!("{a_name}: passed"))
            && shown.contains(&format!("port {}", a.address.port())),
        "{}",
        text(&output)
    );
    assert!(
        shown.contains(&format!("{b_name}: failed")),
        "{}",
        text(&output)
    );
    assert!(
        shown.contains(&format!("passed on {a_name}\n")),
        "{}",
        text(&output)
    );
    assert!(
        shown.contains(&format!("failed on {b_name}\n")),
        "{}",
        text(&output)
    );

    fs::write(marks.join("bad"), "0").unwrap();
    let output = example("compare_hosts", &args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("same on every host: passed"),
        "{}",
        text(&output)
    );
}

#[test]
fn diagnose_after_failure_collects_diagnostics_on_the_failed_worker_and_only_after_a_failure() {
    let dir = TempDir::new().expect("tempdir");
    let tree = dir.path().join("tree");
    let marks = dir.path().join("marks");
    fmf_tree(
        &tree,
        &marks,
        &[
            ("fine", "exit 0"),
            ("breaks", "if [ -e \"$MARKS/broken\" ]; then exit 1; fi"),
            ("diagnostics", "echo disk full; touch \"$MARKS/diagnosed\""),
        ],
    );
    let tree = tree.to_str().unwrap();

    let output = example("diagnose_after_failure", &[tree, "/diagnostics"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        !marks.join("diagnosed").exists(),
        "diagnostics ran without a failure: {}",
        text(&output)
    );

    fs::write(marks.join("broken"), "").unwrap();
    let output = example("diagnose_after_failure", &[tree, "/diagnostics"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    let worker = shown
        .lines()
        .find_map(|line| line.strip_prefix("first failure: /breaks on worker "))
        .unwrap_or_else(|| panic!("no first failure: {}", text(&output)))
        .to_owned();
    assert!(
        shown.contains(&format!("diagnostics (passed, {worker}):\ndisk full")),
        "{}",
        text(&output)
    );
    assert!(marks.join("diagnosed").exists());
}
