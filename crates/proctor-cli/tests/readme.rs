//! The README's quick start, run exactly as written: every `cargo run …` command of its "Quick start" section is
//! read from README.md itself (so the README and this test cannot drift apart) and run from the workspace root as
//! a new user would: the lab in one process, the example job submitted and followed from another, the built-in
//! example, and the lab stopped with Ctrl-C (SIGINT to its process group), which must exit 0.
//!
//! `scripts/test` builds the release binary before the suite, so the `cargo run --release` here only checks that
//! it is fresh. The lab listens on the README's address (127.0.0.1:7370); its data goes to a scratch
//! `XDG_DATA_HOME`, where a fresh machine's user data directory would be.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: the release build may still have to happen here when the suite is run without `scripts/test`.
const PATIENCE: Duration = Duration::from_secs(20 * 60);

/// What the lab prints once it answers.
const LISTENING: &str = "proctor lab listening on";

/// The quick start's commands: the lines of its shell block and the inline `cargo run …` spans after it, with
/// comments removed.
fn quick_start_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Quick start"))
        .expect("README.md has a `## Quick start` section");
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            let command = line.split(" #").next().unwrap_or("").trim();
            if !command.is_empty() {
                commands.push(command.to_owned());
            }
        } else {
            commands.extend(
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|span| span.starts_with("cargo run"))
                    .map(str::to_owned),
            );
        }
    }
    commands
}

/// A command of the README, split into words: they use no shell syntax, so none is needed to run them.
fn command(root: &Path, data_home: &Path, line: &str) -> Command {
    assert!(
        !line.contains(['|', '>', '<', '&', ';', '$', '\'', '"']),
        "the quick start's command {line:?} needs a shell; run it through one here"
    );
    let mut words = line.split_whitespace();
    let mut command = Command::new(words.next().expect("a command has a word"));
    command
        .args(words)
        .current_dir(root)
        .env("XDG_DATA_HOME", data_home)
        .env_remove("PROCTOR_SERVER")
        .env_remove("PROCTOR_TOKEN");
    command
}

/// The lab of the quick start's first command, stopped (SIGKILL to its group) if the test fails before it is.
struct RunningLab {
    child: Child,
}

impl RunningLab {
    /// Starts `line` in its own process group, as a terminal would, and waits until it says it listens.
    fn start(mut command: Command, line: &str) -> RunningLab {
        command.stdout(Stdio::piped()).process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("{line}: {error}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (listening, heard) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("lab: {text}");
                if text.starts_with(LISTENING) {
                    let _ = listening.send(text);
                }
            }
        });
        let lab = RunningLab { child };
        let said = heard
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{line} never said {LISTENING:?}"));
        assert!(said.ends_with("127.0.0.1:7370"), "{said}");
        lab
    }

    /// Ctrl-C: SIGINT to the lab's process group; its exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let group = format!("-{}", self.child.id());
        let sent = Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .unwrap();
        assert!(sent.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the lab did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let root = proctor_testkit::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = quick_start_commands(&readme);
    let up = "cargo run --release -- up";
    let submit = "cargo run --release -- submit examples/hello.yaml --follow";
    let example = "cargo run --release -- example";
    for expected in [up, "./scripts/test", submit, example] {
        assert!(
            commands.iter().any(|command| command == expected),
            "the quick start no longer says {expected:?}: {commands:?}"
        );
    }
    // Every other `cargo run` command of the quick start is run below too, so none is left unchecked.
    let unchecked: Vec<_> = commands
        .iter()
        .filter(|command| {
            command.starts_with("cargo run") && ![up, submit, example].contains(&command.as_str())
        })
        .collect();
    assert!(
        unchecked.is_empty(),
        "the quick start has commands this test does not run: {unchecked:?}"
    );

    let data_home = tempfile::tempdir().unwrap();
    let lab = RunningLab::start(command(&root, data_home.path(), up), up);

    let followed = command(&root, data_home.path(), submit).output().unwrap();
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{submit}: {}",
        text(&followed)
    );
    let log = String::from_utf8_lossy(&followed.stdout);
    assert!(log.contains("step 3 of 3"), "{submit}: {}", text(&followed));

    let examples = command(&root, data_home.path(), example).output().unwrap();
    assert_eq!(
        examples.status.code(),
        Some(0),
        "{example}: {}",
        text(&examples)
    );

    let status = lab.interrupt();
    assert_eq!(
        status.code(),
        Some(0),
        "the lab's exit on SIGINT: {status:?}"
    );
}

#[test]
fn the_quick_start_commands_are_read_from_the_readme() {
    let readme =
        "# P\n\n## Quick start\n\n```sh\ncargo run -- up   # a lab\n./scripts/test\n```\n\n\
        Then `cargo run -- submit x.yaml` and `other`.\n\n## Next\n\n`cargo run -- not-this`\n";
    assert_eq!(
        quick_start_commands(readme),
        [
            "cargo run -- up",
            "./scripts/test",
            "cargo run -- submit x.yaml"
        ]
    );
}
