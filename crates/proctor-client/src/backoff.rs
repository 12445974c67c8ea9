//! Pacing for requests the server could not take: waits that double from [`FIRST_WAIT`] up to a ceiling.

use std::time::{Duration, Instant};

use crate::ClientError;

/// The first wait after a failure.
pub const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between retries of a job's requests (uploads, artifacts, finish).
pub const MAX_JOB_WAIT: Duration = Duration::from_secs(5);

/// Doubling waits between retries, up to a ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits starting at [`FIRST_WAIT`] and doubling up to `max`.
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: FIRST_WAIT,
            max,
        }
    }

    /// The wait before the next retry; the one after is twice as long (up to the ceiling).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// A success: the next failure waits the first wait again.
    pub fn reset(&mut self) {
        self.next = FIRST_WAIT;
    }

    /// Sleeps for the next wait.
    pub fn sleep(&mut self) {
        std::thread::sleep(self.next_wait());
    }
}

/// Calls `attempt` until it succeeds or is refused, retrying with backoff while the server cannot be reached or
/// fails ([`ClientError::is_transient`]) for up to `limit` from the first try; then answers the last error.
pub fn retry<T>(
    limit: Duration,
    mut attempt: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let started = Instant::now();
    let mut backoff = Backoff::new(MAX_JOB_WAIT);
    loop {
        match attempt() {
            Err(error) if error.is_transient() && started.elapsed() < limit => backoff.sleep(),
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_start_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST_WAIT);
    }
}
