//! The command line, as clap parses it.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proctor::config::{parse, Bytes};
use proctor_api::{JobState, Role};
use proctor_archive::Limits;
use proctor_job::Phase;
use proctor_server::StoreLocation;
use proctor_subunit::Status;

const EXIT_CODES: &str = "\
Exit status:
  0    everything passed
  1    a test failed (the stream reported a failure)
  2    the command could not do its work: bad arguments, unreadable input,
       tests that could not be found, listed or started
  130  interrupted (Ctrl-C): running tests were stopped, the partial run was
       stored and marked interrupted";

const LAB_EXIT_CODES: &str = "\
Exit status:
  0    done; with --wait or --follow: the job passed
  1    with --wait or --follow: the job failed (`results`: a test failed)
  2    the command could not do its work (bad job file, server unreachable or
       refusing, ...); with --wait or --follow: the job ended in error, was
       killed by a limit or was cancelled
  130  interrupted (Ctrl-C)";

/// Proctor runs automated tests and keeps what they found.
#[derive(Debug, Parser)]
#[command(name = "proctor", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with subunit v2 streams: statistics, filters, conversions.
    #[command(subcommand, after_help = EXIT_CODES)]
    Subunit(SubunitCommand),
    /// Run the example tests built into proctor and summarise their stream.
    #[command(after_help = EXIT_CODES)]
    Example(ExampleArgs),
    /// Run the project's tests in parallel and store the run in .proctor/.
    ///
    /// Every option but the selection is also a key of the same name in the `[run]` table of the project's
    /// `.config/proctor.toml` or the user's `~/.config/proctor/config.toml` (under `$XDG_CONFIG_HOME` when that is
    /// set), and a `PROCTOR_<KEY>` environment variable (`PROCTOR_MEMORY_LIMIT` for `--memory-limit`). A flag
    /// overrides the environment, which overrides the project's file, which overrides the user's; `proctor config
    /// list` shows the settings in force and where each came from.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// List the tests the project's sources find, without running them.
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Work with pool files (the provisioners `proctor run --pool` takes workers from).
    #[command(subcommand, after_help = EXIT_CODES)]
    Pool(PoolCommand),
    /// Show the settings `proctor run` reads from its config files and the environment.
    #[command(subcommand, after_help = EXIT_CODES)]
    Config(ConfigCommand),
    /// Show the latest stored run.
    #[command(after_help = EXIT_CODES)]
    Last {
        /// Print the run's subunit v2 stream instead of a summary.
        #[arg(long)]
        subunit: bool,
        #[command(flatten)]
        project: ProjectDir,
    },
    /// Show the tests that are failing now (stestr's failing set).
    #[command(after_help = EXIT_CODES)]
    Failing {
        /// Print only the test ids, one per line.
        #[arg(long)]
        list: bool,
        /// Print the failing tests' subunit v2 events.
        #[arg(long, conflicts_with = "list")]
        subunit: bool,
        #[command(flatten)]
        project: ProjectDir,
    },
    /// Show the slowest tests of the latest run.
    #[command(after_help = EXIT_CODES)]
    Slowest {
        /// How many tests to show.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: usize,
        /// Split the run's time by worker (route code) instead: runs, total time and slowest test of each.
        #[arg(long)]
        by_worker: bool,
        #[command(flatten)]
        project: ProjectDir,
    },
    /// List, show, remove or prune stored runs.
    #[command(after_help = EXIT_CODES)]
    History {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<HistoryAction>,
        #[command(flatten)]
        project: ProjectDir,
    },
    /// Import subunit v2 streams run elsewhere as stored runs.
    #[command(after_help = EXIT_CODES)]
    Load {
        /// Streams to load, each as a run (default: standard input).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The streams hold only some of the tests: merge into the failing
        /// set instead of replacing it.
        #[arg(long)]
        partial: bool,
        #[command(flatten)]
        project: ProjectDir,
    },
    /// Run the lab server: the HTTP API that agents and the client commands talk to.
    #[command(after_help = LAB_EXIT_CODES)]
    Server(ServerArgs),
    /// Run a lab agent: claim jobs from a server and run them on this machine.
    #[command(after_help = LAB_EXIT_CODES)]
    Agent(AgentArgs),
    /// Run a lab server and one local agent (queue `local`) in this process.
    #[command(after_help = LAB_EXIT_CODES)]
    Up(UpArgs),
    /// The lab's end of a run's worker: the test phase of each job `proctor run --lab` submits.
    #[command(hide = true)]
    LabWorker {
        /// Seconds to wait for a batch before taking the run for gone (the run's job says how long).
        #[arg(long, value_name = "SECONDS")]
        idle: u64,
    },
    /// The local end of one batch `proctor run --lab` sends to a lab job.
    #[command(hide = true)]
    LabBatch(LabBatchArgs),
    /// Make, list and revoke the lab's bearer tokens (in the server's data directory).
    #[command(subcommand, after_help = LAB_EXIT_CODES)]
    Token(TokenCommand),
    /// Move a lab's store: `proctor store copy --from sqlite:DIR --to postgres://…`.
    #[command(subcommand, after_help = LAB_EXIT_CODES)]
    Store(StoreCommand),
    /// Submit a job file to a lab; prints the job's id.
    #[command(after_help = LAB_EXIT_CODES)]
    Submit(SubmitArgs),
    /// Show a job: its state, reason and phases.
    #[command(after_help = LAB_EXIT_CODES)]
    Status {
        /// The job's id.
        id: String,
        /// Print JSON (it has at least `state`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a job's output.
    #[command(after_help = LAB_EXIT_CODES)]
    Logs {
        /// The job's id.
        id: String,
        /// Keep printing as the job runs, until it ends.
        #[arg(long, short)]
        follow: bool,
        /// Only this phase's output (setup, provision, firmware_update, test, allocate, reserve, cleanup).
        #[arg(long, value_name = "PHASE")]
        phase: Option<Phase>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a job's per-test results.
    #[command(after_help = LAB_EXIT_CODES)]
    Results {
        /// The job's id.
        id: String,
        /// Write the raw subunit v2 stream to standard output.
        #[arg(long, conflicts_with = "junit")]
        subunit: bool,
        /// Write a JUnit XML report to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Download a job's artifacts and unpack them into a directory.
    #[command(after_help = LAB_EXIT_CODES)]
    Artifacts {
        /// The job's id.
        id: String,
        /// The directory to unpack into (made if missing).
        #[arg(long, short, value_name = "DIR")]
        output: PathBuf,
        /// Refuse artifacts that unpack to more than this many bytes (4 GiB by default).
        #[arg(long, value_name = "BYTES", default_value_t = Limits::ARTIFACTS.expanded_bytes)]
        max_expanded_bytes: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a job: at once if it waits, through its agent if it runs.
    #[command(after_help = LAB_EXIT_CODES)]
    Cancel {
        /// The job's id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List jobs, newest first, a page at a time.
    #[command(after_help = LAB_EXIT_CODES)]
    Jobs(JobsArgs),
    /// List the lab's queues and what waits on them.
    #[command(after_help = LAB_EXIT_CODES)]
    Queues {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the lab's agents and their states.
    #[command(after_help = LAB_EXIT_CODES)]
    Agents {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Store, list, show, remove and start recipes (named scripts with options).
    #[command(subcommand, after_help = LAB_EXIT_CODES)]
    Recipe(RecipeCommand),
}

/// The lab server a client command talks to, and as whom.
#[derive(Debug, Args)]
pub struct Remote {
    /// The lab server's URL; servers of one lab may be listed comma-separated, each tried when the one before gives
    /// no answer.
    #[arg(
        long,
        env = "PROCTOR_SERVER",
        default_value = "http://127.0.0.1:7370",
        value_name = "URL"
    )]
    pub server: String,
    /// The bearer token (from `proctor token create`).
    #[arg(
        long,
        env = "PROCTOR_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub token: Option<String>,
}

/// Where the lab keeps its database.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The data directory (default: `proctor` in the user's data directory).
    #[arg(long, value_name = "DIR", value_parser = absolute_path)]
    pub data_dir: Option<PathBuf>,
    /// The store instead of the data directory's SQLite file: `postgres://USER@HOST[:PORT]/DATABASE` (one database
    /// several servers share) or `sqlite:DIR`.
    #[arg(
        long,
        env = "PROCTOR_STORE",
        value_name = "URL",
        conflicts_with = "data_dir"
    )]
    pub store: Option<StoreLocation>,
}

/// Options of `proctor jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs on this queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Only jobs in this state (queued, running, passed, failed, error, killed, cancelled).
    #[arg(long, value_name = "STATE")]
    pub state: Option<JobState>,
    /// Only jobs submitted with this token id (as `proctor token list` shows it).
    #[arg(long, value_name = "TOKEN_ID")]
    pub submitter: Option<String>,
    /// At most this many jobs (the server's default is 100, its most 1 000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Go on after the page that printed this cursor.
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Print the page's jobs as JSON (the cursor of the next page still goes to standard error).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// Options of `proctor server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A server.toml with any of `listen`, `store`, `data_dir` and `public_pages`; flags and PROCTOR_STORE win.
    #[arg(long, value_name = "FILE", value_parser = absolute_path)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDir,
    /// The address to listen on (127.0.0.1:7370 by default); beyond loopback only once a token exists.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Let visitors who have not signed in read the web UI's pages beyond loopback too (on loopback they may).
    #[arg(long)]
    pub public_pages: bool,
    #[command(flatten)]
    pub tuning: ServerTuning,
}

