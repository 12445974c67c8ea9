//! Time and no-output limits, the grace period, and stop handles, against real process trees.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{finish, gone, pids, read_until, sh, supervisor, PATIENCE};
use proctor_supervisor::{Exit, Limit};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// A shell with a sleeping child and a sleeping grandchild, printing their pids.
const TREE_OF_SLEEPERS: &str = r#"
sleep 300 & echo "child $!"
sh -c 'sleep 300 & echo "grandchild $!"; wait' &
echo ready
wait
"#;

#[test]
fn the_time_limit_kills_a_tree_of_sleepers() {
    let spec = sh(TREE_OF_SLEEPERS)
        .time_limit(Duration::from_millis(500))
        .grace(PATIENCE);
    let (outcome, stdout) = finish(supervisor().spawn(spec).unwrap());
    assert_eq!(outcome.limit, Some(Limit::Time));
    assert_eq!(outcome.exit, Exit::Signal(SIGTERM));
    assert!(!outcome.stopped);
    let sleepers = [pids(&stdout, "child "), pids(&stdout, "grandchild ")].concat();
    assert_eq!(sleepers.len(), 2, "{stdout}");
    assert!(sleepers.iter().all(|&pid| gone(pid, "sleep")), "{stdout}");
    // The grandchild's shell and both sleepers.
    assert_eq!(outcome.leftovers_killed, 3);
    assert!(outcome.duration >= Duration::from_millis(500));
}

#[test]
fn the_no_output_limit_fires_on_silence() {
    let spec = sh("echo started; sleep 300").no_output_limit(Duration::from_millis(300));
    let (outcome, stdout) = finish(supervisor().spawn(spec).unwrap());
    assert_eq!(outcome.limit, Some(Limit::NoOutput));
    assert_eq!(outcome.exit, Exit::Signal(SIGTERM));
    assert_eq!(stdout, "started\n");
}

#[test]
fn steady_output_keeps_the_no_output_limit_away() {
    let script = "for i in 1 2 3 4 5 6 7 8; do echo $i >&2; sleep 0.1; done";
    let spec = sh(script).no_output_limit(Duration::from_secs(5));
    let (outcome, _) = finish(supervisor().spawn(spec).unwrap());
    assert_eq!(outcome.limit, None);
    assert!(outcome.exit.success());
}

#[test]
fn a_process_ignoring_sigterm_gets_the_grace_period_then_sigkill() {
    let grace = Duration::from_secs(1);
    let spec = sh("trap '' TERM; echo ready; sleep 300; echo survived").grace(grace);
    let running = supervisor().spawn(spec).unwrap();
    read_until(&running, "ready");
    running.stop_handle().stop();
    let (outcome, stdout) = finish(running);
    assert!(outcome.stopped);
    assert_eq!(outcome.limit, None);
    assert_eq!(outcome.exit, Exit::Signal(SIGKILL));
    assert!(outcome.duration >= grace, "{outcome:?}");
    // "ready" was read before; nothing came after it.
    assert_eq!(stdout, "");
}

#[test]
fn a_process_that_exits_on_sigterm_is_not_waited_for() {
    let grace = Duration::from_secs(120);
    let spec = sh("echo ready; sleep 300")
        .grace(grace)
        .time_limit(Duration::from_millis(300));
    let (outcome, _) = finish(supervisor().spawn(spec).unwrap());
    assert_eq!(outcome.limit, Some(Limit::Time));
    assert_eq!(outcome.exit, Exit::Signal(SIGTERM));
    assert!(outcome.duration < grace / 4, "{outcome:?}");
}

#[test]
fn a_stop_handle_stops_the_command_from_another_thread() {
    let running = supervisor()
        .spawn(sh(TREE_OF_SLEEPERS).grace(PATIENCE))
        .unwrap();
    let stdout = read_until(&running, "ready");
    let handle = running.stop_handle();
    std::thread::spawn(move || handle.clone().stop())
        .join()
        .unwrap();
    let outcome = running.wait().unwrap();
    assert!(outcome.stopped);
    assert_eq!(outcome.limit, None);
    assert_eq!(outcome.exit, Exit::Signal(SIGTERM));
    let sleepers = [pids(&stdout, "child "), pids(&stdout, "grandchild ")].concat();
    assert!(sleepers.iter().all(|&pid| gone(pid, "sleep")), "{stdout}");
}

#[test]
fn the_first_reason_to_stop_is_the_one_reported() {
    // It ignores SIGTERM, so the stop request arrives during the grace period.
    let spec = sh("trap '' TERM; echo ready; sleep 300")
        .time_limit(Duration::from_millis(200))
        .grace(Duration::from_secs(1));
    let running = supervisor().spawn(spec).unwrap();
    let handle = running.stop_handle();
    read_until(&running, "ready");
    std::thread::sleep(Duration::from_millis(400));
    handle.stop();
    let outcome = running.wait().unwrap();
    assert_eq!(outcome.limit, Some(Limit::Time));
    assert!(!outcome.stopped);
    assert_eq!(outcome.exit, Exit::Signal(SIGKILL));
}
