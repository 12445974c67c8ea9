//! Wake-ups for long-polling claims: one [`Notify`] per queue name, in this process only.
//!
//! The claim itself is the store's atomic statement; a wake-up only says "try again now". A claim enables its
//! wake-ups before it tries the store, so a job submitted between the try and the wait still wakes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The per-queue wake-ups of this server process.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    /// The wake-ups of `queues`, made on first use.
    pub(crate) fn for_queues(&self, queues: &[String]) -> Vec<Arc<Notify>> {
        let mut map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|queue| Arc::clone(map.entry(queue.clone()).or_default()))
            .collect()
    }

    /// Wakes every claim waiting on `queue`.
    pub(crate) fn wake(&self, queue: &str) {
        let map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = map.get(queue) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiting claim (after the reaper requeued jobs whose queues it does not report).
    pub(crate) fn wake_all(&self) {
        let map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        for notify in map.values() {
            notify.notify_waiters();
        }
    }
}