/// The server's timing and limits, hidden: for tests.
#[derive(Debug, Default, Args)]
pub struct ServerTuning {
    /// Seconds a claim or heartbeat leases a job for; an agent silent this long is also marked offline.
    #[arg(long, hide = true, value_name = "SECONDS", value_parser = parse::<Duration>)]
    pub lease: Option<Duration>,
    /// The largest request body accepted, in bytes.
    #[arg(long, hide = true, value_name = "BYTES")]
    pub max_body: Option<usize>,
    /// The largest job definition accepted, in bytes (1 MiB by default); large data belongs in attachments.
    #[arg(long, value_name = "BYTES")]
    pub max_definition_bytes: Option<usize>,
    /// The most bytes a job's artifacts may unpack to (4 GiB by default).
    #[arg(long, value_name = "BYTES")]
    pub max_artifacts_expanded_bytes: Option<u64>,
    /// The most bytes a job's attachments may unpack to (1 GiB by default).
    #[arg(long, value_name = "BYTES")]
    pub max_attachments_expanded_bytes: Option<u64>,
    /// The most entries a bundle (artifacts or attachments) may hold (100 000 by default).
    #[arg(long, value_name = "N")]
    pub max_bundle_entries: Option<u64>,
}

/// Options of `proctor agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent's configuration (`agent.toml`, Testflinger's agent keys); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The lab server's URL; servers of one lab may be listed comma-separated, each tried when the one before gives
    /// no answer.
    #[arg(long, env = "PROCTOR_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// A queue to serve (repeatable).
    #[arg(long = "queue", value_name = "QUEUE")]
    pub queues: Vec<String>,
    /// The agent's name.
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// Where jobs run, each in its own directory (default: the config's
    /// `execution_basedir`, or `proctor/agent` in the user's data directory).
    #[arg(long, value_name = "DIR", value_parser = absolute_path)]
    pub work_dir: Option<PathBuf>,
    /// The agent's bearer token (role agent).
    #[arg(
        long,
        env = "PROCTOR_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub tuning: AgentTuning,
}

