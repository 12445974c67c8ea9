//! The commands that work on the lab's store directly, no server needed: `proctor token …` (bearer tokens, so the
//! first admin token can exist before a server that requires one) and `proctor store copy`.

use std::io::{self, Write};
use std::sync::Arc;

use proctor_server::StoreLocation;
use proctor_store::{Store, StoreError};

use crate::cli::{StoreCommand, TokenCommand};
use crate::error::CliError;
use crate::exit;
use crate::lab::store_location;

/// Runs one `proctor token` command.
pub fn run(command: TokenCommand) -> Result<u8, CliError> {
    match command {
        TokenCommand::Create { role, queues, data } => {
            let dir = store_location(&data)?;
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
            let dir = store_location(&data)?;
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
            let dir = store_location(&data)?;
            open(&dir)?
                .revoke_token(&id)
                .map_err(|source| store_error(&dir, source))?;
            println!("revoked token {id}");
            Ok(exit::OK)
        }
    }
}

/// Runs one `proctor store` command.
pub fn store(command: StoreCommand) -> Result<u8, CliError> {
    let StoreCommand::Copy { from, to } = command;
    let source = open(&from)?;
    let target = open(&to)?;
    let report = proctor_store::copy::copy(&*source, &*target, &mut |table, rows| {
        eprintln!("copied {table}: {rows} rows");
    })
    .map_err(|error| match error {
        StoreError::NotEmpty { .. } => store_error(&to, error),
        other => CliError::Copy {
            from: from.to_string(),
            to: to.to_string(),
            source: Box::new(other),
        },
    })?;
    let rows: u64 = report.rows.iter().map(|(_, rows)| rows).sum();
    println!("copied {rows} rows from {from} to {to}");
    Ok(exit::OK)
}

fn open(store: &StoreLocation) -> Result<Arc<dyn Store>, CliError> {
    store.open().map_err(|source| store_error(store, source))
}

fn store_error(store: &StoreLocation, source: StoreError) -> CliError {
    CliError::Store {
        store: store.to_string(),
        source: Box::new(source),
    }
}
