//! `proctor-bench cargo`: `proctor run --source cargo -j N` against `cargo nextest run -j N` on the same generated
//! crate (issue 15), the build excluded from both.
//!
//! The crate has 200 tests in a lib and four integration-test binaries: 195 quick ones (10 ms of sleep each) and a
//! heavy tail of 5 slow ones (1 to 3 s), named so that both tools meet them last. Sleeps stand in for work so the
//! figures do not depend on the CPU share of a shared two-core machine. Both tools build once beforehand
//! (`cargo test --no-run`, `cargo nextest run --no-run`, into one target directory); each timed run then finds the
//! build fresh, so what both pay for cargo is its up-to-date check. Proctor is timed without history (its
//! `.proctor/` removed) and with the previous run's history; nextest keeps none.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{describe, output_checked, ratio, run_checked, ProcessError};
use crate::run::{fresh_dir, proctor_run, secs, time_run, RunBenchError};
use crate::sibling_binary;

/// The concurrency of both tools (the machine's cores).
const JOBS: &str = "2";
/// Timed runs of each configuration; the table shows their medians.
const REPEATS: usize = 3;
/// Test binaries besides the lib's unit tests.
const INTEGRATION_FILES: usize = 4;
/// Quick tests in each of the five binaries.
const QUICK_PER_BINARY: usize = 39;
/// How long a quick test sleeps.
const QUICK_MS: u64 = 10;
/// The heavy tail: the slow tests' sleeps, all in the last binary.
const SLOW_MS: [u64; 5] = [1000, 1500, 2000, 2500, 3000];

/// Runs the benchmark and prints its table.
pub fn cargo_bench(args: &[String]) -> Result<(), RunBenchError> {
    if !args.is_empty() {
        return Err(RunBenchError::Usage);
    }
    let proctor = sibling_binary("proctor").map_err(RunBenchError::MissingBinary)?;
    check_nextest()?;
    let root = std::env::temp_dir().join("proctor-bench").join("cargo");
    let project = fresh_dir(&root)?;
    let expected = generate(&project)?;
    let target = project.join("target");
    build(&project, &target)?;
    println!(
        "proctor: {}\nproject: {} ({expected} tests, {:.2} s of sleep)",
        proctor.display(),
        project.display(),
        serial_time().as_secs_f64()
    );
    let mut nextest = Vec::new();
    let mut first = Vec::new();
    let mut second = Vec::new();
    for _ in 0..REPEATS {
        nextest.push(time_nextest(&project, &target)?);
        let _ = fs::remove_dir_all(project.join(".proctor"));
        first.push(time_proctor(&proctor, &project, &target, expected)?);
        second.push(time_proctor(&proctor, &project, &target, expected)?);
    }
    print_table(&nextest, &first, &second);
    Ok(())
}

/// `cargo nextest` must be installed: it is the baseline.
fn check_nextest() -> Result<(), RunBenchError> {
    let output = output_checked(Command::new("cargo").args(["nextest", "--version"]))
        .map_err(|_| RunBenchError::MissingProgram("cargo nextest"))?;
    let version = String::from_utf8_lossy(&output.stdout);
    println!("{}", version.lines().next().unwrap_or_default());
    Ok(())
}

/// The sum of every test's sleep.
fn serial_time() -> Duration {
    let quick = (QUICK_PER_BINARY * (INTEGRATION_FILES + 1)) as u64 * QUICK_MS;
    Duration::from_millis(quick + SLOW_MS.iter().sum::<u64>())
}

/// Writes the crate into `dir`; returns how many tests it has.
fn generate(dir: &Path) -> Result<usize, RunBenchError> {
    write(
        &dir.join("Cargo.toml"),
        "[package]\nname = \"bench-suite\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\n\
         [workspace]\n",
    )?;
    fs::create_dir_all(dir.join("src")).map_err(io_error("creating", dir))?;
    fs::create_dir_all(dir.join("tests")).map_err(io_error("creating", dir))?;
    let mut count = QUICK_PER_BINARY;
    write(
        &dir.join("src/lib.rs"),
        &format!("#[cfg(test)]\nmod tests {{\n{}}}\n", quick_tests()),
    )?;
    for file in 0..INTEGRATION_FILES {
        let mut body = quick_tests();
        count += QUICK_PER_BINARY;
        // The heavy tail in the last binary, with names that sort last: both tools meet them at the end.
        if file + 1 == INTEGRATION_FILES {
            for (index, ms) in SLOW_MS.iter().enumerate() {
                body.push_str(&sleeping_test(&format!("z_slow_{index}"), *ms));
            }
            count += SLOW_MS.len();
        }
        write(&dir.join(format!("tests/t{file}.rs")), &body)?;
    }
    Ok(count)
}

