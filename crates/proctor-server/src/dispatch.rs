//! Wake-ups for long-polling requests, in this process only: claims wait per queue, heartbeats per agent (for a
//! cancel), stream reads per job (for new bytes or the job's end), reads of a job for a change of its state.
//!
//! A wake-up only says "look at the store again now"; the store stays the truth. Every waiter enables its wake-up
//! before it looks at the store, so a change between the look and the wait still wakes it. Several servers sharing
//! one database learn of each other's writes through the store's change feed where it has one
//! ([`crate::changes`]); without one, their waiters fall back to the end of their wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{watch, Notify};

/// The wake-ups of this server process.
#[derive(Debug)]
pub(crate) struct Wakers {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    /// Counts changes anywhere (a job queued, claimed or ended), for live pages of the whole lab.
    lab: watch::Sender<u64>,
    /// Heartbeats waiting for a cancel of one of their agent's jobs, by agent id.
    agents: KeyedWakers,
    /// Stream reads waiting for more bytes or the end of their job, by job id.
    jobs: KeyedWakers,
    /// Reads of a job waiting for its state to change, by job id; apart from `jobs`, so a log's many uploads do not
    /// wake them.
    job_states: KeyedWakers,
}

impl Default for Wakers {
    fn default() -> Wakers {
        Wakers {
            queues: Mutex::default(),
            lab: watch::Sender::new(0),
            agents: KeyedWakers::default(),
            jobs: KeyedWakers::default(),
            job_states: KeyedWakers::default(),
        }
    }
}

impl Wakers {
    /// A receiver that sees every later change to the lab's jobs (queued, claimed, released, ended).
    pub(crate) fn lab_changes(&self) -> watch::Receiver<u64> {
        self.lab.subscribe()
    }

    fn lab_changed(&self) {
        self.lab
            .send_modify(|changes| *changes = changes.wrapping_add(1));
    }

    /// The wake-ups of `queues`, made on first use.
    pub(crate) fn for_queues(&self, queues: &[String]) -> Vec<Arc<Notify>> {
        let mut map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|queue| Arc::clone(map.entry(queue.clone()).or_default()))
            .collect()
    }

    /// Wakes one claim waiting on `queue`, for the one job that became claimable there. Waking them all would have
    /// every idle agent of the queue race for the same row (each a write transaction), which measurably slowed
    /// dispatch with 10 idle agents. A woken claim that stops waiting passes the wake-up on to the next waiter
    /// (tokio's `Notify` does), and with nobody waiting the next claim to wait looks at once.
    pub(crate) fn wake(&self, queue: &str) {
        self.lab_changed();
        let map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = map.get(queue) {
            notify.notify_one();
        }
    }

    /// The wake-up a heartbeat of `agent_id` waits on for a cancel.
    pub(crate) fn for_agent(&self, agent_id: &str) -> Arc<Notify> {
        self.agents.get(agent_id)
    }

    /// Wakes the heartbeat of `agent_id` waiting for a cancel.
    pub(crate) fn wake_agent(&self, agent_id: &str) {
        self.agents.wake(agent_id);
    }

    /// The wake-up a read of one of `job_id`'s streams waits on.
    pub(crate) fn for_job(&self, job_id: &str) -> Arc<Notify> {
        self.jobs.get(job_id)
    }

    /// Wakes the reads waiting on `job_id`'s streams: bytes arrived.
    pub(crate) fn wake_job(&self, job_id: &str) {
        self.jobs.wake(job_id);
    }

    /// The wake-up a read of job `job_id` waits on for a change of its state.
    pub(crate) fn for_job_state(&self, job_id: &str) -> Arc<Notify> {
        self.job_states.get(job_id)
    }

    /// Wakes the reads waiting on job `job_id`'s details: a phase started or ended (its state is the same).
    pub(crate) fn phase_changed(&self, job_id: &str) {
        self.job_states.wake(job_id);
    }

    /// Wakes everyone waiting on job `job_id`: its state changed (claimed, released, ended), which stream reads
    /// waiting for its end need to know too.
    pub(crate) fn job_changed(&self, job_id: &str) {
        self.lab_changed();
        self.job_states.wake(job_id);
        self.jobs.wake(job_id);
    }
}

/// Wake-ups by key that live only while someone waits: the map holds weak references, so the many agents and jobs
/// of a long-running server leave nothing behind once their waiters are gone.
#[derive(Debug, Default)]
struct KeyedWakers {
    map: Mutex<HashMap<String, Weak<Notify>>>,
}

impl KeyedWakers {
    /// The wake-up of `key`, shared with everyone waiting on it now.
    fn get(&self, key: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = map.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        map.retain(|_, notify| notify.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        map.insert(key.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes whoever waits on `key` now.
    fn wake(&self, key: &str) {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = map.get(key).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }
}
