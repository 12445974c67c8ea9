//! `proctor token …`: bearer tokens, made in the lab's database directly (no server needed), so the first admin
//! token can exist before a server that requires one.

use std::io::{self, Write};
use std::path::Path;

use proctor_store::{Store, StoreError};
use proctor_store_sqlite::SqliteStore;

use crate::cli::TokenCommand;
use crate::error::CliError;
use crate::exit;
use crate::lab::data_dir;

/// Runs one `proctor token` command.
pub fn run(command: TokenCommand) -> Result<u8, CliError> {
    match command {
        TokenCommand::Create { role, queues, data } => {
            let dir = data_dir(&data)?;
            let issued = open(&dir)?
                .create_token(role, &queues, jiff::Timestamp::now())
                .map_err(|source| store_error(&dir, source))?;
            // The secret alone on standard output, for scripts; what it is, on standard error.
            println!("{}", issued.secret);
            eprintln!(
                "made {} token {}; its secret is shown only this once",
                issued.token.role, issued.token.id
            );
            Ok(exit::OK)
        }
        TokenCommand::List { data } => {
            let dir = data_dir(&data)?;
            let tokens = open(&dir)?
                .tokens()
                .map_err(|source| store_error(&dir, source))?;
            let mut out = io::stdout().lock();
            writeln!(
                out,
                "{:<36}  {:<6}  {:<28}  QUEUES",
                "ID", "ROLE", "CREATED"
            )?;
            for token in &tokens {
                let queues = if token.queues.is_empty() {
                    "all".to_owned()
                } else {
                    token.queues.join(",")
                };
                writeln!(
                    out,
                    "{:<36}  {:<6}  {:<28}  {queues}",
                    token.id,
                    token.role.as_str(),
                    token.created_at.to_string()
                )?;
            }
            out.flush()?;
            Ok(exit::OK)
        }
        TokenCommand::Revoke { id, data } => {
            let dir = data_dir(&data)?;
            open(&dir)?
                .revoke_token(&id)
                .map_err(|source| store_error(&dir, source))?;
            println!("revoked token {id}");
            Ok(exit::OK)
        }
    }
}

fn open(dir: &Path) -> Result<SqliteStore, CliError> {
    SqliteStore::open(dir).map_err(|source| store_error(dir, source))
}

fn store_error(dir: &Path, source: StoreError) -> CliError {
    CliError::Store {
        data_dir: dir.to_owned(),
        source: Box::new(source),
    }
}