/// The agent's pacing, hidden: for tests.
#[derive(Debug, Args)]
pub struct AgentTuning {
    /// Seconds between heartbeats while a job runs.
    #[arg(long, hide = true, value_name = "SECONDS", value_parser = parse::<Duration>)]
    pub heartbeat: Option<Duration>,
    /// Seconds one claim waits for a job.
    #[arg(long, hide = true, value_name = "SECONDS", value_parser = parse::<Duration>)]
    pub claim_wait: Option<Duration>,
    /// Seconds a stopped phase gets between SIGTERM and SIGKILL.
    #[arg(long, hide = true, value_name = "SECONDS", value_parser = parse::<Duration>)]
    pub grace: Option<Duration>,
}

/// Options of `proctor up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7370", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Where the local agent runs jobs (default: `work` in the data directory).
    #[arg(long, value_name = "DIR", value_parser = absolute_path)]
    pub work_dir: Option<PathBuf>,
}

/// `proctor store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy everything of one store (jobs, logs, results, artifacts, attachments, recipes, tokens, agents) into
    /// another, which must be empty: a second copy is refused, never doubled. Stop the servers of both first.
    Copy {
        /// The store to copy: `sqlite:DIR` (a data directory) or `postgres://…`.
        #[arg(long, value_name = "URL")]
        from: StoreLocation,
        /// The empty store to copy into.
        #[arg(long, value_name = "URL")]
        to: StoreLocation,
    },
}

