//! `proctor`: the command-line front of Proctor.
//!
//! Argument parsing and presentation live here; the work is done by the
//! library crates below (`proctor-subunit`, `proctor-events`,
//! `proctor-formats`, and for the lab `proctor-server`, `proctor-agent`
//! and `proctor-client`).

mod archive;
mod cli;
mod client;
mod display;
mod error;
mod example;
mod follow;
mod input;
mod lab;
mod recipe;
mod repo;
mod run;
mod settings;
mod token;
mod toolbox;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;

/// mimalloc rather than glibc's allocator: decoding and summarising a stream
/// allocates a few small strings per test, and glibc's malloc and free were a
/// fifth of `proctor subunit stats` (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit statuses, documented in `--help`.
pub mod exit {
    /// Everything passed.
    pub const OK: u8 = 0;
    /// A test failed (or the stream reported a failure).
    pub const TESTS_FAILED: u8 = 1;
    /// The command could not do its work: bad arguments, unreadable input.
    pub const ERROR: u8 = 2;
    /// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Subunit(command) => toolbox::run(command),
        Command::Example(args) => example::run(args),
        Command::Run(args) => run::run(args),
        Command::List(args) => run::list(args),
        Command::Pool(cli::PoolCommand::Check { file }) => run::pool_check(&file),
        Command::Config(cli::ConfigCommand::List { json, project }) => {
            settings::list(&project.dir, json)
        }
        Command::Last { subunit, project } => repo::last(&project.dir, subunit),
        Command::Failing {
            list,
            subunit,
            project,
        } => repo::failing(&project.dir, list, subunit),
        Command::Slowest {
            by_worker: true,
            project,
            ..
        } => repo::time_by_worker(&project.dir),
        Command::Slowest { count, project, .. } => repo::slowest(&project.dir, count),
        Command::History { action, project } => {
            repo::history(&project.dir, action.unwrap_or(cli::HistoryAction::List))
        }
        Command::Load {
            files,
            partial,
            project,
        } => repo::load(&project.dir, &files, partial),
        Command::Server(args) => lab::server(args),
        Command::Agent(args) => lab::agent(args),
        Command::Up(args) => lab::up(args),
        Command::LabWorker { idle } => lab::lab_worker(Duration::from_secs(idle)),
        Command::LabBatch(args) => lab::lab_batch(&args),
        Command::Token(command) => token::run(command),
        Command::Store(command) => token::store(command),
        Command::Submit(args) => client::submit(args),
        Command::Status { id, json, remote } => client::status(&remote, &id, json),
        Command::Logs {
            id,
            follow,
            phase,
            remote,
        } => client::logs(&remote, &id, phase, follow),
        Command::Results {
            id,
            subunit,
            junit,
            remote,
        } => client::results(&remote, &id, subunit, junit.as_deref()),
        Command::Artifacts {
            id,
            output,
            max_expanded_bytes,
            remote,
        } => client::artifacts(&remote, &id, &output, max_expanded_bytes),
        Command::Cancel { id, remote } => client::cancel(&remote, &id),
        Command::Jobs(args) => client::jobs(&args),
        Command::Queues { json, remote } => client::queues(&remote, json),
        Command::Agents { json, remote } => client::agents(&remote, json),
        Command::Recipe(command) => recipe::run(command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError::BrokenPipe) => ExitCode::from(exit::OK),
        Err(error) => {
            eprintln!("{:?}", miette::Report::new(error));
            ExitCode::from(exit::ERROR)
        }
    }
}
