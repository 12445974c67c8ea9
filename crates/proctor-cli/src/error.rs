//! What can go wrong in a command, as the user sees it.

use std::io;
use std::path::PathBuf;

use proctor_events::SinkError;

/// A command's failure: printed by miette, exit status 2.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CliError {
    /// An input file could not be opened or read.
    #[error("cannot read {path}")]
    #[diagnostic(code(proctor::input))]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    #[diagnostic(code(proctor::output))]
    Output(#[source] io::Error),
    /// An event could not be written as subunit.
    #[error("cannot encode an event")]
    #[diagnostic(code(proctor::encode))]
    Encode(#[source] proctor_subunit::EncodeError),
    /// The arguments make no sense together.
    #[error("{0}")]
    #[diagnostic(code(proctor::usage))]
    Usage(String),
    /// The input was in a format we could not read.
    #[error("cannot parse {what}")]
    #[diagnostic(code(proctor::parse))]
    Parse {
        /// What was being parsed.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The project's tests could not be found or listed.
    #[error(transparent)]
    #[diagnostic(code(proctor::sources))]
    Sources(#[from] proctor_sources::SourceError),
    /// The run repository (.proctor/) could not be read or written.
    #[error(transparent)]
    #[diagnostic(code(proctor::repository))]
    Repository(#[from] proctor_repository::RepoError),
    /// The repository exists but holds no run to show.
    #[error("no runs stored in {path} yet; `proctor run` or `proctor load` stores one")]
    #[diagnostic(code(proctor::no_runs))]
    NoRuns {
        /// The `.proctor` directory.
        path: PathBuf,
    },
    /// A stream being loaded could not be read to its end.
    #[error(
        "cannot read {path} to its end; what was read is stored as run {id}, marked interrupted"
    )]
    #[diagnostic(code(proctor::load))]
    LoadInterrupted {
        /// The stream's file (`<stdin>` for standard input).
        path: PathBuf,
        /// The run that keeps what was read.
        id: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Test processes cannot be supervised here.
    #[error(transparent)]
    #[diagnostic(code(proctor::supervisor))]
    Supervisor(#[from] proctor_supervisor::SupervisorError),
    /// The lab server could not be reached, or refused or failed a request.
    #[error("{error}")]
    #[diagnostic(code(proctor::lab))]
    Lab {
        /// What the client said.
        error: Box<proctor_client::ClientError>,
        /// What to do about it.
        #[help]
        help: Option<String>,
    },
    /// A pool file could not be read or is not a valid pool.
    #[error(transparent)]
    #[diagnostic(
        code(proctor::invalid_pool),
        help("a pool file is a list of [[provisioner]] tables with kind = \"local\" or \"hooks\"")
    )]
    Pool(#[from] proctor_pool::PoolError),
    /// The run's settings could not be read: a config file or a `PROCTOR_*` variable holds what its key does not
    /// take, or two settings of one layer contradict each other.
    #[error(transparent)]
    #[diagnostic(
        code(proctor::settings),
        help("`proctor config list` shows every key; `proctor run --help` says what each does")
    )]
    Settings(#[from] proctor::config::ConfigError),
    /// A job file is not a valid job (found here or by the server).
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidJob(Box<InvalidJob>),
    /// The lab server could not start or stopped with an error.
    #[error("the lab server failed")]
    #[diagnostic(code(proctor::server))]
    Server {
        /// Why.
        #[source]
        source: Box<proctor_server::ServerError>,
        /// What to do about it.
        #[help]
        help: Option<String>,
    },
    /// The agent could not be set up.
    #[error("cannot start the agent")]
    #[diagnostic(code(proctor::agent))]
    Agent(#[source] Box<proctor_agent::AgentError>),
    /// The agent's configuration file is not valid.
    #[error("{path}: {problem}")]
    #[diagnostic(code(proctor::agent_config))]
    AgentConfig {
        /// The file.
        path: PathBuf,
        /// What was wrong and where.
        problem: proctor_job::Problem,
    },
    /// The lab's database could not be opened, read or changed.
    #[error("the lab's store {store} cannot be used")]
    #[diagnostic(code(proctor::store))]
    Store {
        /// Where it is (a URL without its password).
        store: String,
        /// Why.
        #[source]
        source: Box<proctor_store::StoreError>,
    },
    /// The server's configuration file is not one.
    #[error("invalid server configuration in {path}: {message}")]
    #[diagnostic(
        code(proctor::server_config),
        help("its keys are listen, store, data_dir and public_pages")
    )]
    ServerConfig {
        /// The file.
        path: PathBuf,
        /// What was wrong, and where (toml's line and column).
        message: String,
    },
    /// A store copy failed part way; the target holds what was copied before (copy again into a fresh one).
    #[error("copying the store {from} to {to} failed")]
    #[diagnostic(
        code(proctor::store_copy),
        help("the target now holds part of the lab: drop and recreate it, then copy again")
    )]
    Copy {
        /// The source.
        from: String,
        /// The target.
        to: String,
        /// Why.
        #[source]
        source: Box<proctor_store::StoreError>,
    },
    /// No data directory was given and the user has none.
    #[error("cannot tell where to keep the lab's data: this user has no data directory")]
    #[diagnostic(code(proctor::data_dir), help("pass --data-dir DIR"))]
    NoDataDir,
    /// The process cannot set up what runs the server or catches signals.
    #[error("cannot set up {what}")]
    #[diagnostic(code(proctor::setup))]
    Setup {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A tar.gz could not be made or unpacked, or holds an entry that could land outside its directory (the
    /// archive's error says which, and why).
    #[error("{0}")]
    #[diagnostic(code(proctor::archive))]
    Archive(#[from] proctor_archive::ArchiveError),
    /// The job ended without uploading artifacts.
    #[error("job {job} has no artifacts")]
    #[diagnostic(
        code(proctor::no_artifacts),
        help(
            "a job's artifacts are the files its phases leave in artifacts/ or $PROCTOR_ARTIFACTS"
        )
    )]
    NoArtifacts {
        /// The job's id.
        job: String,
    },
    /// Whoever reads our output went away; not an error worth reporting.
    #[error("broken pipe")]
    BrokenPipe,
}

