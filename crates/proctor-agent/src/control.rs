//! What reaches a running job from outside its phases: a user's cancel (through the heartbeat) and the loss of its
//! lease. Both stop the running phase's whole process tree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use proctor_supervisor::StopHandle;

use crate::client::ServerClient;

/// The shared switchboard between the heartbeat thread and the thread running the job's phases.
#[derive(Debug, Default)]
pub(crate) struct JobControl {
    cancelled: AtomicBool,
    lost: AtomicBool,
    /// The running phase, when cancel may stop it (`cleanup` runs to its end even after a cancel).
    running: Mutex<Option<StopHandle>>,
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

    /// Records the phase now running; stops it at once when a cancel came before it started.
    pub(crate) fn set_running(&self, handle: StopHandle) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_cancelled() || self.is_lost() {
            handle.stop();
        }
        *running = Some(handle);
    }

    /// The phase ended (or must not be stopped by a cancel).
    pub(crate) fn clear_running(&self) {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn stop_running(&self) {
        if let Some(handle) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            handle.stop();
        }
    }
}

/// Renews the job's lease every `interval` while the job runs, and passes on cancels.
pub(crate) struct Heartbeat {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts heartbeating for `job_id`.
    pub(crate) fn start(
        client: ServerClient,
        job_id: String,
        control: Arc<JobControl>,
        interval: Duration,
    ) -> Heartbeat {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || loop {
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => beat(&client, &job_id, &control),
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        });
        Heartbeat { stop, thread }
    }

    /// Stops heartbeating.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// One heartbeat. A server that cannot be reached is tried again next time: the lease outlasts several beats.
fn beat(client: &ServerClient, job_id: &str, control: &JobControl) {
    let Ok(reply) = client.heartbeat(None) else {
        return;
    };
    if reply.cancel_requested.iter().any(|id| id == job_id) {
        control.cancel();
    } else if !reply.renewed.iter().any(|id| id == job_id) {
        control.lose();
    }
}
