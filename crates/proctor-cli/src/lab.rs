//! `proctor server`, `proctor agent` and `proctor up`: the lab's long-running processes, stopped by SIGINT or
//! SIGTERM (a second signal exits at once).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proctor_agent::{Agent, AgentError, AgentSettings};
use proctor_job::{AgentConfig, Name};
use proctor_server::{Server, ServerConfig, ServerError, StoreLocation};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

use crate::cli::{AgentArgs, AgentTuning, DataDir, LabBatchArgs, ServerArgs, ServerTuning, UpArgs};
use crate::error::CliError;
use crate::exit;

/// The queue and agent id of `proctor up`'s built-in agent.
const LOCAL: &str = "local";

/// How long `proctor up`'s agent holds one claim: short, so that a shutdown is not held up by a pending claim
/// (new jobs still wake the claim at once).
const UP_CLAIM_WAIT: Duration = Duration::from_secs(2);

/// What a server.toml may set; the command line wins over it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    listen: Option<std::net::SocketAddr>,
    store: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    public_pages: bool,
}

/// Reads a server.toml; a relative `data_dir` in it is beside the file.
fn read_server_file(path: &Path) -> Result<ServerFile, CliError> {
    let text = fs::read_to_string(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    let mut file: ServerFile = toml::from_str(&text).map_err(|error| CliError::ServerConfig {
        path: path.to_owned(),
        message: error.to_string(),
    })?;
    if let Some(dir) = &mut file.data_dir {
        *dir = path.parent().unwrap_or(Path::new("")).join(&*dir);
    }
    Ok(file)
}

/// The store the flags name, else the file's, else the default data directory's.
fn server_store(args: &ServerArgs, file: &ServerFile) -> Result<StoreLocation, CliError> {
    if args.data.store.is_some() || args.data.data_dir.is_some() {
        return store_location(&args.data);
    }
    if let Some(store) = &file.store {
        return store
            .parse()
            .map_err(|error: proctor_server::UnknownStore| {
                CliError::Usage(format!("store in the server's configuration: {error}"))
            });
    }
    store_location(&DataDir {
        data_dir: file.data_dir.clone(),
        store: None,
    })
}

/// `proctor server`: serves the API until a signal.
pub fn server(args: ServerArgs) -> Result<u8, CliError> {
    let file = match &args.config {
        Some(path) => read_server_file(path)?,
        None => ServerFile::default(),
    };
    let store = server_store(&args, &file)?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or(proctor_server::DEFAULT_LISTEN);
    let mut config = server_config(store.clone(), listen, &args.tuning);
    config.public_pages = args.public_pages || file.public_pages;
    let runtime = runtime()?;
    let stop = Stop::on_signals()?;
    let server = runtime
        .block_on(Server::bind(config))
        .map_err(server_error)?;
    println!(
        "proctor server listening on http://{} (store {store})",
        server.local_addr(),
    );
    let stopped = stop.clone();
    runtime
        .block_on(server.run(async move { stopped.wake.notified().await }))
        .map_err(server_error)?;
    Ok(exit::OK)
}

/// `proctor agent`: runs jobs until a signal, then stops after the current claim or job.
pub fn agent(args: AgentArgs) -> Result<u8, CliError> {
    let config = agent_config(&args)?;
    let work_dir = match (&args.work_dir, &config.execution_basedir) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => user_data_dir()?.join("agent"),
    };
    let settings = agent_settings(&args.tuning, AgentSettings::default());
    let stop = Stop::on_signals()?;
    let agent = Agent::with_settings(config, work_dir, settings)
        .map_err(|error| CliError::Agent(Box::new(error)))?;
    agent.run(&stop.requested, report_agent_error);
    Ok(exit::OK)
}

/// `proctor up`: a server and one agent on queue `local`, in this process.
pub fn up(args: UpArgs) -> Result<u8, CliError> {
    let data_dir = data_dir(&args.data)?;
    let work_dir = args.work_dir.unwrap_or_else(|| data_dir.join("work"));
    let config = server_config(
        store_location(&args.data)?,
        args.listen,
        &ServerTuning::default(),
    );
    let runtime = runtime()?;
    let stop = Stop::on_signals()?;
    let server = runtime
        .block_on(Server::bind(config))
        .map_err(server_error)?;
    let url = format!("http://{}", server.local_addr());
    let agent = local_agent(&url, work_dir.clone())?;
    print_welcome(&url, &data_dir, &work_dir);
    let agent_done = Arc::new(Notify::new());
    std::thread::scope(|scope| {
        let agent_done_signal = Arc::clone(&agent_done);
        let requested = &stop.requested;
        let agent = &agent;
        scope.spawn(move || {
            agent.run(requested, report_agent_error);
            agent_done_signal.notify_one();
        });
        // The server outlives the agent so that the agent's last job can still report its end.
        runtime
            .block_on(server.run(async move { agent_done.notified().await }))
            .map_err(server_error)
    })?;
    Ok(exit::OK)
}

