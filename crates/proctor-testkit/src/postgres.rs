//! A fresh PostgreSQL database per test, on the cluster `scripts/test` starts for the run (a new `initdb` under
//! `target/`, run as the `postgres` user, on a free loopback port) and names in `PROCTOR_TEST_POSTGRES`.

use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable with the test cluster's admin URL (set by `scripts/test`).
pub const POSTGRES_ENV: &str = "PROCTOR_TEST_POSTGRES";

/// An empty database of its own, dropped (with any connection still open to it) when this is dropped.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    /// The database's URL, for a store or a `proctor server --store`.
    pub url: String,
}

impl PostgresDatabase {
    /// Creates a database with a name no other test of this run has.
    pub fn create() -> PostgresDatabase {
        let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_ENV} is not set: run ./scripts/test, which starts a PostgreSQL for the tests, or set it to \
                 the admin URL of a throwaway cluster (postgres://postgres@127.0.0.1:PORT/postgres)"
            )
        });
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "proctor_test_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        admin(&admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        PostgresDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one statement on the cluster's admin database, from a thread of its own: the blocking client runs a
/// runtime of its own, which cannot start inside a test's async runtime.
fn admin(admin_url: &str, statement: &str) {
    let (url, statement) = (admin_url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|error| panic!("cannot reach the test PostgreSQL at {url}: {error}"));
        client
            .batch_execute(&statement)
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    })
    .join()
    .unwrap();
}