/// `proctor token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret (shown this once).
    Create {
        /// What it may do: admin, user or agent.
        #[arg(long)]
        role: Role,
        /// Limit an agent token to this queue (repeatable; default: all).
        #[arg(long = "queue", value_name = "QUEUE")]
        queues: Vec<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the tokens (never their secrets).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a token: its secret stops working.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// Options of `proctor submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job file (YAML or JSON).
    pub file: PathBuf,
    /// Accept a queue that no agent has ever served.
    #[arg(long)]
    pub allow_unknown_queue: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub remote: Remote,
}

/// Whether a command that makes a job waits for it.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Wait for the job to end; the exit status tells how it ended.
    #[arg(long)]
    pub wait: bool,
    /// Print the job's output live until it ends; the exit status tells how it ended.
    #[arg(long, short, conflicts_with = "wait")]
    pub follow: bool,
    /// Print JSON (the job as submitted, or as it ended with --wait).
    #[arg(long)]
    pub json: bool,
}

/// `proctor recipe …`.
#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Store (or replace) a recipe: a script run as a job's test phase.
    Add {
        /// The recipe's name.
        name: String,
        /// The script (any interpreter, by its `#!` line).
        file: PathBuf,
        /// The queue its jobs go to.
        #[arg(long)]
        queue: String,
        /// A default option, given to the script as `--KEY VALUE` (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the recipes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a recipe with its script.
    Show {
        /// The recipe's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a recipe.
    Remove {
        /// The recipe's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make a job of a recipe; prints the job's id.
    Start {
        /// The recipe's name.
        name: String,
        /// An option for this job, overriding the recipe's (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
        #[command(flatten)]
        follow: FollowArgs,
        #[command(flatten)]
        remote: Remote,
    },
}

/// A directory of the command line, resolved once, now, against the directory it was given in: the lab's
/// processes hand these paths on (to phases running in other directories), where a relative one would name another.
fn absolute_path(text: &str) -> Result<PathBuf, String> {
    std::path::absolute(text).map_err(|error| format!("{text:?}: {error}"))
}

fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// The project whose tests and `.proctor/` repository a command uses.
#[derive(Debug, Args)]
pub struct ProjectDir {
    /// The project directory (default: the current directory).
    #[arg(long = "project", short = 'C', value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// `proctor pool …`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Provision each provisioner once, print each worker's platform and the time it took, and release
    /// everything. Exit 2 when a provisioner failed.
    Check {
        /// The pool file.
        file: PathBuf,
    },
}

/// `proctor config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every `proctor run` setting: its key, its value and where the value came from (default, a config
    /// file, or a PROCTOR_* variable).
    List {
        /// Print a JSON array of {key, value, source, layer} objects (value null when unset).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectDir,
    },
}

/// `proctor history …`.
#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// One line per stored run (the default).
    List,
    /// One run's tests and outcomes.
    Show {
        /// The run's id.
        id: u64,
    },
    /// Delete a stored run.
    Remove {
        /// The run's id.
        id: u64,
    },
    /// Every stored run's test runs split by worker (route code): runs, failures, time and slowest test of each.
    Workers {
        /// Only this test's runs: which workers it fails on, and where it is slow.
        test: Option<String>,
    },
    /// Delete all but the newest runs.
    Prune {
        /// How many runs to keep.
        #[arg(long)]
        keep: usize,
    },
}

