//! Runs one test on every host of a pool, one host at a time, and compares what each gave.
//!
//! ```text
//! cargo run -p proctor --example compare_hosts -- PROJECT POOL_FILE TEST
//! ```
//!
//! Prints each host's verdict, time and output, then whether they agree. Exit status: 0 when every host gave the
//! same verdict, 1 when they differ, 2 when the run could not be made.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use proctor::{Pool, Run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [project, pool, test] = args.as_slice() else {
        eprintln!("usage: compare_hosts PROJECT POOL_FILE TEST");
        return ExitCode::from(2);
    };
    match compare(project, Path::new(pool), test) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("compare_hosts: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether every host gave the test the same verdict.
fn compare(project: &str, pool: &Path, test: &str) -> Result<bool, proctor::Error> {
    let pool = Pool::load(pool)?;
    // Hosts by the verdict they gave.
    let mut by_verdict: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (host, alone) in pool.each_host() {
        let result = Run::open(project)?.with_pool(alone).run_test(test)?;
        let took = result
            .last()
            .and_then(|run| run.duration())
            .unwrap_or_default();
        let output = result.attachment("stdout").unwrap_or_default();
        println!(
            "{host}: {} in {:.3}s: {}",
            result.verdict.as_str(),
            took.as_secs_f64(),
            output.trim_end()
        );
        by_verdict
            .entry(result.verdict.as_str())
            .or_default()
            .push(host);
    }
    if by_verdict.len() == 1 {
        let verdict = by_verdict.keys().next().copied().unwrap_or_default();
        println!("same on every host: {verdict}");
        return Ok(true);
    }
    for (verdict, hosts) in &by_verdict {
        println!("{verdict} on {}", hosts.join(", "));
    }
    Ok(false)
}