impl From<proctor::Error> for CliError {
    fn from(error: proctor::Error) -> Self {
        use proctor::Error;
        match error {
            Error::Config(error) => error.into(),
            Error::Sources(error) => error.into(),
            Error::Repository(error) => error.into(),
            Error::Pool(error) => error.into(),
            Error::Supervisor(error) => error.into(),
            Error::Output(error) => error.into(),
            Error::Read { path, source } | Error::Write { path, source } => {
                CliError::Input { path, source }
            }
            Error::Filter { pattern, source } => CliError::Parse {
                what: format!("the test filter {pattern:?}"),
                source: Box::new(source),
            },
            Error::Junit { path, source } => CliError::Parse {
                what: format!("the JUnit report for {}", path.display()),
                source: Box::new(source),
            },
            error @ (Error::FailingNeedsStore(_) | Error::NoSuchTest(_) | Error::NotRun { .. }) => {
                CliError::Usage(error.to_string())
            }
        }
    }
}

impl From<SinkError> for CliError {
    fn from(error: SinkError) -> Self {
        match error {
            SinkError::Io(error) => CliError::from(error),
            SinkError::Encode(proctor_subunit::EncodeError::Io(error)) => CliError::from(error),
            SinkError::Encode(error) => CliError::Encode(error),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Output(error)
        }
    }
}

impl From<proctor_client::ClientError> for CliError {
    fn from(error: proctor_client::ClientError) -> Self {
        let help = client_error_help(&error);
        CliError::Lab {
            error: Box::new(error),
            help,
        }
    }
}

/// What the user can do about a failed request, and the low-level cause when there is no server to blame.
fn client_error_help(error: &proctor_client::ClientError) -> Option<String> {
    use proctor_client::ClientError;
    use std::error::Error;
    match error {
        ClientError::Unreachable { source, .. } => {
            let mut cause: &dyn Error = source;
            while let Some(deeper) = cause.source() {
                cause = deeper;
            }
            Some(format!(
                "{cause}; is a server running there? Start one with `proctor up` or `proctor server`, \
                 or name another with --server URL or PROCTOR_SERVER"
            ))
        }
        ClientError::Status { status, .. } if status.as_u16() == 401 => Some(
            "this server needs a token: pass --token or set PROCTOR_TOKEN \
             (an admin makes one with `proctor token create`)"
                .to_owned(),
        ),
        ClientError::Status { status, .. } if status.as_u16() == 403 => {
            Some("the token's role does not allow this".to_owned())
        }
        _ => None,
    }
}

/// A job file's problem, pointing into the file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(
    code(proctor::invalid_job),
    help("the job's fields are described in examples/jobs/full.yaml")
)]
pub struct InvalidJob {
    /// The job file.
    pub file: String,
    /// The 1-based line (0 when unknown).
    pub line: usize,
    /// The 1-based column (0 when unknown).
    pub column: usize,
    /// The field and what was wrong with it.
    pub message: String,
    /// The file's text, to point into.
    #[source_code]
    pub text: miette::NamedSource<String>,
    /// Where in the text.
    #[label("here")]
    pub at: Option<miette::SourceSpan>,
}
