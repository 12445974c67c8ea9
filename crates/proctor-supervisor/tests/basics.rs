//! Exit statuses, output capture, environment, standard input and spawn errors, against real
//! processes.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{finish, read_until, running_as, sh, supervisor, text, PATIENCE};
use proctor_supervisor::{CommandSpec, Exit, SpawnError, Stream};

#[test]
fn an_exit_code_is_reported() {
    let (outcome, _) = finish(supervisor().spawn(sh("exit 3")).unwrap());
    assert_eq!(outcome.exit, Exit::Code(3));
    assert!(!outcome.exit.success());
    assert_eq!(outcome.limit, None);
    assert!(!outcome.stopped);
    assert_eq!(outcome.leftovers_killed, 0);
}

#[test]
fn a_success_is_reported() {
    let (outcome, stdout) = finish(supervisor().spawn(sh("echo hello")).unwrap());
    assert!(outcome.exit.success());
    assert_eq!(stdout, "hello\n");
}

#[test]
fn a_terminating_signal_is_reported() {
    let (outcome, _) = finish(supervisor().spawn(sh("kill -USR1 $$")).unwrap());
    assert_eq!(outcome.exit, Exit::Signal(libc_sigusr1()));
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    let running = supervisor()
        .spawn(sh("echo out; echo err >&2; echo out2"))
        .unwrap();
    let (outcome, chunks) = running.wait_with_output().unwrap();
    assert!(outcome.exit.success());
    assert_eq!(text(&chunks, Stream::Stdout), "out\nout2\n");
    assert_eq!(text(&chunks, Stream::Stderr), "err\n");
}

#[test]
fn output_arrives_while_the_process_still_runs() {
    let running = supervisor().spawn(sh("printf partial; sleep 300")).unwrap();
    // No line end and no exit: the bytes must come anyway.
    assert_eq!(read_until(&running, "partial"), "partial");
    assert!(running_as(running.pid() as i32, "sleep") || running_as(running.pid() as i32, "sh"));
    running.stop_handle().stop();
    let outcome = running.wait().unwrap();
    assert!(outcome.stopped);
}

#[test]
fn chunks_are_timestamped_in_order() {
    let running = supervisor()
        .spawn(sh("echo one; sleep 0.2; echo two"))
        .unwrap();
    let (_, chunks) = running.wait_with_output().unwrap();
    assert!(chunks.len() >= 2, "{chunks:?}");
    assert!(chunks.windows(2).all(|pair| pair[0].at <= pair[1].at));
}

#[test]
fn large_output_is_delivered_completely() {
    let running = supervisor().spawn(sh("head -c 3000000 /dev/zero")).unwrap();
    let (outcome, chunks) = running.wait_with_output().unwrap();
    assert!(outcome.exit.success());
    assert_eq!(
        chunks.iter().map(|c| c.data.len()).sum::<usize>(),
        3_000_000
    );
}

#[test]
fn environment_working_directory_and_stdin_are_passed() {
    let dir = std::env::temp_dir();
    let spec = sh("echo \"$GREETING\"; echo \"${HOME-unset}\"; pwd; cat")
        .env("GREETING", "hi")
        .env_remove("HOME")
        .cwd(&dir)
        .stdin_bytes(&b"from stdin"[..]);
    let (outcome, stdout) = finish(supervisor().spawn(spec).unwrap());
    assert!(outcome.exit.success());
    let expected_dir = dir.canonicalize().unwrap();
    assert_eq!(
        stdout,
        format!("hi\nunset\n{}\nfrom stdin", expected_dir.display())
    );
}

#[test]
fn each_command_is_marked_with_its_own_token() {
    let supervisor = supervisor();
    let token = |_| {
        let (_, stdout) = finish(
            supervisor
                .spawn(sh("echo $PROCTOR_SUPERVISOR_TOKEN"))
                .unwrap(),
        );
        stdout
    };
    let (first, second) = (token(1), token(2));
    assert!(!first.trim().is_empty());
    assert_ne!(first, second);
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let error = supervisor()
        .spawn(CommandSpec::new("proctor-no-such-program"))
        .unwrap_err();
    assert!(
        matches!(error, SpawnError::NotFound { ref program } if program == "proctor-no-such-program")
    );
    assert_eq!(
        error.to_string(),
        "program `proctor-no-such-program` not found (no such file, or not on PATH)"
    );
}

#[test]
fn a_missing_working_directory_is_a_clear_error() {
    let error = supervisor()
        .spawn(sh("true").cwd("/no/such/dir"))
        .unwrap_err();
    assert!(
        matches!(error, SpawnError::NoSuchDirectory { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("/no/such/dir"));
}

#[test]
fn a_kill_from_outside_is_reported_as_that_signal() {
    let running = supervisor()
        .spawn(sh("echo started; exec sleep 300"))
        .unwrap();
    read_until(&running, "started");
    let pid = rustix::process::Pid::from_raw(running.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let outcome = running.wait().unwrap();
    assert_eq!(outcome.exit, Exit::Signal(9));
    assert_eq!(outcome.limit, None);
    assert!(!outcome.stopped);
    assert!(outcome.duration < PATIENCE);
}

#[test]
fn stopping_a_finished_command_does_nothing() {
    let running = supervisor().spawn(sh("exit 0")).unwrap();
    let handle = running.stop_handle();
    let outcome = running.wait().unwrap();
    handle.stop();
    assert!(outcome.exit.success());
    assert!(!outcome.stopped);
}

fn libc_sigusr1() -> i32 {
    rustix::process::Signal::USR1.as_raw()
}
