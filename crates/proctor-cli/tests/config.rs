//! The layered settings of `proctor run` through the real binary: `proctor config list` shows each key's value and
//! source, the environment overrides the files and a flag the environment, `proctor run` obeys what a file says,
//! and bad files and variables are pointed at. Every test has its own home and `XDG_CONFIG_HOME`, and no
//! `PROCTOR_*` setting of the developer's, so nothing of theirs leaks in.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use proctor::config::{env_var, RunSettings};
use tempfile::TempDir;

/// A user's home (with its XDG config directory) and a project.
struct Place {
    home: TempDir,
    project: TempDir,
}

impl Place {
    fn new() -> Place {
        Place {
            home: TempDir::new().unwrap(),
            project: TempDir::new().unwrap(),
        }
    }

    fn user_file(&self) -> PathBuf {
        self.home.path().join("xdg/proctor/config.toml")
    }

    fn project_file(&self) -> PathBuf {
        self.project.path().join(".config/proctor.toml")
    }

    /// `proctor` in the project, with this place's home and none of the caller's settings.
    fn proctor(&self) -> Command {
        let mut command = Command::cargo_bin("proctor").unwrap();
        command
            .current_dir(self.project.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"));
        for key in RunSettings::KEYS {
            command.env_remove(env_var(key));
        }
        command
    }

    fn list(&self, env: &[(&str, &str)]) -> Output {
        self.proctor()
            .args(["config", "list"])
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.proctor()
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// An executable test in the project's `t/`.
    fn test(&self, name: &str, body: &str) {
        let path = self.project.path().join("t").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The words of an error report, which miette wraps to the terminal's width.
fn words(output: &Output) -> String {
    text(output)
        .split_whitespace()
        .filter(|word| *word != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value and source `proctor config list` shows for `key`.
fn listed(output: &Output, key: &str) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"));
    let mut columns = line.split_whitespace().skip(1);
    (
        columns.next().unwrap().to_owned(),
        columns.collect::<Vec<_>>().join(" "),
    )
}

#[test]
fn config_list_shows_every_key_with_its_value_and_source() {
    let place = Place::new();
    write(&place.user_file(), "[run]\ngrace = 2.5\nretries = 1\n");
    write(
        &place.project_file(),
        "[run]\nretries = 3\nmemory-limit = \"512M\"\n",
    );
    let output = place.list(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // A header and one aligned line per key: every value starts in the same column.
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), RunSettings::KEYS.len() + 1, "{stdout}");
    let value_column = lines[0].find("VALUE").unwrap();
    for (line, key) in lines[1..].iter().zip(RunSettings::KEYS) {
        assert!(line.starts_with(key), "{stdout}");
        assert_ne!(line.as_bytes()[value_column], b' ', "{stdout}");
        assert_eq!(line.as_bytes()[value_column - 1], b' ', "{stdout}");
    }
    let project_file = place.project_file().display().to_string();
    let user_file = place.user_file().display().to_string();
    assert_eq!(
        listed(&output, "retries"),
        ("3".into(), project_file.clone())
    );
    assert_eq!(
        listed(&output, "memory-limit"),
        ("512M".into(), project_file)
    );
    assert_eq!(listed(&output, "grace"), ("2.5".into(), user_file));
    assert_eq!(listed(&output, "junit"), ("none".into(), "default".into()));
    assert_eq!(
        listed(&output, "serial"),
        ("false".into(), "default".into())
    );

    // The environment overrides the files.
    let output = place.list(&[("PROCTOR_RETRIES", "5")]);
    assert_eq!(
        listed(&output, "retries"),
        ("5".into(), "$PROCTOR_RETRIES".into())
    );
    let output = place
        .proctor()
        .args(["config", "list", "--json"])
        .env("PROCTOR_RETRIES", "5")
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let row = |key: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|row| row["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(row("retries")["value"], "5");
    assert_eq!(row("retries")["layer"], "environment");
    assert_eq!(row("retries")["source"], "$PROCTOR_RETRIES");
    assert_eq!(row("junit")["value"], serde_json::Value::Null);
    assert_eq!(row("memory-limit")["layer"], "project-file");
}

#[test]
fn run_takes_retries_from_the_file_then_the_environment_then_the_flag() {
    let place = Place::new();
    let marker = place.project.path().join("ran-once");
    place.test(
        "flaky.sh",
        &format!(
            "if [ -e {0} ]; then exit 0; fi; touch {0}; exit 1",
            marker.display()
        ),
    );
    write(&place.project_file(), "[run]\nretries = 1\n");
    let flaky_run = |args: &[&str], env: &[(&str, &str)]| {
        let _ = fs::remove_file(&marker);
        let mut all = vec!["--executables", "t"];
        all.extend(args);
        place.run(&all, env)
    };

    // No flag leaves the file's retry: the flaky test passes on it.
    let output = flaky_run(&[], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("Flaky"), "{}", text(&output));
    // The environment overrides the file: no retry, the test fails.
    let output = flaky_run(&[], &[("PROCTOR_RETRIES", "0")]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    // A flag overrides the environment.
    let output = flaky_run(&["--retries", "1"], &[("PROCTOR_RETRIES", "0")]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

#[test]
fn run_takes_its_workers_from_the_file_then_the_environment_then_the_flag() {
    let place = Place::new();
    let running = place.project.path().join("running");
    let peaks = place.project.path().join("peaks");
    fs::create_dir_all(&running).unwrap();
    for name in ["a.sh", "b.sh", "c.sh"] {
        // Each test counts the tests running beside it: all of one wave are still asleep when it counts.
        place.test(
            name,
            &format!(
                "touch {running}/{name}; sleep 1; ls {running} | wc -l > {peaks}/{name}; rm {running}/{name}",
                running = running.display(),
                peaks = peaks.display(),
            ),
        );
    }
    let peak = |args: &[&str], env: &[(&str, &str)]| {
        let _ = fs::remove_dir_all(&peaks);
        fs::create_dir_all(&peaks).unwrap();
        let mut all = vec!["--executables", "t", "--no-store"];
        all.extend(args);
        let output = place.run(&all, env);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        fs::read_dir(&peaks)
            .unwrap()
            .map(|entry| {
                let count = fs::read_to_string(entry.unwrap().path()).unwrap();
                count.trim().parse::<usize>().unwrap()
            })
            .max()
            .unwrap()
    };

    // Three at once, from the file (the default here would be one per CPU).
    write(&place.project_file(), "[run]\nconcurrency = 3\n");
    assert_eq!(peak(&[], &[]), 3);
    // The environment's `serial` overrides the file's `concurrency`.
    assert_eq!(peak(&[], &[("PROCTOR_SERIAL", "true")]), 1);
    // And a flag's `-j` overrides the environment's `serial`.
    assert_eq!(peak(&["-j", "2"], &[("PROCTOR_SERIAL", "true")]), 2);
}

#[test]
fn a_bad_file_names_the_file_key_line_and_column() {
    let place = Place::new();
    write(&place.project_file(), "[run]\nretries = \"lots\"\n");
    let file = place.project_file().display().to_string();
    for output in [place.list(&[]), place.run(&["--no-store"], &[])] {
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let said = words(&output);
        assert!(
            said.contains(&format!(
                "{file}: `run.retries` at line 2, column 11: expected a whole number, 0 or more, not \"lots\""
            )),
            "{said}"
        );
    }

    write(&place.project_file(), "[run]\nretries = 1\nretires = 2\n");
    let output = place.list(&[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = words(&output);
    assert!(
        said.contains(&format!(
            "{file}: `run.retires` at line 3, column 1: unknown key `retires`"
        )),
        "{said}"
    );

    fs::remove_file(place.project_file()).unwrap();
    write(&place.user_file(), "[run]\ngrace = \"soon\"\n");
    let output = place.list(&[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = words(&output);
    let file = place.user_file().display().to_string();
    assert!(
        said.contains(&format!("{file}: `run.grace` at line 2, column 9")),
        "{said}"
    );
}

#[test]
fn a_bad_variable_is_named() {
    let place = Place::new();
    for output in [
        place.list(&[("PROCTOR_CONCURRENCY", "0")]),
        place.run(&["--no-store"], &[("PROCTOR_CONCURRENCY", "0")]),
    ] {
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let said = words(&output);
        assert!(
            said.contains("$PROCTOR_CONCURRENCY: expected a whole number, at least 1, not \"0\""),
            "{said}"
        );
    }
}
