//! Runs a project's tests, and collects extra diagnostics only after the first failure: its diagnostics test runs
//! then, on the worker the failure happened on, and never when everything passed.
//!
//! ```text
//! cargo run -p proctor --example diagnose_after_failure -- PROJECT DIAGNOSTICS_TEST
//! ```
//!
//! Exit status: 0 when every test passed, 1 when one failed (after the diagnostics), 2 when the run could not be
//! made.

use std::process::ExitCode;

use proctor::{Run, Selection};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [project, diagnostics] = args.as_slice() else {
        eprintln!("usage: diagnose_after_failure PROJECT DIAGNOSTICS_TEST");
        return ExitCode::from(2);
    };
    match diagnose(project, diagnostics) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("diagnose_after_failure: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether every test passed.
fn diagnose(project: &str, diagnostics: &str) -> Result<bool, proctor::Error> {
    let mut run = Run::open(project)?;
    let tests: Vec<_> = run
        .select(&Selection::default())?
        .into_iter()
        .filter(|test| test.id != diagnostics)
        .collect();
    let outcome = run.run(&tests)?;
    println!(
        "{} passed, {} failed",
        outcome.summary.passed, outcome.summary.failed
    );
    let Some(first) = outcome.summary.failures.first() else {
        return Ok(outcome.succeeded());
    };
    let worker = first.route_code.clone().unwrap_or_default();
    println!("first failure: {} on worker {worker}", first.test_id);
    let on = worker.clone();
    let result = run.run_test_on(diagnostics, move |candidate| candidate.route == on)?;
    println!(
        "diagnostics ({}, {}):\n{}",
        result.verdict.as_str(),
        result.worker().unwrap_or("?"),
        result.attachment("stdout").unwrap_or_default().trim_end()
    );
    Ok(false)
}