fn print_welcome(url: &str, data_dir: &Path, work_dir: &Path) {
    println!("proctor lab listening on {url}");
    println!("  the web UI is at {url}/");
    println!("  data in {}", data_dir.display());
    println!(
        "  agent `{LOCAL}` serves queue `{LOCAL}`, running jobs in {}",
        work_dir.display()
    );
    println!("submit a job from another terminal:");
    println!("  proctor submit examples/hello.yaml --follow --server {url}");
    println!("stop with Ctrl-C");
}

fn local_agent(url: &str, work_dir: PathBuf) -> Result<Agent, CliError> {
    let local = Name::new(LOCAL).map_err(CliError::Usage)?;
    let mut config = AgentConfig::new(local.clone(), vec![local]);
    config.server_address = url.to_owned();
    let settings = AgentSettings {
        claim_wait: UP_CLAIM_WAIT,
        ..AgentSettings::default()
    };
    Agent::with_settings(config, work_dir, settings)
        .map_err(|error| CliError::Agent(Box::new(error)))
}

fn server_config(
    store: StoreLocation,
    listen: std::net::SocketAddr,
    tuning: &ServerTuning,
) -> ServerConfig {
    let mut config = ServerConfig::on(store);
    config.listen = listen;
    if let Some(lease) = tuning.lease {
        config.lease = lease;
        config.agent_offline_after = lease;
    }
    if let Some(max_body) = tuning.max_body {
        config.max_body_bytes = max_body;
    }
    if let Some(max_definition) = tuning.max_definition_bytes {
        config.max_definition_bytes = max_definition;
    }
    let limits = &mut config.bundle_limits;
    if let Some(bytes) = tuning.max_artifacts_expanded_bytes {
        limits.artifacts.expanded_bytes = bytes;
    }
    if let Some(bytes) = tuning.max_attachments_expanded_bytes {
        limits.attachments.expanded_bytes = bytes;
    }
    if let Some(entries) = tuning.max_bundle_entries {
        limits.artifacts.entries = entries;
        limits.attachments.entries = entries;
    }
    config
}

/// The agent's configuration: the file if given, with the flags laid over it.
fn agent_config(args: &AgentArgs) -> Result<AgentConfig, CliError> {
    let mut config = match &args.config {
        Some(path) => read_agent_config(path)?,
        None => {
            let id = args.id.as_deref().ok_or_else(|| {
                CliError::Usage("name the agent with --id NAME, or give --config agent.toml".into())
            })?;
            if args.queues.is_empty() {
                return Err(CliError::Usage(
                    "name the queues to serve with --queue QUEUE, or give --config agent.toml"
                        .into(),
                ));
            }
            AgentConfig::new(name("--id", id)?, Vec::new())
        }
    };
    if let Some(id) = &args.id {
        config.agent_id = name("--id", id)?;
    }
    if !args.queues.is_empty() {
        config.job_queues = args
            .queues
            .iter()
            .map(|queue| name("--queue", queue))
            .collect::<Result<_, _>>()?;
    }
    if let Some(server) = &args.server {
        config.server_address = server.clone();
    }
    if args.token.is_some() {
        config.token = args.token.clone();
    }
    Ok(config)
}

