//! `proctor run` as a real binary on real Cargo projects: packages generated here (with no dependencies, so they
//! build offline), a two-package workspace, and a crate from crates.io that `scripts/test` fetched
//! (`scripts/crates.sh`, `PROCTOR_TEST_CRATE`). Totals are checked against `cargo test`'s own.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use assert_cmd::Command;
use proctor_subunit::{EventReader, Status};
use support::statuses;
use tempfile::TempDir;

mod support;

/// The variable naming the crate from crates.io (set by `scripts/test` through `scripts/crates.sh`).
const TEST_CRATE_VAR: &str = "PROCTOR_TEST_CRATE";

/// `proctor` in `project`, with none of the developer's run settings, building into the project's own target
/// directory (removed with it).
fn proctor(project: &Path) -> Command {
    let mut command = Command::cargo_bin("proctor").expect("the proctor binary is built");
    command
        .current_dir(project)
        .env("XDG_CONFIG_HOME", project.join(".no-user-config"))
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env_remove("RUST_BACKTRACE");
    for key in proctor::config::RunSettings::KEYS {
        command.env_remove(proctor::config::env_var(key));
    }
    command
}

fn proctor_output(project: &Path, args: &[&str]) -> Output {
    proctor(project).args(args).output().expect("proctor runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, content).expect("writes");
}

/// The text of a test's attachments in a stream.
fn attachments(stream: &[u8], test_id: &str) -> String {
    EventReader::new(stream)
        .map(|event| event.expect("decodes"))
        .filter(|event| event.test_id.as_deref() == Some(test_id))
        .filter_map(|event| event.file)
        .map(|file| String::from_utf8_lossy(&file.content).into_owned())
        .collect()
}

/// How many tests passed, failed and were skipped in a stream.
fn counts(stream: &[u8]) -> Totals {
    let mut totals = Totals::default();
    for (_, status) in statuses(stream) {
        match status {
            Status::Success => totals.passed += 1,
            Status::Fail => totals.failed += 1,
            Status::Skip => totals.ignored += 1,
            _ => {}
        }
    }
    totals
}

/// Passed, failed and ignored tests, as `cargo test`'s "test result:" lines count them.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Totals {
    passed: usize,
    failed: usize,
    ignored: usize,
}

/// `cargo test --tests` in `project` (unit and integration tests, not doctests), its "test result:" lines added
/// up.
fn cargo_test_totals(project: &Path) -> Totals {
    let output = StdCommand::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--tests", "--no-fail-fast"])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", project.join("target"))
        .output()
        .expect("cargo test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut totals = Totals::default();
    for line in stdout
        .lines()
        .filter(|line| line.starts_with("test result:"))
    {
        let number = |what: &str| -> usize {
            line.split(';')
                .find_map(|part| part.trim().strip_suffix(what))
                .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {what} in {line:?}"))
        };
        totals.passed += number("passed");
        totals.failed += number("failed");
        totals.ignored += number("ignored");
    }
    assert!(
        totals != Totals::default(),
        "cargo test reported nothing:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    totals
}

/// A package `demo-pkg` with unit tests (one failing, one ignored, one reading its environment and a file
/// relative to its directory), an integration test, a bin with a test, and a doctest.
fn demo_package(dir: &Path) {
    write(
        &dir.join("Cargo.toml"),
        "[package]\nname = \"demo-pkg\"\nversion = \"0.3.1\"\nedition = \"2021\"\n\n[dependencies]\n\n\
         [workspace]\n",
    );
    write(
        &dir.join("src/lib.rs"),
        r#"//! A demo.

/// Adds.
///
/// ```
/// assert_eq!(demo_pkg::add(1, 2), 3);
/// ```
pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(2, 2), 4);
    }

    #[test]
    fn broken() {
        assert_eq!(super::add(2, 2), 5, "two and two make four");
    }

    #[test]
    #[ignore]
    fn slow() {}

    #[test]
    fn sees_its_package() {
        assert_eq!(env!("CARGO_MANIFEST_DIR"), std::env::var("CARGO_MANIFEST_DIR").unwrap());
        assert_eq!(std::env::var("CARGO_PKG_NAME").unwrap(), "demo-pkg");
        assert_eq!(std::env::var("CARGO_PKG_VERSION_MINOR").unwrap(), "3");
        assert!(std::fs::read_to_string("data.txt").unwrap().contains("hello"));
    }
}
"#,
    );
    write(&dir.join("data.txt"), "hello\n");
    write(
        &dir.join("tests/api.rs"),
        "#[test]\nfn public_add() {\n    assert_eq!(demo_pkg::add(1, 1), 2);\n}\n",
    );
    write(
        &dir.join("src/bin/tool.rs"),
        "fn main() {}\n\n#[test]\nfn tool_works() {\n    assert_eq!(std::env::var(\"CARGO_PKG_NAME\").unwrap(), \"demo-pkg\");\n}\n",
    );
}

