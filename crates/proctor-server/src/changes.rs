//! Other servers' writes, as this server's wake-ups: a thread follows the store's change feed (PostgreSQL's
//! `LISTEN`) and wakes the waiters each change concerns, so a claim held here is woken by a job submitted to another
//! server sharing the database at once, not at the end of its hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use proctor_store::{Change, ChangeFeed, Store};

use crate::dispatch::Wakers;

/// How long one wait on the feed lasts before the thread looks whether the server is stopping.
const POLL: Duration = Duration::from_millis(500);
/// How long after a lost feed the thread follows again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The thread following the feed; it stops when this is dropped.
pub(crate) struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Follows the store's changes on a thread of its own, when the store has a feed (it blocks: call it where
/// blocking is allowed).
pub(crate) fn follow(
    store: Arc<dyn Store>,
    wakers: Arc<Wakers>,
) -> Result<Option<Follower>, proctor_store::StoreError> {
    let Some(feed) = store.follow_changes()? else {
        return Ok(None);
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("proctor-changes".into())
        .spawn(move || run(feed, &*store, &wakers, &stopping))
        .map_err(|source| proctor_store::StoreError::Database {
            doing: "starting the thread that follows other servers' changes",
            source: proctor_store::DatabaseError::new(source, false),
        })?;
    Ok(Some(Follower {
        stop,
        thread: Some(thread),
    }))
}

fn run(mut feed: Box<dyn ChangeFeed>, store: &dyn Store, wakers: &Wakers, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match feed.next_changes(POLL) {
            Ok(changes) => changes.iter().for_each(|change| wakers.apply(change)),
            Err(error) => {
                // Changes may have been missed meanwhile; the waiters they concerned see them when their waits end.
                eprintln!(
                    "proctor server: following other servers' changes: {error}; following again"
                );
                std::thread::sleep(RECONNECT_PAUSE);
                match store.follow_changes() {
                    Ok(Some(again)) => feed = again,
                    Ok(None) => return,
                    Err(error) => eprintln!("proctor server: {error}"),
                }
            }
        }
    }
}

impl Wakers {
    /// Wakes the waiters `change` concerns, as this server's own write would have.
    pub(crate) fn apply(&self, change: &Change) {
        match change {
            Change::Queue(queue) => self.wake(queue),
            Change::Job(job_id) => self.job_changed(job_id),
            Change::Stream(job_id) => self.wake_job(job_id),
            Change::Phase(job_id) => self.phase_changed(job_id),
            Change::Agent(agent_id) => self.wake_agent(agent_id),
        }
    }
}