fn read_agent_config(path: &Path) -> Result<AgentConfig, CliError> {
    let text = fs::read_to_string(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    let mut config = AgentConfig::from_toml(&text).map_err(|error| CliError::AgentConfig {
        path: path.to_owned(),
        problem: error.problem,
    })?;
    // A relative directory in the file means one beside the file, wherever the agent is started from.
    let beside = path.parent().unwrap_or(Path::new(""));
    for dir in [&mut config.execution_basedir, &mut config.logging_basedir]
        .into_iter()
        .flatten()
    {
        *dir = beside.join(&*dir);
    }
    Ok(config)
}

fn name(flag: &str, text: &str) -> Result<Name, CliError> {
    Name::new(text).map_err(|reason| CliError::Usage(format!("{flag} {text:?}: {reason}")))
}

fn agent_settings(tuning: &AgentTuning, defaults: AgentSettings) -> AgentSettings {
    AgentSettings {
        heartbeat_interval: tuning.heartbeat.unwrap_or(defaults.heartbeat_interval),
        claim_wait: tuning.claim_wait.unwrap_or(defaults.claim_wait),
        grace: tuning.grace.unwrap_or(defaults.grace),
        ..defaults
    }
}

/// The agent never stops on an error (it retries); it says what went wrong, with the causes.
fn report_agent_error(error: &AgentError) {
    eprintln!("proctor agent: {}", error.with_causes());
}

fn server_error(source: ServerError) -> CliError {
    let help = match &source {
        ServerError::OpenToNetwork { .. } => Some(
            "make a token first, e.g. `proctor token create --role admin --data-dir DIR`, \
             or listen on 127.0.0.1"
                .to_owned(),
        ),
        ServerError::Bind { .. } => Some(
            "is another server already listening there? Pick another address with --listen"
                .to_owned(),
        ),
        _ => None,
    };
    CliError::Server {
        source: Box::new(source),
        help,
    }
}

/// The store given with `--store`, else the SQLite file in the data directory.
pub fn store_location(data: &DataDir) -> Result<StoreLocation, CliError> {
    match &data.store {
        Some(store) => Ok(store.clone()),
        None => Ok(StoreLocation::Sqlite(data_dir(data)?)),
    }
}

/// The data directory given, or `proctor` in the user's data directory.
pub fn data_dir(data: &DataDir) -> Result<PathBuf, CliError> {
    match &data.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => user_data_dir(),
    }
}

fn user_data_dir() -> Result<PathBuf, CliError> {
    dirs::data_dir()
        .map(|dir| dir.join("proctor"))
        .ok_or(CliError::NoDataDir)
}

fn runtime() -> Result<Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Setup {
            what: "the server's async runtime",
            source: Box::new(source),
        })
}

/// A stop asked for by SIGINT or SIGTERM: a flag for blocking loops and a wake-up for async ones.
#[derive(Clone)]
struct Stop {
    requested: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Stop {
    /// Catches SIGINT and SIGTERM: the first asks for a clean stop, the second exits at once.
    fn on_signals() -> Result<Stop, CliError> {
        let stop = Stop {
            requested: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(Notify::new()),
        };
        let handler = stop.clone();
        ctrlc::set_handler(move || {
            if handler.requested.swap(true, Ordering::SeqCst) {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            eprintln!(
                "proctor: stopping (after the current job, if any); signal again to exit at once"
            );
            // notify_one keeps the wake-up for a waiter that has not started waiting yet.
            handler.wake.notify_one();
        })
        .map_err(|source| CliError::Setup {
            what: "the signal handler",
            source: Box::new(source),
        })?;
        Ok(stop)
    }
}

/// `proctor lab-worker`: serves a `proctor run --lab` as the test phase of the job holding this agent.
pub fn lab_worker(idle: Duration) -> Result<u8, CliError> {
    let served = proctor_agent::RunWorker::from_environment(idle).and_then(|worker| worker.serve());
    match served {
        Ok(()) => Ok(exit::OK),
        Err(problem) => {
            eprintln!("proctor lab-worker: {problem}");
            Ok(exit::ERROR)
        }
    }
}

/// `proctor lab-batch`: asks a lab job's worker for one batch and relays its output; exits with the batch's
/// status. Stopped (a time limit, an interrupted run), it cancels the batch first.
pub fn lab_batch(args: &LabBatchArgs) -> Result<u8, CliError> {
    let token = std::env::var("PROCTOR_TOKEN").ok();
    let client = proctor_runner::BatchClient::start(
        &args.server,
        token.as_deref(),
        &args.job,
        args.work_at,
        args.reports_at,
        &args.request,
    );
    let client = match client {
        Ok(client) => Arc::new(client),
        Err(problem) => {
            eprintln!("proctor lab-batch: {problem}");
            return Ok(exit::ERROR);
        }
    };
    let stopping = Arc::clone(&client);
    // SIGTERM from the run's supervisor, or Ctrl-C reaching the run's terminal: the batch stops on the agent too.
    let _ = ctrlc::set_handler(move || {
        stopping.cancel();
        std::process::exit(143);
    });
    let status = client.relay(&mut std::io::stdout().lock(), &mut std::io::stderr().lock());
    Ok(u8::try_from(status & 0xff).unwrap_or(exit::ERROR))
}
