//! Schema migrations: numbered SQL files applied in order, each recorded in `schema_migrations`.

use rusqlite::{Connection, TransactionBehavior};

use proctor_store::StoreError;

use crate::{database_error, During};

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
        name: "results_attachments_job_tokens",
        sql: include_str!("../migrations/0002_results_attachments_job_tokens.sql"),
    },
    Migration {
        version: 3,
        name: "superseded_job_tokens",
        sql: include_str!("../migrations/0003_superseded_job_tokens.sql"),
    },
    Migration {
        version: 4,
        name: "job_list_indexes",
        sql: include_str!("../migrations/0004_job_list_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "test_runs_and_attempts",
        sql: include_str!("../migrations/0005_test_runs_and_attempts.sql"),
    },
    Migration {
        version: 6,
        name: "test_history_index",
        sql: include_str!("../migrations/0006_test_history_index.sql"),
    },
    Migration {
        version: 7,
        name: "work_streams",
        sql: include_str!("../migrations/0007_work_streams.sql"),
    },
];

/// Brings the database's schema up to date. Runs in one immediate transaction, so two processes opening the same
/// file at once apply each migration once, and a failed migration leaves the schema as it was.
pub(super) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .during("starting the schema migration")?;
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at INTEGER NOT NULL
             )",
        )
        .during("creating the schema_migrations table")?;
    let current: i64 = transaction
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )
        .during("reading the schema version")?;
    let known = MIGRATIONS.last().map_or(0, |migration| migration.version);
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
        transaction.execute_batch(migration.sql).map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                (
                    migration.version,
                    migration.name,
                    jiff::Timestamp::now().as_microsecond(),
                ),
            )
            .map_err(failed)?;
    }
    transaction
        .commit()
        .during("committing the schema migration")
}