/// Which tests: what `run` and `list` select from the project's sources.
#[derive(Debug, Args)]
pub struct Selection {
    /// Run only tests whose id matches one of these regular expressions.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Leave out tests whose id matches this regular expression (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Run only the test ids listed in this file (one per line).
    #[arg(long, value_name = "FILE")]
    pub include_list: Option<PathBuf>,
    /// Leave out the test ids listed in this file (one per line).
    #[arg(long, value_name = "FILE")]
    pub exclude_list: Option<PathBuf>,
    /// A directory of executables to run as tests (each file is a test),
    /// instead of the project's configured sources.
    #[arg(long, value_name = "DIR")]
    pub executables: Option<PathBuf>,
    /// FMF context for `adjust` rules, e.g. `distro=fedora-40` (repeatable).
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Use this source instead of the first one found in the project.
    #[arg(
        long,
        value_name = "SOURCE",
        value_enum,
        conflicts_with = "executables"
    )]
    pub source: Option<SourceArg>,
    #[command(flatten)]
    pub cargo: CargoSelection,
    #[command(flatten)]
    pub project: ProjectDir,
}

/// A source `--source` names.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SourceArg {
    /// pytest, in the project's directory.
    Pytest,
    /// Cargo, from the project's Cargo.toml.
    Cargo,
}

/// Which packages and features of a Cargo project are built and tested, as `cargo test` takes them.
#[derive(Debug, Args)]
#[command(next_help_heading = "Cargo projects")]
pub struct CargoSelection {
    /// Test this package (repeatable).
    #[arg(long, short = 'p', value_name = "SPEC")]
    pub package: Vec<String>,
    /// Test every package of the workspace.
    #[arg(long)]
    pub workspace: bool,
    /// Leave out this package (with --workspace; repeatable).
    #[arg(long, value_name = "SPEC", requires = "workspace")]
    pub exclude_package: Vec<String>,
    /// Features to build with (comma- or space-separated; repeatable).
    #[arg(long, short = 'F', value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Build with every feature.
    #[arg(long)]
    pub all_features: bool,
    /// Build without the default features.
    #[arg(long)]
    pub no_default_features: bool,
    /// Build in release mode.
    #[arg(long)]
    pub release: bool,
}

impl CargoSelection {
    /// The arguments `cargo test --no-run` takes for this selection.
    pub fn cargo_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for package in &self.package {
            args.extend(["--package".to_owned(), package.clone()]);
        }
        if self.workspace {
            args.push("--workspace".to_owned());
        }
        for package in &self.exclude_package {
            args.extend(["--exclude".to_owned(), package.clone()]);
        }
        for features in &self.features {
            args.extend(["--features".to_owned(), features.clone()]);
        }
        if self.all_features {
            args.push("--all-features".to_owned());
        }
        if self.no_default_features {
            args.push("--no-default-features".to_owned());
        }
        if self.release {
            args.push("--release".to_owned());
        }
        args
    }
}

/// Options of `proctor list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub selection: Selection,
}

