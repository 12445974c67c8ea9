//! Changes to the lab as every process sharing a database sees them: what a server's waiters wait for (a job
//! queued, a job's state, a stream's bytes, a phase, a cancel for an agent). A backend that can tell other processes
//! (PostgreSQL's `NOTIFY`) sends one with each write it commits; each server follows them
//! ([`Store::follow_changes`](crate::Store::follow_changes)) and wakes its own waiters, so a job submitted to one
//! server wakes an agent's claim held on another at once.

use std::time::Duration;

use crate::Result;

/// One change, as small as a notification payload can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A job became claimable on this queue (submitted, released, requeued).
    Queue(String),
    /// A job's state changed (claimed, ended, cancel requested).
    Job(String),
    /// Bytes were appended to one of the job's streams.
    Stream(String),
    /// A phase of the job started or ended.
    Phase(String),
    /// A job of this agent was asked to cancel (its heartbeat may be waiting for that).
    Agent(String),
}

impl Change {
    /// The change as a notification payload: a letter, a colon, the name.
    pub fn encode(&self) -> String {
        let (kind, name) = match self {
            Change::Queue(name) => ('q', name),
            Change::Job(name) => ('j', name),
            Change::Stream(name) => ('s', name),
            Change::Phase(name) => ('p', name),
            Change::Agent(name) => ('a', name),
        };
        format!("{kind}:{name}")
    }

    /// A payload [`encode`](Change::encode) made; `None` for anything else (a newer Proctor's kind of change).
    pub fn decode(payload: &str) -> Option<Change> {
        let (kind, name) = payload.split_once(':')?;
        let name = name.to_owned();
        Some(match kind {
            "q" => Change::Queue(name),
            "j" => Change::Job(name),
            "s" => Change::Stream(name),
            "p" => Change::Phase(name),
            "a" => Change::Agent(name),
            _ => return None,
        })
    }
}

/// The changes every process commits to the database, in the order they were committed.
pub trait ChangeFeed: Send {
    /// The changes that arrived, waiting up to `timeout` for the first; empty when none came. An error means the
    /// feed's connection was lost: changes may have been missed, and a new feed should be followed.
    fn next_changes(&mut self, timeout: Duration) -> Result<Vec<Change>>;
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn changes_survive_their_payload() {
        for change in [
            Change::Queue("lab:x86".into()),
            Change::Job("5f0c".into()),
            Change::Stream("5f0c".into()),
            Change::Phase("5f0c".into()),
            Change::Agent("a:1".into()),
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode("z:what"), None);
        assert_eq!(Change::decode("no colon"), None);
    }
}
