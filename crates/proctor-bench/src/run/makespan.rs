//! Makespan of a heavy-tailed suite: 200 sleep tests with log-normal
//! durations, the longest few listed last, run by `proctor run --executables`
//! and by stestr's static partitions implemented directly (one thread per
//! partition running its tests one after the other).
//!
//! At each worker count the same suite runs:
//! - without history: proctor's first run against a round-robin partition of
//!   the listing (what stestr does for tests it has no times for);
//! - with history: proctor's second run against stestr's timing-based
//!   partition (longest first into the least loaded partition), both against
//!   the lower bound `max(total / workers, longest)`;
//! - with stale history: the durations shuffled among the tests after
//!   proctor stored them, against the timing-based partition computed from
//!   the same stale times.

use std::cmp::Reverse;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    fresh_dir, proctor_run, remove_dir_if_present, run_test, secs, time_run, write_script,
    RunBenchError,
};
use crate::process::ratio;
use crate::XorShift;

/// Tests in the suite.
pub(super) const TESTS: usize = 200;
/// The suite's total sleep; the samples are scaled to it.
const TOTAL: Duration = Duration::from_secs(64);
/// The log-normal shape σ: 1.4 puts the longest test near 18 × the mean.
const SIGMA: f64 = 1.4;
/// How many of the longest tests are moved to the end of the listing.
const LONG_LAST: usize = 4;
/// The generator's seed, so every run benchmarks the same suite.
pub(super) const SEED: u64 = 0x243F_6A88_85A3_08D3;
/// The worker counts measured.
const WORKERS: [usize; 2] = [4, 8];

/// The makespans measured at one worker count.
struct Makespans {
    workers: usize,
    lower_bound: Duration,
    proctor_first: Duration,
    round_robin: Duration,
    proctor_second: Duration,
    timed_partition: Duration,
    proctor_stale: Duration,
    stale_partition: Duration,
}

/// Measures and prints the makespan tables.
pub(super) fn bench(proctor: &Path, root: &Path) -> Result<(), RunBenchError> {
    let mut rng = XorShift(SEED);
    let durations = heavy_tailed_durations(&mut rng);
    let stale = shuffled(&durations, &mut rng);
    describe_suite(&durations);
    let mut results = Vec::new();
    for workers in WORKERS {
        results.push(measure(proctor, root, &durations, &stale, workers)?);
    }
    print_tables(&results);
    Ok(())
}

/// Runs every variant at `workers`, in a fresh project each time.
fn measure(
    proctor: &Path,
    root: &Path,
    durations: &[Duration],
    stale: &[Duration],
    workers: usize,
) -> Result<Makespans, RunBenchError> {
    let project = root.join(format!("j{workers}"));
    let tests = fresh_dir(&project.join("tests"))?;
    remove_dir_if_present(&project.join(".proctor"))?;
    let stream = project.join("stream.subunit");
    let tests_arg = tests.to_string_lossy().into_owned();
    let jobs = workers.to_string();
    let run_proctor = || {
        let mut command = proctor_run(
            proctor,
            &project,
            &["--executables", &tests_arg, "-j", &jobs],
        );
        time_run(&mut command, &stream, TESTS)
    };
    let timed_groups = timed_partition(durations, workers);

    let scripts = write_suite(&tests, durations)?;
    let proctor_first = run_proctor()?;
    let proctor_second = run_proctor()?;
    let round_robin = run_partitions(&scripts, &round_robin(scripts.len(), workers))?;
    let timed_partition = run_partitions(&scripts, &timed_groups)?;

    let scripts = write_suite(&tests, stale)?;
    let proctor_stale = run_proctor()?;
    let stale_partition = run_partitions(&scripts, &timed_groups)?;
    Ok(Makespans {
        workers,
        lower_bound: lower_bound(durations, workers),
        proctor_first,
        round_robin,
        proctor_second,
        timed_partition,
        proctor_stale,
        stale_partition,
    })
}

pub(super) fn describe_suite(durations: &[Duration]) {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let total: Duration = durations.iter().sum();
    let longest: Vec<String> = durations[durations.len().saturating_sub(LONG_LAST)..]
        .iter()
        .map(|duration| format!("{:.2}", duration.as_secs_f64()))
        .collect();
    println!(
        "\nmakespan suite: {} sleep tests, log-normal durations (σ = {SIGMA}, seed {SEED:#x}) \
         scaled to {:.1} s in total; median {:.3} s; the {LONG_LAST} longest, listed last: {} s",
        durations.len(),
        total.as_secs_f64(),
        sorted[sorted.len() / 2].as_secs_f64(),
        longest.join(", "),
    );
}

