//! Proctor's benchmarks. Each figure is measured beside a baseline in the same
//! run, because this machine is shared and absolute times drift; the ratios
//! are what BENCHMARKS.md records.
//!
//! `proctor-bench subunit [--venv DIR]` measures the subunit codec:
//! in-process decode rate against the `subunit` crate 0.3.1, `proctor subunit
//! stats` against python-subunit's `subunit-stats` on the same file, and
//! panics under random mutation against the `subunit` crate.
//!
//! `proctor-bench run [--venv DIR] [PART...]` measures `proctor run`: see
//! [`run`].
//!
//! `proctor-bench cargo` measures `proctor run` on a Cargo crate against `cargo nextest run`: see [`cargo`].
//!
//! `proctor-bench lab [PART...]` measures the lab service (server, agents,
//! client): see [`lab`]. `proctor-bench lab serve` is its server process.

mod cargo;
mod lab;
mod process;
mod run;

use std::env;
use std::fs;
use std::io;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proctor_subunit::{encode, Event, EventReader, Status, Timestamp};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tests in the generated stream (two events each).
const TESTS: u32 = 100_000;
/// Random mutations applied to the small stream in the robustness check.
const MUTATIONS: usize = 200_000;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("subunit") => match subunit_bench(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("proctor-bench: {error}");
                ExitCode::FAILURE
            }
        },
        Some("cargo") => match cargo::cargo_bench(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("proctor-bench cargo: {error}");
                ExitCode::FAILURE
            }
        },
        Some("run") => match run::run_bench(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("proctor-bench run: {error}");
                ExitCode::FAILURE
            }
        },
        Some("lab") => {
            let result = match args.get(1).map(String::as_str) {
                Some("serve") => lab::serve(&args[2..]),
                _ => lab::lab_bench(&args[1..]),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("proctor-bench lab: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: proctor-bench subunit [--venv DIR]\n       \
                 proctor-bench run [--venv DIR] [makespan|overhead|python|pytest|startup|ssh]...\n       \
                 proctor-bench cargo\n       \
                 proctor-bench lab [dispatch|throughput|memory|tail|wait|list|ui|\
                 scale-dispatch|scale-throughput|scale-idle|fanout]..."
            );
            ExitCode::from(2)
        }
    }
}

fn subunit_bench(args: &[String]) -> Result<(), String> {
    let venv = match args {
        [flag, dir] if flag == "--venv" => PathBuf::from(dir),
        [] => env::var_os("PROCTOR_TEST_VENV")
            .map(PathBuf::from)
            .ok_or("give --venv DIR or set PROCTOR_TEST_VENV")?,
        _ => return Err("usage: proctor-bench subunit [--venv DIR]".into()),
    };
    let stream = generate_stream(TESTS);
    let events = u64::from(TESTS) * 2;
    let dir = env::temp_dir().join("proctor-bench");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("subunit-200k.subunit");
    fs::write(&file, &stream).map_err(|e| e.to_string())?;
    println!(
        "stream: {events} events, {TESTS} tests, {} bytes ({})",
        stream.len(),
        file.display()
    );

    let proctor = best_of(7, || decode_with_proctor(&stream, events));
    let owned = best_of(7, || decode_owned_with_proctor(&stream, events));
    let reference_crate = best_of(3, || decode_with_subunit_crate(&stream, events));
    println!("\n| in-process decode | best time | events/s |\n|---|---|---|");
    report_rate(
        "proctor-subunit EventReader::next_ref (borrowed)",
        proctor,
        events,
    );
    report_rate(
        "proctor-subunit EventReader iterator (owned Event)",
        owned,
        events,
    );
    report_rate("subunit crate 0.3.1 iter_stream", reference_crate, events);
    println!(
        "ratio: proctor is {:.1}x the subunit crate",
        reference_crate.as_secs_f64() / proctor.as_secs_f64()
    );

    let proctor_bin = sibling_binary("proctor")?;
    let subunit_stats = venv.join("bin").join("subunit-stats");
    let ours = median_of(9, || {
        time_command(&proctor_bin, &["subunit", "stats"], &file)
    })?;
    let theirs = median_of(3, || time_command(&subunit_stats, &[], &file))?;
    println!("\n| stats on the same file | median wall time |\n|---|---|");
    println!("| proctor subunit stats | {:.1} ms |", ms(ours));
    println!("| subunit-stats (python-subunit) | {:.1} ms |", ms(theirs));
    println!(
        "ratio: proctor subunit stats is {:.0}x faster",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );

    let (ours, theirs) = mutation_panics(MUTATIONS);
    println!("\n| {MUTATIONS} random mutations of a five-test stream | panics |\n|---|---|");
    println!("| proctor-subunit | {ours} |");
    println!("| subunit crate 0.3.1 | {theirs} |");
    Ok(())
}

