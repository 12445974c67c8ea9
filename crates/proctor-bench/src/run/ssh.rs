//! `proctor run` over an ssh pool: two real `sshd` on loopback addresses (127.0.0.2 and 127.0.0.3), two workers
//! each, logging in as a user whose shell is `/bin/sh` (a login shell that reads a `.bashrc` would add its own
//! start-up to every command and measure the dotfiles, not Proctor).
//!
//! - makespan: the heavy-tailed sleep suite of the makespan part over the 2 × 2 pool, proctor's first run (no
//!   history) and second (with history), against the lower bound and against a static N/M split of the same tests
//!   on the same pool (four equal contiguous shards, one per worker, each test run through the same multiplexed
//!   connection);
//! - overhead: 200 trivial tests on one ssh worker against the same tests on one local slot, and against the
//!   bare cost of one command through the multiplexed connection.
//!
//! The hosts share this machine's file system, so the baseline runs the scripts where they are; proctor copies the
//! tree into a per-run directory as it would on a real host, and that copy is part of its time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use proctor_testkit::Sshd;

use super::makespan::{
    describe_suite, heavy_tailed_durations, lower_bound, write_suite, SEED, TESTS,
};
use super::{
    fresh_dir, proctor_run, remove_dir_if_present, secs, time_run, write, write_script,
    RunBenchError,
};
use crate::process::{ratio, run_checked};
use crate::XorShift;

/// The user the workers log in as.
const USER: &str = "proctor-bench";
/// Workers per host.
const PER_HOST: usize = 2;
/// Tests of the overhead part.
const TRIVIAL: usize = 200;

/// Measures and prints both tables.
pub(super) fn bench(proctor: &Path, root: &Path) -> Result<(), RunBenchError> {
    ensure_user()?;
    let hosts = [
        Sshd::start(&root.join("sshd-a"), 2),
        Sshd::start(&root.join("sshd-b"), 3),
    ];
    makespan(proctor, root, &hosts)?;
    overhead(proctor, root, &hosts[0])
}

/// Makes the login user when it is missing (as root: the part needs to be able to log in as someone with a plain
/// shell).
fn ensure_user() -> Result<(), RunBenchError> {
    let known = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if known.is_ok_and(|status| status.success()) {
        return Ok(());
    }
    Ok(run_checked(Command::new("useradd").args([
        "--system",
        "--shell",
        "/bin/sh",
        "--home-dir",
        "/tmp",
        "--no-create-home",
        "--password",
        "*",
        USER,
    ]))?)
}

/// A pool file with one ssh provisioner per host, `workers` each.
fn pool_file(path: &Path, hosts: &[Sshd], workers: usize) -> Result<PathBuf, RunBenchError> {
    let mut text = String::new();
    for host in hosts {
        text.push_str(&format!(
            "[[provisioner]]\nkind = \"ssh\"\nhosts = [\"{}\"]\nworkers_per_host = {workers}\n{}\n",
            host.host_entry_as(USER),
            host.pool_options()
        ));
    }
    write(path, &text)?;
    Ok(path.to_path_buf())
}

fn makespan(proctor: &Path, root: &Path, hosts: &[Sshd]) -> Result<(), RunBenchError> {
    let durations = heavy_tailed_durations(&mut XorShift(SEED));
    describe_suite(&durations);
    let project = root.join("makespan");
    let tests = fresh_dir(&project.join("tests"))?;
    remove_dir_if_present(&project.join(".proctor"))?;
    let scripts = write_suite(&tests, &durations)?;
    let pool = pool_file(&root.join("pool.toml"), hosts, PER_HOST)?;
    let stream = root.join("makespan.subunit");
    let tests_arg = tests.to_string_lossy().into_owned();
    let pool_arg = pool.to_string_lossy().into_owned();
    let run_proctor = || {
        let mut command = proctor_run(
            proctor,
            &project,
            &["--executables", &tests_arg, "--pool", &pool_arg],
        );
        time_run(&mut command, &stream, TESTS)
    };
    let first = run_proctor()?;
    let second = run_proctor()?;
    let masters: Vec<Master> = hosts
        .iter()
        .map(|host| Master::open(host, root))
        .collect::<Result<_, _>>()?;
    let shards = hosts.len() * PER_HOST;
    let static_split = run_shards(&scripts, shards, &masters)?;
    let bound = lower_bound(&durations, shards);
    println!(
        "\n| ssh pool, 2 hosts × {PER_HOST} workers | lower bound | proctor run | proctor / lower bound | \
         static split (4 equal shards) | static / proctor |\n|---|---|---|---|---|---|"
    );
    for (name, time) in [
        ("1st run (no history)", first),
        ("2nd run (history)", second),
    ] {
        println!(
            "| {name} | {} | {} | {:.3} | {} | {:.2} |",
            secs(bound),
            secs(time),
            ratio(time, bound),
            secs(static_split),
            ratio(static_split, time)
        );
    }
    Ok(())
}