#[test]
fn a_package_runs_as_cargo_test_runs_it() {
    let project = TempDir::new().expect("tempdir");
    demo_package(project.path());
    let output = proctor_output(project.path(), &["run", "-j", "2", "--subunit"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stream = &output.stdout;
    let expected = cargo_test_totals(project.path());
    assert_eq!(
        expected,
        Totals {
            passed: 4,
            failed: 1,
            ignored: 1
        }
    );
    // The doctests' one entry is skipped on top of the ignored tests.
    let doctests = Totals {
        ignored: expected.ignored + 1,
        ..expected
    };
    assert_eq!(counts(stream), doctests, "{}", text(&output));
    let ids: Vec<String> = statuses(stream).into_iter().map(|(id, _)| id).collect();
    for id in [
        "demo_pkg::demo_pkg::tests::adds",
        "demo_pkg::demo_pkg::tests::sees_its_package",
        "demo_pkg::api::public_add",
        "demo_pkg::tool::tool_works",
        "demo_pkg::doctests",
    ] {
        assert!(ids.iter().any(|listed| listed == id), "{id} not in {ids:?}");
    }
    let broken = "demo_pkg::demo_pkg::tests::broken";
    assert!(statuses(stream).contains(&(broken.to_owned(), Status::Fail)));
    assert!(attachments(stream, broken).contains("two and two make four"));
    assert!(attachments(stream, "demo_pkg::demo_pkg::tests::slow").contains("#[ignore]d"));
    assert!(attachments(stream, "demo_pkg::doctests").contains("cargo test --doc"));

    let shown = proctor_output(project.path(), &["run", "--source", "cargo"]);
    let shown = text(&shown);
    assert!(
        shown.contains("FAIL") && shown.contains("two and two make four"),
        "the failure's panic is shown: {shown}"
    );
    assert!(shown.contains("7 tests"), "{shown}");

    let again = proctor_output(project.path(), &["run", "--failing", "--subunit"]);
    assert_eq!(
        statuses(&again.stdout),
        [(broken.to_owned(), Status::Fail)],
        "--failing reruns exactly the failure: {}",
        text(&again)
    );
}

#[test]
fn a_build_error_shows_the_compilers_message_and_exits_2() {
    let project = TempDir::new().expect("tempdir");
    demo_package(project.path());
    let lib = project.path().join("src/lib.rs");
    let source = fs::read_to_string(&lib).expect("reads");
    fs::write(&lib, format!("{source}\nthis is not rust\n")).expect("writes");
    let output = proctor_output(project.path(), &["run"]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("expected one of"),
        "rustc's message: {shown}"
    );
    assert!(shown.contains("src/lib.rs:"), "where: {shown}");
    assert!(shown.contains("this is not rust"), "{shown}");
    assert!(
        shown.contains("could not compile"),
        "cargo's own line: {shown}"
    );
}

/// A package `custom-pkg` with a unit test and an integration test, next to two `harness = false` test targets:
/// `custom`, whose `main` checks where and how it runs, adds a line to `runs.log` and exits 0, and `custom_fails`,
/// which exits 1.
fn custom_harness_package(dir: &Path) {
    write(
        &dir.join("Cargo.toml"),
        "[package]\nname = \"custom-pkg\"\nversion = \"0.2.0\"\nedition = \"2021\"\n\n[lib]\ndoctest = false\n\n\
         [[test]]\nname = \"custom\"\nharness = false\n\n[[test]]\nname = \"custom_fails\"\nharness = false\n\n\
         [workspace]\n",
    );
    write(
        &dir.join("src/lib.rs"),
        "pub fn double(x: u32) -> u32 {\n    x * 2\n}\n\n#[test]\nfn doubles() {\n    assert_eq!(double(2), 4);\n}\n",
    );
    write(
        &dir.join("tests/api.rs"),
        "#[test]\nfn public_double() {\n    assert_eq!(custom_pkg::double(3), 6);\n}\n",
    );
    write(&dir.join("data.txt"), "hello\n");
    write(
        &dir.join("tests/custom.rs"),
        r#"fn main() {
    // Each run leaves a line: listing must not run it, only running it does.
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open("runs.log").unwrap();
    std::io::Write::write_all(&mut log, b"ran\n").unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(args.is_empty(), "run with no arguments, not {args:?}");
    assert_eq!(std::env::var("CARGO_PKG_NAME").unwrap(), "custom-pkg");
    assert!(std::fs::read_to_string("data.txt").unwrap().contains("hello"));
    println!("custom harness ran: {} checks", custom_pkg::double(1));
}
"#,
    );
    write(
        &dir.join("tests/custom_fails.rs"),
        r#"fn main() {
    println!("custom harness checked 3 things");
    eprintln!("custom harness: 1 of 3 checks failed on purpose");
    std::process::exit(1);
}
"#,
    );
}

