//! What other threads tell a command's monitor thread: the root process exited, or a stop was
//! requested. Each sets its news and wakes the monitor through an eventfd.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rustix::event::EventfdFlags;
use rustix::process::{Pid, WaitId, WaitIdOptions, WaitIdStatus};

use crate::outcome::Exit;

/// How and when the command's own process exited, or why that could not be learnt.
pub(crate) struct RootExit {
    pub(crate) status: io::Result<Exit>,
    pub(crate) at: Instant,
}

/// News for one command's monitor thread.
pub(crate) struct Signals {
    wake: OwnedFd,
    stop_requested: AtomicBool,
    root_exit: Mutex<Option<RootExit>>,
}

impl Signals {
    pub(crate) fn new() -> io::Result<Self> {
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Signals {
            wake,
            stop_requested: AtomicBool::new(false),
            root_exit: Mutex::new(None),
        })
    }

    /// The eventfd that becomes readable when there is news.
    pub(crate) fn wake_fd(&self) -> &OwnedFd {
        &self.wake
    }

    fn wake(&self) {
        // Fails only when the counter would overflow, which needs 2^64 - 1 unread wake-ups.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Resets the eventfd after the monitor woke (it then looks at every piece of news).
    pub(crate) fn clear(&self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut counter);
    }

    pub(crate) fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }

    pub(crate) fn take_root_exit(&self) -> Option<RootExit> {
        self.root_exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn set_root_exit(&self, exit: RootExit) {
        *self
            .root_exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(exit);
        self.wake();
    }
}

/// Blocks until process `pid` (a child of this process) exits, and tells the monitor. The
/// process is left unreaped (`WNOWAIT`): its pid, and with it the process group id the
/// supervisor signals, cannot be reused until the monitor has cleaned up the whole tree.
pub(crate) fn watch_for_exit(pid: Pid, signals: Arc<Signals>) {
    let status = loop {
        match rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(Some(status)) => break exit_from(&status),
            Ok(None) => break Err(io::Error::other("waitid returned no status")),
            Err(errno) => break Err(errno.into()),
        }
    };
    signals.set_root_exit(RootExit {
        status,
        at: Instant::now(),
    });
}

fn exit_from(status: &WaitIdStatus) -> io::Result<Exit> {
    if let Some(code) = status.exit_status() {
        Ok(Exit::Code(code))
    } else if let Some(signal) = status.terminating_signal() {
        Ok(Exit::Signal(signal))
    } else {
        Err(io::Error::other(
            "waitid reported neither an exit code nor a signal",
        ))
    }
}