/// The benchmark stream: each test `inprogress` then `success`, timestamped,
/// one tag each; every tenth test's `success` carries ~100 bytes of stdout.
fn generate_stream(tests: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(tests as usize * 100);
    let start = Timestamp::new(1_700_000_000, 0);
    let output = Bytes::from(vec![b'o'; 100]);
    for i in 0..tests {
        let id = format!("proctor.bench.module_{}.TestCase.test_{i}", i % 100);
        let tag = format!("worker-{}", i % 4);
        let at = start.saturating_add(Duration::from_micros(u64::from(i) * 1000));
        let started = Event::test(&id, Status::InProgress).at(at).tagged(&tag);
        let mut finished = Event::test(&id, Status::Success)
            .at(at.saturating_add(Duration::from_micros(700)))
            .tagged(&tag);
        if i % 10 == 0 {
            finished.file = Some(proctor_subunit::File {
                name: "stdout".into(),
                content: output.clone(),
            });
            finished.eof = true;
        }
        for event in [started, finished] {
            // The generated events are valid by construction.
            encode(&event, &mut out).unwrap_or_else(|e| panic!("encoding: {e}"));
        }
    }
    out
}

/// Decodes into borrowed events: what a consumer that does not keep them
/// (a summary, a filter) pays.
fn decode_with_proctor(stream: &[u8], expected: u64) -> Duration {
    let started = Instant::now();
    let mut reader = EventReader::new(stream);
    let mut count = 0u64;
    while let Ok(Some(event)) = reader.next_ref() {
        count += u64::from(event.test_id.is_some());
    }
    let elapsed = started.elapsed();
    assert_eq!(
        count, expected,
        "proctor decoded a different number of events"
    );
    elapsed
}

/// Decodes into owned events, as the iterator does.
fn decode_owned_with_proctor(stream: &[u8], expected: u64) -> Duration {
    let started = Instant::now();
    let count = EventReader::new(stream).filter(Result::is_ok).count() as u64;
    let elapsed = started.elapsed();
    assert_eq!(
        count, expected,
        "proctor decoded a different number of events"
    );
    elapsed
}

fn decode_with_subunit_crate(stream: &[u8], expected: u64) -> Duration {
    let started = Instant::now();
    let count = subunit::io::sync::iter_stream(stream)
        .filter(|item| item.is_ok())
        .count() as u64;
    let elapsed = started.elapsed();
    assert_eq!(
        count, expected,
        "the subunit crate decoded a different number of events"
    );
    elapsed
}

fn best_of(runs: usize, mut measure: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| measure()).min().unwrap_or_default()
}

fn median_of(
    runs: usize,
    mut measure: impl FnMut() -> Result<Duration, String>,
) -> Result<Duration, String> {
    let times = (0..runs)
        .map(|_| measure())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(median(times))
}

/// The middle time (the upper one of an even count); zero when there are
/// none.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn report_rate(name: &str, time: Duration, events: u64) {
    let rate = events as f64 / time.as_secs_f64();
    println!("| {name} | {:.1} ms | {:.2} M |", ms(time), rate / 1e6);
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

/// A binary built beside this one (`cargo build --release` puts them together).
fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it with cargo build --release",
            path.display()
        ))
    }
}

/// Runs `program args < input` and times it; the output is discarded.
fn time_command(program: &Path, args: &[&str], input: &Path) -> Result<Duration, String> {
    let stdin = fs::File::open(input).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let elapsed = started.elapsed();
    // Both exit 0 on this all-passing stream; anything else means it broke.
    if !status.success() {
        return Err(format!("{} exited with {status}", program.display()));
    }
    Ok(elapsed)
}

/// A small deterministic generator, so every run mutates the same way.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(base: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(data.len());
        match rng.below(4) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => data.insert(at, rng.next() as u8),
            _ => {
                data.remove(at);
            }
        }
        if data.is_empty() {
            data.push(0xb3);
        }
    }
    data
}

/// Panics of each decoder over the same mutated inputs.
fn mutation_panics(count: usize) -> (usize, usize) {
    let mut base = Vec::new();
    for i in 0..5u32 {
        let id = format!("pkg.test_{i}");
        let at = Timestamp::new(1_700_000_000 + i, 123_456_000);
        let mut end = Event::test(
            &id,
            if i == 3 {
                Status::Fail
            } else {
                Status::Success
            },
        )
        .at(at)
        .tagged("t");
        if i == 3 {
            end.file = Some(proctor_subunit::File {
                name: "traceback".into(),
                content: Bytes::from_static(b"Traceback: boom\n"),
            });
            end.mime_type = Some("text/plain;charset=utf8".into());
            end.eof = true;
        }
        for event in [Event::test(&id, Status::InProgress).at(at), end] {
            encode(&event, &mut base).unwrap_or_else(|e| panic!("encoding: {e}"));
        }
    }
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut ours, mut theirs) = (0, 0);
    for _ in 0..count {
        let data = mutate(&base, &mut rng);
        let proctor = panic::catch_unwind(|| EventReader::new(&data[..]).count());
        ours += usize::from(proctor.is_err());
        let crate_result =
            panic::catch_unwind(|| subunit::io::sync::iter_stream(&data[..]).take(1000).count());
        theirs += usize::from(crate_result.is_err());
    }
    panic::set_hook(previous_hook);
    let _ = io::Write::flush(&mut io::stdout());
    (ours, theirs)
}