#[test]
fn a_harness_false_target_is_one_test_its_exit_status_its_result() {
    let project = TempDir::new().expect("tempdir");
    custom_harness_package(project.path());
    assert_eq!(
        listed(project.path(), &[]),
        [
            "custom_pkg::api::public_double",
            "custom_pkg::custom",
            "custom_pkg::custom_fails",
            "custom_pkg::custom_pkg::doubles",
        ]
    );
    let output = proctor_output(project.path(), &["run", "-j", "2", "--subunit"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stream = &output.stdout;
    assert_eq!(
        fs::read_to_string(project.path().join("runs.log")).expect("custom ran"),
        "ran\n",
        "run once, by the run: neither `list` nor the run's listing started it"
    );
    // cargo test's "test result:" lines count libtest's tests only; each harness = false binary is one more.
    let libtest = cargo_test_totals(project.path());
    assert_eq!(
        libtest,
        Totals {
            passed: 2,
            failed: 0,
            ignored: 0
        }
    );
    assert_eq!(
        counts(stream),
        Totals {
            passed: libtest.passed + 1,
            failed: 1,
            ignored: 0
        },
        "{}",
        text(&output)
    );
    let mut found = statuses(stream);
    found.sort();
    assert_eq!(
        found,
        [
            ("custom_pkg::api::public_double".to_owned(), Status::Success),
            ("custom_pkg::custom".to_owned(), Status::Success),
            ("custom_pkg::custom_fails".to_owned(), Status::Fail),
            (
                "custom_pkg::custom_pkg::doubles".to_owned(),
                Status::Success
            ),
        ]
    );
    assert!(
        attachments(stream, "custom_pkg::custom").contains("custom harness ran: 2 checks"),
        "{}",
        attachments(stream, "custom_pkg::custom")
    );
    let failure = attachments(stream, "custom_pkg::custom_fails");
    assert!(
        failure.contains("custom harness checked 3 things")
            && failure.contains("1 of 3 checks failed on purpose"),
        "the failure's output, both streams: {failure}"
    );

    let again = proctor_output(project.path(), &["run", "--failing", "--subunit"]);
    assert_eq!(
        statuses(&again.stdout),
        [("custom_pkg::custom_fails".to_owned(), Status::Fail)],
        "--failing reruns exactly the failure: {}",
        text(&again)
    );
}

/// A workspace of two packages, `alpha` and `beta`, each with one test, beta's lib without doctests.
fn two_package_workspace(dir: &Path) {
    write(
        &dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"alpha\", \"beta\"]\nresolver = \"2\"\n",
    );
    for name in ["alpha", "beta"] {
        let doctest = if name == "beta" {
            "\n[lib]\ndoctest = false\n"
        } else {
            ""
        };
        write(
            &dir.join(name).join("Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n{doctest}"
            ),
        );
        write(
            &dir.join(name).join("src/lib.rs"),
            &format!("#[test]\nfn {name}_works() {{\n    assert_eq!(std::env::var(\"CARGO_PKG_NAME\").unwrap(), \"{name}\");\n}}\n"),
        );
    }
}

fn listed(project: &Path, args: &[&str]) -> Vec<String> {
    let output = proctor_output(project, &[&["list"], args].concat());
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn package_and_workspace_pick_their_tests() {
    let project = TempDir::new().expect("tempdir");
    two_package_workspace(project.path());
    assert_eq!(
        listed(project.path(), &["--package", "alpha"]),
        ["alpha::alpha::alpha_works", "alpha::doctests"]
    );
    assert_eq!(
        listed(project.path(), &["-p", "beta"]),
        ["beta::beta::beta_works"]
    );
    let everything = [
        "alpha::alpha::alpha_works",
        "beta::beta::beta_works",
        "alpha::doctests",
    ];
    assert_eq!(listed(project.path(), &["--workspace"]), everything);
    assert_eq!(
        listed(
            project.path(),
            &["--workspace", "--exclude-package", "alpha"]
        ),
        ["beta::beta::beta_works"]
    );
    let output = proctor_output(project.path(), &["run", "-p", "beta", "--subunit"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        statuses(&output.stdout),
        [("beta::beta::beta_works".to_owned(), Status::Success)],
        "beta's test runs in beta's environment"
    );
}

/// The crate from crates.io, copied to a temporary directory (outside this workspace, where the broken test can
/// be added). Panics when `scripts/test` did not fetch it: a test that passes without its crate proves nothing.
fn crates_io_crate() -> (TempDir, PathBuf) {
    let source = std::env::var_os(TEST_CRATE_VAR)
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{TEST_CRATE_VAR} is not set; run ./scripts/test, which fetches a crate from crates.io \
                 (scripts/crates.sh), or point it at an unpacked crate"
            )
        });
    let source = PathBuf::from(source);
    assert!(
        source.join("Cargo.toml").is_file(),
        "{TEST_CRATE_VAR}={} has no Cargo.toml",
        source.display()
    );
    let copy = TempDir::new().expect("tempdir");
    let dir = copy.path().join("crate");
    copy_dir(&source, &dir);
    (copy, dir)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("reads the directory") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copies");
        }
    }
}

