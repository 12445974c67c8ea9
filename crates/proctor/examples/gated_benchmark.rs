//! Runs a project's benchmark tests only when its install test passed.
//!
//! ```text
//! cargo run -p proctor --example gated_benchmark -- PROJECT INSTALL_TEST BENCHMARK_FILTER
//! ```
//!
//! Exit status: 0 when the install test and every benchmark passed, 1 when one failed (the benchmarks are not run
//! after a failed install), 2 when the run could not be made.

use std::process::ExitCode;

use proctor::{Run, Selection, TestVerdict};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [project, install, benchmarks] = args.as_slice() else {
        eprintln!("usage: gated_benchmark PROJECT INSTALL_TEST BENCHMARK_FILTER");
        return ExitCode::from(2);
    };
    match gated(project, install, benchmarks) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("gated_benchmark: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether the install test and then the benchmarks passed.
fn gated(project: &str, install: &str, benchmarks: &str) -> Result<bool, proctor::Error> {
    let mut run = Run::open(project)?;
    let installed = run.run_test(install)?;
    if installed.verdict != TestVerdict::Passed {
        let why = installed
            .attachment("proctor-reason")
            .or_else(|| installed.attachment("stdout"))
            .unwrap_or_default();
        println!(
            "install {install} {}: benchmarks not run\n{}",
            installed.verdict.as_str(),
            why.trim_end()
        );
        return Ok(false);
    }
    println!(
        "install {install} passed on worker {}",
        installed.worker().unwrap_or("?")
    );
    let tests = run.select(&Selection::matching([benchmarks]))?;
    let tests: Vec<_> = tests
        .into_iter()
        .filter(|test| test.id != install)
        .collect();
    let outcome = run.run(&tests)?;
    for (id, took) in &outcome.summary.durations {
        println!("benchmark {id}: {:.3}s", took.as_secs_f64());
    }
    println!(
        "benchmarks: {} passed, {} failed",
        outcome.summary.passed, outcome.summary.failed
    );
    Ok(outcome.succeeded())
}
