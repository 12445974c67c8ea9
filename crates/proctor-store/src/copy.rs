//! Moving a lab from one store to another (`proctor store copy`): every table of the schema, row by row, in an
//! order that satisfies its references, into a store that must be empty, so a second copy is refused instead of
//! doubling anything. Both backends keep the same tables and columns with the same meaning (times in microseconds
//! since the epoch, JSON as text, bytes as blobs), so a row moves as a list of plain [`Value`]s.

use crate::{Result, Store, StoreError};

/// A column's value as every backend stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer (also times, in microseconds, and flags, as 0 or 1).
    Integer(i64),
    /// Text (also JSON).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// One table as a copy moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// Its columns, in the order rows list their values.
    pub columns: &'static [&'static str],
    /// The columns that order its rows (its key), so paging through it sees every row once.
    pub order: &'static [&'static str],
    /// How many rows one page holds: few where a row may be large (attachments, artifacts).
    pub page: u32,
}

/// Every table, referenced tables first.
pub const TABLES: &[Table] = &[
    Table {
        name: "queues",
        columns: &["name", "created_at", "first_served_at"],
        order: &["name"],
        page: 1000,
    },
    Table {
        name: "agents",
        columns: &["id", "state", "images", "registered_at", "last_heartbeat"],
        order: &["id"],
        page: 1000,
    },
    Table {
        name: "agent_queues",
        columns: &["agent_id", "queue"],
        order: &["agent_id", "queue"],
        page: 1000,
    },
    Table {
        name: "jobs",
        columns: &[
            "seq",
            "id",
            "queue",
            "name",
            "priority",
            "definition",
            "state",
            "reason",
            "attempts",
            "max_attempts",
            "submitter",
            "held",
            "cancel_requested",
            "created_at",
            "started_at",
            "ended_at",
            "lease_expires_at",
            "agent_id",
            "recipe_script",
        ],
        order: &["seq"],
        page: 500,
    },
    Table {
        name: "phases",
        columns: &["job_id", "name", "started_at", "ended_at", "exit_status"],
        order: &["job_id", "name"],
        page: 1000,
    },
    Table {
        name: "stream_chunks",
        columns: &["job_id", "stream", "start_offset", "phase", "bytes"],
        order: &["job_id", "stream", "start_offset"],
        page: 200,
    },
    Table {
        name: "artifacts",
        columns: &["job_id", "name", "size", "blob"],
        order: &["job_id", "name"],
        page: 1,
    },
    Table {
        name: "attachments",
        columns: &["job_id", "tar_gz", "uploaded_at"],
        order: &["job_id"],
        page: 1,
    },
    Table {
        name: "recipes",
        columns: &["name", "script", "default_options", "queue", "updated_at"],
        order: &["name"],
        page: 1000,
    },
    Table {
        name: "tokens",
        columns: &["id", "secret_hash", "role", "queues", "created_at"],
        order: &["id"],
        page: 1000,
    },
    Table {
        name: "results_parsing",
        columns: &["job_id", "parsed_offset", "problem", "attempt"],
        order: &["job_id"],
        page: 1000,
    },
    Table {
        name: "job_tokens",
        columns: &["job_id", "secret_hash", "created_at"],
        order: &["job_id"],
        page: 1000,
    },
    Table {
        name: "superseded_job_tokens",
        columns: &["secret_hash", "job_id", "superseded_at"],
        order: &["secret_hash"],
        page: 1000,
    },
    Table {
        name: "job_attempts",
        columns: &[
            "job_id",
            "attempt",
            "agent_id",
            "claimed_at",
            "log_base",
            "results_base",
            "end_reason",
        ],
        order: &["job_id", "attempt"],
        page: 1000,
    },
    Table {
        name: "test_runs",
        columns: &[
            "seq",
            "job_id",
            "attempt",
            "test_id",
            "route_code",
            "retry",
            "status",
            "reason",
            "started_at",
            "ended_at",
            "duration_us",
            "agent_id",
            "tags",
        ],
        order: &["seq"],
        page: 1000,
    },
];

/// What a copy moved: rows per table, in [`TABLES`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Each table's name and how many rows it moved.
    pub rows: Vec<(&'static str, u64)>,
}

/// Copies everything in `from` into `to`, which must hold nothing yet ([`StoreError::NotEmpty`] otherwise: a
/// second copy is refused, never doubled). `progress` hears of each table as it is done.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    progress: &mut dyn FnMut(&'static str, u64),
) -> Result<CopyReport> {
    for table in TABLES {
        if !to.export_rows(table, 0, 1)?.is_empty() {
            return Err(StoreError::NotEmpty { table: table.name });
        }
    }
    let mut report = CopyReport::default();
    for table in TABLES {
        let mut moved = 0u64;
        loop {
            let rows = from.export_rows(table, moved, table.page)?;
            if rows.is_empty() {
                break;
            }
            to.import_rows(table, &rows)?;
            moved += rows.len() as u64;
        }
        to.finish_import(table)?;
        progress(table.name, moved);
        report.rows.push((table.name, moved));
    }
    Ok(report)
}