#[test]
fn a_crate_from_crates_io_runs_as_cargo_test_runs_it() {
    let (_copy, dir) = crates_io_crate();
    let expected = cargo_test_totals(&dir);
    assert!(expected.passed > 0 && expected.failed == 0, "{expected:?}");
    let output = proctor_output(&dir, &["run", "--source", "cargo", "--subunit"]);
    assert!(output.status.success(), "{}", text(&output));
    let doctests = statuses(&output.stdout)
        .iter()
        .filter(|(id, _)| id.ends_with("::doctests"))
        .count();
    let ran = counts(&output.stdout);
    assert_eq!(
        ran,
        Totals {
            ignored: expected.ignored + doctests,
            ..expected
        },
        "{}",
        text(&output)
    );
    let ids: Vec<String> = statuses(&output.stdout)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_unit_and_integration_ids(&dir, &ids);

    // A broken test appended to one of its integration tests is seen failed, with its message.
    let tests_dir = dir.join("tests");
    let file = fs::read_dir(&tests_dir)
        .expect("the crate has integration tests")
        .map(|entry| entry.expect("an entry").path())
        .find(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .expect("a tests/*.rs file");
    let source = fs::read_to_string(&file).expect("reads");
    fs::write(
        &file,
        format!("{source}\n#[test]\nfn proctor_broken() {{\n    panic!(\"deliberately broken by proctor's test\");\n}}\n"),
    )
    .expect("writes");
    let output = proctor_output(&dir, &["run", "--source", "cargo", "--subunit"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let broken = statuses(&output.stdout)
        .into_iter()
        .find(|(id, _)| id.ends_with("::proctor_broken"))
        .expect("the broken test is listed");
    assert_eq!(broken.1, Status::Fail);
    let stem = file.file_stem().expect("a stem").to_string_lossy();
    assert!(
        broken.0.ends_with(&format!("::{stem}::proctor_broken")),
        "{broken:?}"
    );
    assert!(
        attachments(&output.stdout, &broken.0).contains("deliberately broken by proctor's test")
    );
    let after = counts(&output.stdout);
    assert_eq!(after.failed, 1);
    assert_eq!(after.passed, ran.passed);
    let cargo_after = cargo_test_totals(&dir);
    assert_eq!(
        after,
        Totals {
            ignored: cargo_after.ignored + doctests,
            ..cargo_after
        },
        "the same tree's cargo test, broken test included"
    );

    let again = proctor_output(
        &dir,
        &["run", "--source", "cargo", "--failing", "--subunit"],
    );
    assert_eq!(
        statuses(&again.stdout),
        [(broken.0.clone(), Status::Fail)],
        "--failing reruns exactly the failure: {}",
        text(&again)
    );
}

/// The crate's unit tests (`crate::crate::…`, the lib's own target) and integration tests (`crate::stem::…`
/// for a `tests/stem.rs`) among `ids`, each found at least once; panics, showing the ids, otherwise.
fn assert_unit_and_integration_ids(dir: &Path, ids: &[String]) {
    let crate_name = ids
        .iter()
        .find_map(|id| id.strip_suffix("::doctests"))
        .map(str::to_owned)
        .or_else(|| Some(ids.first()?.split("::").next()?.to_owned()))
        .expect("some ids");
    assert!(
        ids.iter()
            .all(|id| id.starts_with(&format!("{crate_name}::"))),
        "every id starts with the crate's name: {ids:?}"
    );
    let unit = format!("{crate_name}::{crate_name}::");
    assert!(
        ids.iter().any(|id| id.starts_with(&unit)),
        "no unit test ({unit}…) in {ids:?}"
    );
    let stems: Vec<String> = fs::read_dir(dir.join("tests"))
        .expect("the crate has integration tests")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            path.file_stem()
                .expect("a stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        ids.iter().any(|id| stems
            .iter()
            .any(|stem| id.starts_with(&format!("{crate_name}::{stem}::")))),
        "no integration test (of {stems:?}) in {ids:?}"
    );
}