/// Options of `proctor run`. The defaults of the options that have settings are the built-in layer of
/// `proctor::config`, not clap's: a flag that is not given leaves what a file or the environment says.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Run only the tests in the failing set.
    #[arg(long)]
    pub failing: bool,
    /// How many tests run at once (default: the number of CPUs).
    #[arg(long, short = 'j', value_name = "N", conflicts_with = "serial", value_parser = parse::<NonZeroUsize>)]
    pub concurrency: Option<NonZeroUsize>,
    /// Run on the workers of this pool file's provisioners instead of slots here.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["concurrency", "serial"], value_parser = parse::<PathBuf>)]
    pub pool: Option<PathBuf>,
    /// Run on agents of a lab's queue (`--queue`) instead of slots here, each held by a job for the run; the
    /// token is PROCTOR_TOKEN's. Servers of one lab may be listed comma-separated.
    #[arg(long, value_name = "URL", requires = "queue", conflicts_with_all = ["concurrency", "serial", "pool"])]
    pub lab: Option<String>,
    /// The lab queue whose agents run the tests (with `--lab`).
    #[arg(long, value_name = "QUEUE", requires = "lab")]
    pub queue: Option<String>,
    /// How many of the queue's agents to hold (with `--lab`; default: every agent of the queue that is not
    /// offline or in maintenance).
    #[arg(long, value_name = "N", requires = "lab", value_parser = parse::<NonZeroUsize>)]
    pub workers: Option<NonZeroUsize>,
    /// Run one test at a time.
    #[arg(long)]
    pub serial: bool,
    /// Run again and again until a test fails.
    #[arg(long)]
    pub until_failure: bool,
    /// Run a failed test again up to N times; passing on a retry is flaky (default: 0).
    #[arg(long, value_name = "N", value_parser = parse::<u32>)]
    pub retries: Option<u32>,
    /// Write only the subunit v2 stream to standard output.
    #[arg(long)]
    pub subunit: bool,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE", value_parser = parse::<PathBuf>)]
    pub junit: Option<PathBuf>,
    /// Do not store the run in .proctor/.
    #[arg(long)]
    pub no_store: bool,
    /// Kill a test whose process tree uses more memory than this
    /// (bytes, or with a K, M or G suffix).
    #[arg(long, value_name = "SIZE", value_parser = parse::<Bytes>)]
    pub memory_limit: Option<Bytes>,
    /// Seconds a stopped test gets between SIGTERM and SIGKILL (default: 10).
    #[arg(long, value_name = "SECONDS", value_parser = parse::<Duration>)]
    pub grace: Option<Duration>,
    /// Kill a test that runs longer than this many seconds, with everything it started (a suite's own limit
    /// still applies when shorter).
    #[arg(long, value_name = "SECONDS", value_parser = parse::<Duration>)]
    pub time_limit: Option<Duration>,
}

/// `proctor lab-batch`: which job's worker runs the batch, and where its streams end.
#[derive(Debug, Args)]
pub struct LabBatchArgs {
    /// The lab's server(s).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The job serving as the worker.
    #[arg(long, value_name = "ID")]
    pub job: String,
    /// Where the job's `work` stream ends.
    #[arg(long, value_name = "OFFSET")]
    pub work_at: u64,
    /// Where the job's `work-done` stream ended before the batch was asked for.
    #[arg(long, value_name = "OFFSET")]
    pub reports_at: u64,
    /// The batch, as the run wrote it.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
}

