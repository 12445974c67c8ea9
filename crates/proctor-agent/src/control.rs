//! What reaches a running job from outside its phases: a user's cancel (through the heartbeat) and the loss of its
//! lease. Both stop the running phase's whole process tree and end a reservation's hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proctor_supervisor::StopHandle;

use crate::client::ServerClient;

/// The shared switchboard between the heartbeat thread and the thread running the job's phases.
#[derive(Debug, Default)]
pub(crate) struct JobControl {
    cancelled: AtomicBool,
    lost: AtomicBool,
    /// The running phase, when cancel may stop it (`cleanup` runs to its end even after a cancel).
    running: Mutex<Option<StopHandle>>,
    /// Wakes a reservation's hold when the job is cancelled or lost.
    stopped: Condvar,
}

impl JobControl {
    /// A user asked to cancel the job: stop the running phase.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.stop_running();
    }

    /// The server no longer counts the job as ours (the lease lapsed): stop working on it.
    pub(crate) fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.stop_running();
    }

    /// Whether a user asked to cancel the job.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Whether the job was taken from this agent.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn is_stopped(&self) -> bool {
        self.is_cancelled() || self.is_lost()
    }

    /// Records the phase now running; stops it at once when a cancel came before it started.
    pub(crate) fn set_running(&self, handle: StopHandle) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_stopped() {
            handle.stop();
        }
        *running = Some(handle);
    }

    /// The phase ended (or must not be stopped by a cancel).
    pub(crate) fn clear_running(&self) {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Waits for `hold` to pass; `false` when a cancel or the lost lease ended the wait early.
    pub(crate) fn hold(&self, hold: Duration) -> bool {
        let deadline = Instant::now() + hold;
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.is_stopped() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            running = self
                .stopped
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn stop_running(&self) {
        // Under the lock, so a hold between its check and its wait cannot miss the wake-up.
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = running.as_ref() {
            handle.stop();
        }
        self.stopped.notify_all();
    }
}

/// Renews the job's lease while the job runs, and passes on cancels the moment the server has one.
pub(crate) struct Heartbeat {
    stop: Sender<()>,
}

impl Heartbeat {
    /// Starts heartbeating for `job_id`: each heartbeat asks the server to hold its reply for up to `interval`
    /// until a cancel comes, so a cancel arrives at once while the lease is still renewed every `interval`.
    pub(crate) fn start(
        client: ServerClient,
        job_id: String,
        control: Arc<JobControl>,
        interval: Duration,
    ) -> Heartbeat {
        let (stop, stopped) = mpsc::channel();
        std::thread::spawn(move || loop {
            let started = Instant::now();
            beat(&client, &job_id, &control, interval);
            // A reply before the wait ended without news (an old server that ignores the wait, an unreachable one,
            // or a cancel already passed on) must not make the loop spin: the rest of the interval is slept.
            let rest = interval.saturating_sub(started.elapsed());
            match stopped.recv_timeout(rest) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        });
        Heartbeat { stop }
    }

    /// Stops heartbeating. A heartbeat the server holds is not waited for: the thread ends once it is answered, and
    /// still passes on a cancel or a lost lease that answer brings (harmless: the job is over by then).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// One heartbeat. A server that cannot be reached is tried again next time: the lease outlasts several beats.
fn beat(client: &ServerClient, job_id: &str, control: &JobControl, wait: Duration) {
    let Ok(reply) = client.heartbeat(Some(wait)) else {
        return;
    };
    if reply.cancel_requested.iter().any(|id| id == job_id) {
        control.cancel();
    } else if !reply.renewed.iter().any(|id| id == job_id) {
        control.lose();
    }
}