fn print_tables(results: &[Makespans]) {
    println!(
        "\n| no history | lower bound | proctor run (1st run) | round-robin partition (stestr, no times) | \
         round-robin / proctor |\n|---|---|---|---|---|"
    );
    for m in results {
        println!(
            "| -j {} | {} | {} | {} | {:.2} |",
            m.workers,
            secs(m.lower_bound),
            secs(m.proctor_first),
            secs(m.round_robin),
            ratio(m.round_robin, m.proctor_first),
        );
    }
    println!(
        "\n| with history | lower bound | proctor run (2nd run) | proctor / lower bound | \
         timed partition (stestr, with times) | timed / lower bound |\n|---|---|---|---|---|---|"
    );
    for m in results {
        println!(
            "| -j {} | {} | {} | {:.3} | {} | {:.3} |",
            m.workers,
            secs(m.lower_bound),
            secs(m.proctor_second),
            ratio(m.proctor_second, m.lower_bound),
            secs(m.timed_partition),
            ratio(m.timed_partition, m.lower_bound),
        );
    }
    println!(
        "\n| stale history (durations shuffled) | lower bound | proctor run | proctor / lower bound | \
         timed partition from the stale times | timed / proctor |\n|---|---|---|---|---|---|"
    );
    for m in results {
        println!(
            "| -j {} | {} | {} | {:.3} | {} | {:.2} |",
            m.workers,
            secs(m.lower_bound),
            secs(m.proctor_stale),
            ratio(m.proctor_stale, m.lower_bound),
            secs(m.stale_partition),
            ratio(m.stale_partition, m.proctor_stale),
        );
    }
}

/// Log-normal samples scaled to [`TOTAL`] and rounded to milliseconds, the
/// [`LONG_LAST`] longest moved to the end of the listing.
pub(super) fn heavy_tailed_durations(rng: &mut XorShift) -> Vec<Duration> {
    let samples: Vec<f64> = (0..TESTS)
        .map(|_| (SIGMA * standard_normal(rng)).exp())
        .collect();
    let scale = TOTAL.as_secs_f64() / samples.iter().sum::<f64>();
    let durations = samples
        .iter()
        .map(|sample| Duration::from_millis((sample * scale * 1000.0).round() as u64))
        .collect();
    longest_last(durations, LONG_LAST)
}