/// Input files; standard input when none are given.
#[derive(Debug, Args)]
pub struct Inputs {
    /// Subunit v2 streams to read, in order (default: standard input).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Whether output that belongs to no test is shown, as python-subunit's
/// filters show it.
#[derive(Debug, Args)]
pub struct Passthrough {
    /// Hide non-subunit input and global attachments (shown by default, as
    /// the reference tools do).
    #[arg(long)]
    pub no_passthrough: bool,
}

/// `proctor subunit …`: filters over subunit v2, reading standard input (or
/// the files given) and writing standard output.
#[derive(Debug, Subcommand)]
pub enum SubunitCommand {
    /// Count tests by outcome, like subunit-stats (exit 1 when any failed).
    Stats {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        passthrough: Passthrough,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// List the ids of the tests in a stream, as they finish.
    Ls {
        /// Show each run's duration in seconds.
        #[arg(long)]
        times: bool,
        /// Also list tests that were only enumerated (status `exists`).
        #[arg(long)]
        exists: bool,
        #[command(flatten)]
        passthrough: Passthrough,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Keep the test runs that match; with no options, pass everything.
    Filter(FilterArgs),
    /// Add (`+tag` or `tag`) and remove (`-tag`) tags on every event.
    Tags {
        /// Tag changes: `+name` or `name` adds, `-name` removes.
        #[arg(required = true, allow_hyphen_values = true, value_name = "[+|-]TAG")]
        changes: Vec<String>,
        /// Read this stream instead of standard input.
        #[arg(long, short = 'i', value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Convert to JUnit XML (for GitLab, Jenkins, GitHub).
    Junit {
        /// The test suite's name.
        #[arg(long, default_value = "proctor")]
        suite_name: String,
        /// Write the XML here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Convert to TAP version 13.
    ToTap {
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Convert TAP (13 or 14) to subunit v2.
    Tap2subunit {
        /// TAP files to read (default: standard input).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print one JSON object per event.
    Json {
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Print events and their attachments for people to read.
    Cat {
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Merge streams live, labelling each file's events with its position as
    /// a route code prefix (0, 1, …).
    Mux {
        /// The streams to merge (files or named pipes).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write one event, for shell scripts that report tests
    /// (like subunit-output).
    Emit(EmitArgs),
}

/// Options of `proctor subunit filter`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Keep only runs that ended with this status (repeatable).
    #[arg(long = "status", short = 's', value_name = "STATUS")]
    pub statuses: Vec<Status>,
    /// Drop runs that ended with this status (repeatable).
    #[arg(long = "exclude-status", value_name = "STATUS")]
    pub exclude_statuses: Vec<Status>,
    /// Keep only tests whose id matches this regex (repeatable: any).
    #[arg(long = "with", short = 'w', value_name = "REGEX")]
    pub with: Vec<String>,
    /// Drop tests whose id matches this regex (repeatable).
    #[arg(long = "without", value_name = "REGEX")]
    pub without: Vec<String>,
    /// Keep only runs with this tag (repeatable: any).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Drop runs with this tag (repeatable).
    #[arg(long = "exclude-tag", value_name = "TAG")]
    pub exclude_tags: Vec<String>,
    /// Drop output that belongs to no test (non-subunit text, global files).
    #[arg(long)]
    pub no_passthrough: bool,
    #[command(flatten)]
    pub inputs: Inputs,
}

/// Options of `proctor subunit emit`.
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Start a test: shorthand for `--test ID --status inprogress`.
    #[arg(long, value_name = "ID", conflicts_with_all = ["test", "status"])]
    pub start: Option<String>,
    /// The test the event is about (none for a global event).
    #[arg(long, value_name = "ID")]
    pub test: Option<String>,
    /// The test's status.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<Status>,
    /// Attach this file (`-` for standard input), in as many chunks as needed.
    #[arg(long, value_name = "FILE")]
    pub attach: Option<PathBuf>,
    /// The attachment's name (default: the file's name, `stdin` for `-`).
    #[arg(long, value_name = "NAME", requires = "attach")]
    pub file_name: Option<String>,
    /// The attachment's MIME type.
    #[arg(long, value_name = "TYPE", requires = "attach")]
    pub mime_type: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A route code.
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// Mark the test as not runnable on its own (a fixture or sub-test).
    #[arg(long)]
    pub not_runnable: bool,
    /// Do not timestamp the event.
    #[arg(long)]
    pub no_timestamp: bool,
}

/// Options of `proctor example`.
#[derive(Debug, Args)]
pub struct ExampleArgs {
    /// Keep the run's subunit stream in this file.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many tests to run at once.
    #[arg(long, short = 'j', default_value_t = 2)]
    pub concurrency: usize,
}
