//! Changes every server sharing the database hears of: each write transaction that changes something a waiter may
//! wait for sends its [`Change`]s with `pg_notify` just before it commits (PostgreSQL delivers them at the commit,
//! and not at all if the transaction rolls back), and [`Feed`] follows them with `LISTEN` on a connection of its
//! own.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use proctor_store::{Change, ChangeFeed, Result, StoreError};

use crate::{failure, Connection};

/// The channel changes are sent on. Channels are per database, so labs on other databases never hear them.
macro_rules! channel {
    () => {
        "proctor_changes"
    };
}

/// The channel, for `LISTEN`.
pub(crate) const CHANNEL: &str = channel!();

/// The statement that sends a transaction's changes, given as an array of payloads.
pub(crate) const NOTIFY: &str = concat!(
    "SELECT pg_notify('",
    channel!(),
    "', payload) FROM unnest($1::TEXT[]) AS payload"
);

/// PostgreSQL refuses payloads of 8000 bytes or more (and with them the whole transaction): a change naming a
/// queue or agent that long is not sent, and its waiters see it when their waits end.
const MAX_PAYLOAD: usize = 7999;

/// The payloads of a transaction's changes: each once, in the order they were made, none too long to send.
pub(crate) fn payloads(changes: &[Change]) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::with_capacity(changes.len());
    for payload in changes.iter().map(Change::encode) {
        if payload.len() <= MAX_PAYLOAD && !payloads.contains(&payload) {
            payloads.push(payload);
        }
    }
    payloads
}

/// A connection listening on [`CHANNEL`].
pub(crate) struct Feed {
    pub(crate) connection: Connection,
}

impl ChangeFeed for Feed {
    fn next_changes(&mut self, timeout: Duration) -> Result<Vec<Change>> {
        let doing = "following other servers' changes";
        let fail = |error| failure(doing, error);
        let client = self.connection.parts().0;
        let mut payloads = Vec::new();
        {
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(timeout).next().map_err(fail)?;
            if let Some(first) = first {
                payloads.push(first.payload().to_owned());
                let mut pending = notifications.iter();
                while let Some(notification) = pending.next().map_err(fail)? {
                    payloads.push(notification.payload().to_owned());
                }
            }
        }
        if payloads.is_empty() {
            // The iterators say "nothing" both when nothing came and when the connection is gone: ask the server,
            // so a lost connection is an error (and the caller follows again) rather than a feed gone silent.
            client.simple_query("").map_err(fail)?;
        }
        Ok(payloads
            .iter()
            .filter_map(|payload| Change::decode(payload))
            .collect())
    }
}

/// Opens a feed on `config`'s database.
pub(crate) fn follow(config: &postgres::Config) -> Result<Feed, StoreError> {
    let doing = "starting to follow other servers' changes";
    let mut client = config
        .connect(postgres::NoTls)
        .map_err(|error| failure(doing, error))?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|error| failure(doing, error))?;
    Ok(Feed {
        connection: Connection::new(client),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transactions_payloads_are_sent_once_each_and_never_too_long() {
        let changes = [
            Change::Job("j1".into()),
            Change::Queue("lab".into()),
            Change::Job("j1".into()),
            Change::Agent("a".repeat(MAX_PAYLOAD)),
        ];
        assert_eq!(payloads(&changes), ["j:j1", "q:lab"]);
    }
}
