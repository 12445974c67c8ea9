//! Where a lab's store is, as `--store` and `PROCTOR_STORE` name it: a SQLite file in a data directory (the embedded
//! default) or a PostgreSQL database that several servers share.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use proctor_store::{Store, StoreError};
use proctor_store_postgres::{without_password, PostgresStore};
use proctor_store_sqlite::SqliteStore;

/// A store's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The SQLite file in this data directory (`sqlite:DIR`, or a bare directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

/// A `--store` value that names no store Proctor knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a store: give sqlite:DIR (a data directory) or a postgres://USER@HOST[:PORT]/DATABASE URL"
)]
pub struct UnknownStore(String);

impl FromStr for StoreLocation {
    type Err = UnknownStore;

    fn from_str(text: &str) -> Result<StoreLocation, UnknownStore> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        match text.strip_prefix("sqlite:") {
            Some("") => Err(UnknownStore(text.to_owned())),
            Some(dir) => Ok(StoreLocation::Sqlite(dir.into())),
            None if text.contains("://") || text.is_empty() => Err(UnknownStore(text.to_owned())),
            None => Ok(StoreLocation::Sqlite(text.into())),
        }
    }
}

impl StoreLocation {
    /// Opens the store, creating and migrating its schema as needed. It blocks (a PostgreSQL connection runs its
    /// own runtime): call it from a thread that may block, not from async code.
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(dir) => Arc::new(SqliteStore::open(dir)?),
            StoreLocation::Postgres(url) => Arc::new(PostgresStore::connect(url)?),
        })
    }
}

/// As messages show it: the directory, or the URL without its password.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(dir) => write!(f, "sqlite:{}", dir.display()),
            StoreLocation::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_show_without_passwords() {
        let parsed = |text: &str| text.parse::<StoreLocation>();
        assert_eq!(
            parsed("sqlite:/var/lib/proctor"),
            Ok(StoreLocation::Sqlite("/var/lib/proctor".into()))
        );
        assert_eq!(
            parsed("/srv/lab"),
            Ok(StoreLocation::Sqlite("/srv/lab".into()))
        );
        let url = "postgres://lab:s3cret@db.example:5433/proctor";
        let postgres = parsed(url).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(postgres, StoreLocation::Postgres(url.into()));
        assert_eq!(
            postgres.to_string(),
            "postgres://lab:***@db.example:5433/proctor"
        );
        assert_eq!(
            parsed("postgresql://lab@db/proctor")
                .map(|location| location.to_string())
                .as_deref(),
            Ok("postgresql://lab@db/proctor")
        );
        for bad in ["mysql://db/proctor", "sqlite:", ""] {
            let error = parsed(bad).expect_err(bad);
            assert!(error.to_string().contains("postgres://"), "{error}");
        }
    }
}
