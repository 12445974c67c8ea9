//! Schema migrations: numbered SQL files applied in order, each recorded in `schema_migrations`.

use postgres::Client;

use proctor_store::StoreError;

use crate::database_error;

/// One schema change.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append new ones; never edit one that shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "work_streams",
        sql: include_str!("../migrations/0002_work_streams.sql"),
    },
];

/// The newest schema version this build knows.
pub(crate) fn known_version() -> i64 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// The advisory lock that migrating servers take: "proctor" in ASCII. Advisory locks are per database, so this
/// only orders servers that share one.
const MIGRATION_LOCK: i64 = 0x0070_726f_6374_6f72;

/// Brings the database's schema up to date, in one transaction under a transaction-scoped advisory lock: several
/// servers starting at once take turns, and each migration is applied once (the later ones find it recorded). A
/// failed migration rolls back, leaving the schema as it was; a database of a newer schema is refused.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let during = |doing: &'static str| {
        move |source| StoreError::Database {
            doing,
            source: database_error(source),
        }
    };
    let mut transaction = client
        .transaction()
        .map_err(during("starting the schema migration"))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(during("waiting for other servers' schema migrations"))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at BIGINT NOT NULL
             )",
        )
        .map_err(during("creating the schema_migrations table"))?;
    // A statement after the lock: under READ COMMITTED it sees what the server that held the lock committed.
    let current: i64 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(during("reading the schema version"))?;
    let known = known_version();
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|migration| migration.version > current)
    {
        let failed = |source| StoreError::Migration {
            version: migration.version,
            name: migration.name,
            source: database_error(source),
        };
        transaction.batch_execute(migration.sql).map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.name,
                    &jiff::Timestamp::now().as_microsecond(),
                ],
            )
            .map_err(failed)?;
    }
    transaction
        .commit()
        .map_err(during("committing the schema migration"))
}