/// A standard normal sample (Box–Muller).
fn standard_normal(rng: &mut XorShift) -> f64 {
    // 1 - u keeps the logarithm's argument in (0, 1].
    let u1 = 1.0 - unit_interval(rng);
    let u2 = unit_interval(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A uniform sample in [0, 1).
pub(crate) fn unit_interval(rng: &mut XorShift) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// The same durations with the `count` longest moved to the end, shortest
/// of them first; the others keep their order.
pub(crate) fn longest_last(durations: Vec<Duration>, count: usize) -> Vec<Duration> {
    let mut by_length: Vec<usize> = (0..durations.len()).collect();
    by_length.sort_by_key(|&index| Reverse(durations[index]));
    let mut longest: Vec<usize> = by_length.into_iter().take(count).collect();
    let mut ordered: Vec<Duration> = durations
        .iter()
        .enumerate()
        .filter(|(index, _)| !longest.contains(index))
        .map(|(_, duration)| *duration)
        .collect();
    longest.reverse();
    ordered.extend(longest.into_iter().map(|index| durations[index]));
    ordered
}

/// The durations in a random order (Fisher–Yates): the same tests, but the
/// slow ones are now others.
pub(crate) fn shuffled(durations: &[Duration], rng: &mut XorShift) -> Vec<Duration> {
    let mut shuffled = durations.to_vec();
    for last in (1..shuffled.len()).rev() {
        shuffled.swap(last, rng.below(last + 1));
    }
    shuffled
}

/// One sleep script per duration, named so that sorting by name (proctor's
/// listing order) is the order given.
pub(super) fn write_suite(
    dir: &Path,
    durations: &[Duration],
) -> Result<Vec<PathBuf>, RunBenchError> {
    durations
        .iter()
        .enumerate()
        .map(|(index, duration)| {
            let path = dir.join(format!("test_{index:03}"));
            write_script(&path, &format!("exec sleep {:.3}", duration.as_secs_f64()))?;
            Ok(path)
        })
        .collect()
}

/// No schedule can finish before all the work is spread evenly, nor before
/// the longest test ends.
pub(crate) fn lower_bound(durations: &[Duration], workers: usize) -> Duration {
    let total: Duration = durations.iter().sum();
    let longest = durations.iter().max().copied().unwrap_or_default();
    let per_worker = total.div_f64(workers.max(1) as f64);
    per_worker.max(longest)
}

/// stestr's partition for tests without times: the listing dealt out in
/// turn.
fn round_robin(tests: usize, workers: usize) -> Vec<Vec<usize>> {
    let workers = workers.max(1);
    let mut groups = vec![Vec::new(); workers];
    for test in 0..tests {
        groups[test % workers].push(test);
    }
    groups
}

/// stestr's partition for timed tests (`stestr/scheduler.py`
/// `partition_tests`): longest first, each into the partition with the
/// least time so far, fewer tests breaking ties.
fn timed_partition(durations: &[Duration], workers: usize) -> Vec<Vec<usize>> {
    let mut by_length: Vec<usize> = (0..durations.len()).collect();
    by_length.sort_by_key(|&index| Reverse(durations[index]));
    let mut partitions = vec![(Duration::ZERO, Vec::new()); workers.max(1)];
    for test in by_length {
        if let Some(least) = partitions
            .iter_mut()
            .min_by_key(|(time, tests)| (*time, tests.len()))
        {
            least.0 += durations[test];
            least.1.push(test);
        }
    }
    partitions.into_iter().map(|(_, tests)| tests).collect()
}

/// Runs each group on its own thread, its tests one after the other, and
/// returns the time until the last group is done.
fn run_partitions(scripts: &[PathBuf], groups: &[Vec<usize>]) -> Result<Duration, RunBenchError> {
    let started = Instant::now();
    thread::scope(|scope| {
        let workers: Vec<_> = groups
            .iter()
            .map(|group| {
                scope.spawn(move || group.iter().try_for_each(|&test| run_test(&scripts[test])))
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().map_err(|_| RunBenchError::WorkerPanicked)?)
    })?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn the_suite_is_heavy_tailed_deterministic_and_scaled() {
        let durations = heavy_tailed_durations(&mut XorShift(SEED));
        assert_eq!(durations, heavy_tailed_durations(&mut XorShift(SEED)));
        assert_eq!(durations.len(), TESTS);
        let total: Duration = durations.iter().sum();
        let error = total.abs_diff(TOTAL);
        // Rounding each test to a millisecond moves the total by at most that.
        assert!(error <= Duration::from_millis(TESTS as u64), "{total:?}");
        let mut sorted = durations.clone();
        sorted.sort();
        assert_eq!(
            &durations[TESTS - LONG_LAST..],
            &sorted[TESTS - LONG_LAST..]
        );
        let median = sorted[TESTS / 2];
        let mean = TOTAL / TESTS as u32;
        assert!(median < mean, "a heavy tail puts the median below the mean");
        assert!(sorted[TESTS - 1] > mean * 8, "the longest test dominates");
    }

    #[test]
    fn only_the_longest_move_to_the_end() {
        assert_eq!(
            longest_last(ms(&[5, 1, 9, 2, 7, 3]), 2),
            ms(&[5, 1, 2, 3, 7, 9])
        );
    }

    #[test]
    fn shuffling_keeps_the_durations() {
        let durations = ms(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut shuffled = shuffled(&durations, &mut XorShift(7));
        assert_ne!(shuffled, durations);
        shuffled.sort();
        assert_eq!(shuffled, durations);
    }

    #[test]
    fn the_lower_bound_is_the_even_share_or_the_longest_test() {
        assert_eq!(
            lower_bound(&ms(&[100, 100, 100, 100]), 2),
            Duration::from_millis(200)
        );
        assert_eq!(
            lower_bound(&ms(&[500, 100, 100]), 2),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn round_robin_deals_the_listing_in_turn() {
        assert_eq!(round_robin(5, 2), [vec![0, 2, 4], vec![1, 3]]);
    }

    #[test]
    fn the_timed_partition_balances_longest_first() {
        let groups = timed_partition(&ms(&[1, 5, 3, 3, 2]), 2);
        assert_eq!(groups, [vec![1, 4], vec![2, 3, 0]]);
    }

    #[test]
    fn every_partitioned_test_runs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let marks = dir.path().join("marks");
        std::fs::create_dir(&marks)?;
        let scripts = (0..4)
            .map(|index| {
                let path = dir.path().join(format!("t{index}"));
                write_script(&path, &format!("touch '{}/{index}'", marks.display()))?;
                Ok(path)
            })
            .collect::<Result<Vec<_>, RunBenchError>>()?;
        run_partitions(&scripts, &round_robin(4, 2))?;
        assert_eq!(std::fs::read_dir(&marks)?.count(), 4);
        Ok(())
    }

    #[test]
    fn a_failing_test_fails_the_baseline_run() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("fails");
        write_script(&script, "exit 1")?;
        let result = run_partitions(&[script], &[vec![0]]);
        assert!(matches!(
            result,
            Err(RunBenchError::Process(
                crate::process::ProcessError::Failed { .. }
            ))
        ));
        Ok(())
    }
}
