//! Escaped processes (setsid daemons, double forks) are killed when their command ends, and
//! never another command's.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    cannot_run_without, finish, gone, read_pid_file, read_until, running_as, sh, supervisor,
    supervisor_with, wait_for, PATIENCE,
};
use proctor_supervisor::{
    CommandSpec, Exit, Limit, MemoryPreference, MemoryStrategy, Outcome, Running, Supervisor,
};

/// Starts a daemon the classic way (a new session, a fork, the parent exits, stdio detached)
/// and writes its pid to the file `$1`; `$2` prefixes the daemon (e.g. `env -i`). Then waits
/// for the file `$3` to exist before going on.
const START_DAEMON: &str = r#"
setsid $2 sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $! > "$0"' "$1"
echo started
while [ ! -e "$3" ]; do sleep 0.01; done
"#;

/// A command that starts a daemon, then, once told to go on, runs `then`.
struct DaemonStarter {
    dir: tempfile::TempDir,
    spec: CommandSpec,
}

impl DaemonStarter {
    fn new(then: &str, env_prefix: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = sh(&format!("{START_DAEMON}{then}"))
            .arg("sh")
            .arg(dir.path().join("daemon.pid"))
            .arg(env_prefix)
            .arg(dir.path().join("go"))
            .grace(PATIENCE);
        DaemonStarter { dir, spec }
    }

    /// Waits for the daemon to run, tells the command to go on, and returns the daemon's pid.
    fn start(&self, running: &Running) -> i32 {
        read_until(running, "started");
        let daemon = read_pid_file(&self.dir.path().join("daemon.pid"));
        wait_for(|| running_as(daemon, "sleep"), "the daemon to run");
        std::fs::write(self.dir.path().join("go"), "").unwrap();
        daemon
    }
}

fn run_daemon_starter(supervisor: &Supervisor, then: &str, env_prefix: &str) -> (Outcome, i32) {
    let starter = DaemonStarter::new(then, env_prefix);
    let running = supervisor
        .spawn(starter.spec.clone().time_limit(Duration::from_secs(2)))
        .unwrap();
    let daemon = starter.start(&running);
    let (outcome, _) = finish(running);
    (outcome, daemon)
}

#[test]
fn a_setsid_daemon_is_killed_when_its_command_ends_normally() {
    for memory in [MemoryPreference::Auto, MemoryPreference::RssWatch] {
        let (outcome, daemon) = run_daemon_starter(&supervisor_with(memory), "exit 0", "");
        assert_eq!(outcome.exit, Exit::Code(0));
        assert_eq!(outcome.limit, None);
        assert_eq!(outcome.leftovers_killed, 1, "{memory:?}");
        assert!(
            gone(daemon, "sleep"),
            "{memory:?}: daemon {daemon} left running or unreaped"
        );
    }
}

#[test]
fn a_setsid_daemon_is_killed_when_its_command_hits_the_time_limit() {
    for memory in [MemoryPreference::Auto, MemoryPreference::RssWatch] {
        let (outcome, daemon) = run_daemon_starter(&supervisor_with(memory), "sleep 300", "");
        assert_eq!(outcome.limit, Some(Limit::Time));
        assert_eq!(outcome.exit, Exit::Signal(15));
        assert!(
            gone(daemon, "sleep"),
            "{memory:?}: daemon {daemon} left running or unreaped"
        );
    }
}

#[test]
fn a_daemon_that_clears_its_environment_is_found_through_the_cgroup() {
    let supervisor = supervisor();
    if supervisor.memory_strategy() == MemoryStrategy::RssWatch {
        cannot_run_without("a writable memory cgroup, where a daemon without the token is found");
        return;
    }
    // Only commands with a memory limit get a cgroup of their own.
    let starter = DaemonStarter::new("exit 0", "env -i");
    let running = supervisor
        .spawn(
            starter
                .spec
                .clone()
                .time_limit(Duration::from_secs(2))
                .memory_limit(1 << 30),
        )
        .unwrap();
    let daemon = starter.start(&running);
    let (outcome, _) = finish(running);
    assert_eq!(outcome.exit, Exit::Code(0));
    assert!(
        gone(daemon, "sleep"),
        "daemon {daemon} left running or unreaped"
    );
}

#[test]
fn killing_one_commands_leftovers_leaves_another_command_alone() {
    for memory in [MemoryPreference::Auto, MemoryPreference::RssWatch] {
        let supervisor = supervisor_with(memory);
        let (first, second) = (
            DaemonStarter::new("exit 0", ""),
            DaemonStarter::new("sleep 300", ""),
        );
        let second_running = supervisor.spawn(second.spec.clone()).unwrap();
        let second_daemon = second.start(&second_running);

        let first_running = supervisor.spawn(first.spec.clone()).unwrap();
        let first_daemon = first.start(&first_running);
        let (first_outcome, _) = finish(first_running);
        assert_eq!(first_outcome.leftovers_killed, 1);
        assert!(gone(first_daemon, "sleep"), "{memory:?}");

        assert!(
            running_as(second_daemon, "sleep"),
            "{memory:?}: the other command's daemon was killed"
        );
        assert!(
            running_as(second_running.pid() as i32, "sh"),
            "{memory:?}: the other command was killed"
        );
        second_running.stop_handle().stop();
        let second_outcome = second_running.wait().unwrap();
        assert!(second_outcome.stopped);
        assert!(gone(second_daemon, "sleep"), "{memory:?}");
    }
}

#[test]
fn eight_concurrent_commands_each_get_their_own_outcome() {
    let supervisor = supervisor();
    let workers: Vec<_> = (0..8)
        .map(|code| {
            let supervisor = supervisor.clone();
            std::thread::spawn(move || {
                let script = format!("sleep 300 & exit {code}");
                let (outcome, _) = finish(supervisor.spawn(sh(&script).grace(PATIENCE)).unwrap());
                (code, outcome)
            })
        })
        .collect();
    for worker in workers {
        let (code, outcome) = worker.join().unwrap();
        assert_eq!(outcome.exit, Exit::Code(code));
        assert_eq!(outcome.leftovers_killed, 1);
    }
}