fn overhead(proctor: &Path, root: &Path, host: &Sshd) -> Result<(), RunBenchError> {
    let project = root.join("overhead");
    let tests = fresh_dir(&project.join("tests"))?;
    let scripts = (0..TRIVIAL)
        .map(|index| {
            let path = tests.join(format!("test_{index:03}"));
            write_script(&path, "exit 0")?;
            Ok(path)
        })
        .collect::<Result<Vec<_>, RunBenchError>>()?;
    let pool = pool_file(&root.join("one.toml"), std::slice::from_ref(host), 1)?;
    let stream = root.join("overhead.subunit");
    let tests_arg = tests.to_string_lossy().into_owned();
    let pool_arg = pool.to_string_lossy().into_owned();
    let local = time_run(
        &mut proctor_run(proctor, &project, &["--executables", &tests_arg, "-j", "1"]),
        &stream,
        TRIVIAL,
    )?;
    let over_ssh = time_run(
        &mut proctor_run(
            proctor,
            &project,
            &["--executables", &tests_arg, "--pool", &pool_arg],
        ),
        &stream,
        TRIVIAL,
    )?;
    let master = Master::open(host, root)?;
    let started = Instant::now();
    for script in &scripts {
        master.run(script)?;
    }
    let bare = started.elapsed();
    let per_test = |time: Duration| time / TRIVIAL as u32;
    let added = over_ssh.saturating_sub(local) / TRIVIAL as u32;
    println!(
        "\n| {TRIVIAL} trivial tests, 1 worker | total | per test |\n|---|---|---|\n\
         | proctor run, local slot | {} | {:.2} ms |\n| proctor run, ssh worker | {} | {:.2} ms |\n\
         | bare `ssh` through the master, one after another | {} | {:.2} ms |\n\
         | **ssh worker − local slot** | | **{:.2} ms** |",
        secs(local),
        millis(per_test(local)),
        secs(over_ssh),
        millis(per_test(over_ssh)),
        secs(bare),
        millis(per_test(bare)),
        millis(added)
    );
    Ok(())
}

fn millis(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

/// A master connection of the baseline runner to one host.
struct Master {
    options: Vec<String>,
    destination: String,
}

impl Master {
    fn open(host: &Sshd, root: &Path) -> Result<Master, RunBenchError> {
        let control = root.join(format!("baseline-{}", host.address.ip()));
        let options = vec![
            "-o".to_owned(),
            format!("ControlPath={}", control.display()),
            "-o".to_owned(),
            format!("UserKnownHostsFile={}", host.known_hosts.display()),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-i".to_owned(),
            host.identity.display().to_string(),
            "-p".to_owned(),
            host.address.port().to_string(),
        ];
        let destination = format!("{USER}@{}", host.address.ip());
        run_checked(
            Command::new("ssh")
                .args(&options)
                .args([
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=yes",
                    "-f",
                    "-N",
                ])
                .arg(&destination)
                .stdin(Stdio::null()),
        )?;
        Ok(Master {
            options,
            destination,
        })
    }

    /// Runs one test on the host, output discarded, exit 0 required.
    fn run(&self, script: &Path) -> Result<(), RunBenchError> {
        Ok(run_checked(
            Command::new("ssh")
                .args(&self.options)
                .args(["-T", &self.destination])
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )?)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .args(&self.options)
            .args(["-O", "exit", &self.destination])
            .stderr(Stdio::null())
            .status();
    }
}

/// The static split: `shards` contiguous shards of equal count, in listing order, each run test after test on its
/// own worker (shard `i` on host `i / workers per host`); the time until the last shard ends.
fn run_shards(
    scripts: &[PathBuf],
    shards: usize,
    masters: &[Master],
) -> Result<Duration, RunBenchError> {
    let size = scripts.len().div_ceil(shards);
    let started = Instant::now();
    thread::scope(|scope| {
        let workers: Vec<_> = scripts
            .chunks(size)
            .enumerate()
            .map(|(shard, tests)| {
                let master = &masters[shard / PER_HOST % masters.len()];
                scope.spawn(move || tests.iter().try_for_each(|test| master.run(test)))
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().map_err(|_| RunBenchError::WorkerPanicked)?)
    })?;
    Ok(started.elapsed())
}