fn quick_tests() -> String {
    (0..QUICK_PER_BINARY)
        .map(|index| sleeping_test(&format!("quick_{index:03}"), QUICK_MS))
        .collect()
}

fn sleeping_test(name: &str, ms: u64) -> String {
    format!(
        "#[test]\nfn {name}() {{\n    std::thread::sleep(std::time::Duration::from_millis({ms}));\n}}\n"
    )
}

/// Builds the test binaries for both tools, so that no timed run compiles.
fn build(project: &Path, target: &Path) -> Result<(), RunBenchError> {
    for args in [
        &["test", "--no-run", "--quiet"][..],
        &["nextest", "run", "--no-run", "--cargo-quiet"][..],
    ] {
        run_checked(
            Command::new("cargo")
                .args(args)
                .current_dir(project)
                .env("CARGO_TARGET_DIR", target)
                .stdout(Stdio::null()),
        )?;
    }
    Ok(())
}

/// One `cargo nextest run -j N`, which must pass.
fn time_nextest(project: &Path, target: &Path) -> Result<Duration, RunBenchError> {
    let mut command = Command::new("cargo");
    command
        .args([
            "nextest",
            "run",
            "--cargo-quiet",
            "--no-fail-fast",
            "-j",
            JOBS,
        ])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let described = describe(&command);
    let started = std::time::Instant::now();
    let status = command.status().map_err(ProcessError::spawn(&described))?;
    let elapsed = started.elapsed();
    crate::process::check_exit(&described, status)?;
    Ok(elapsed)
}

/// One `proctor run --source cargo -j N`, which must pass all `expected` tests.
fn time_proctor(
    proctor: &Path,
    project: &Path,
    target: &Path,
    expected: usize,
) -> Result<Duration, RunBenchError> {
    let mut command = proctor_run(proctor, project, &["--source", "cargo", "-j", JOBS]);
    command
        .env("CARGO_TARGET_DIR", target)
        .stderr(Stdio::null());
    time_run(&mut command, &project.join("stream.subunit"), expected)
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn runs(times: &[Duration]) -> String {
    times
        .iter()
        .map(|time| format!("{:.2}", time.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(nextest: &[Duration], first: &[Duration], second: &[Duration]) {
    let baseline = median(nextest);
    let lower = serial_time().div_f64(2.0).max(Duration::from_millis(
        SLOW_MS.iter().copied().max().unwrap_or(0),
    ));
    println!("\n| `-j {JOBS}`, 200 tests | median of {REPEATS} | runs (s) | ratio to nextest |");
    println!("|---|---|---|---|");
    println!(
        "| lower bound, max(total / 2, longest) | {} | | |",
        secs(lower)
    );
    println!(
        "| `cargo nextest run` | {} | {} | 1.00× |",
        secs(baseline),
        runs(nextest)
    );
    for (label, times) in [
        ("`proctor run`, no history", first),
        ("`proctor run`, with history", second),
    ] {
        println!(
            "| {label} | {} | {} | **{:.2}×** |",
            secs(median(times)),
            runs(times),
            ratio(median(times), baseline)
        );
    }
}

fn write(path: &Path, text: &str) -> Result<(), RunBenchError> {
    fs::write(path, text).map_err(io_error("writing", path))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunBenchError {
    let path: PathBuf = path.to_path_buf();
    move |source| RunBenchError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_has_200_tests_and_a_heavy_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(generate(dir.path()).ok(), Some(200));
        let last = fs::read_to_string(dir.path().join("tests/t3.rs")).expect("the last binary");
        assert_eq!(last.matches("fn z_slow_").count(), SLOW_MS.len());
        assert_eq!(serial_time(), Duration::from_millis(195 * 10 + 10_000));
    }
}
