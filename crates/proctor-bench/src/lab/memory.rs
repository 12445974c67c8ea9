//! Server memory under long polls: the server runs in a process of its own (`proctor-bench lab serve`, this binary
//! again) so its memory can be read from `/proc/PID/status`. 1 000 agent ids are registered, then all claim at once
//! with a 25 s wait, from one async client in this process (a connection each); the server's VmRSS and VmHWM while
//! it holds them are set against the same server idle (the agents registered, nothing held). Twice, each time on a fresh server: with
//! the claims sent all at once (as after a server restart), and paced, 10 every 10 ms (agents arriving over a
//! second), which tells the cost of a held claim apart from the cost of the burst.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use proctor_api::{ClaimRequest, RegisterAgent};
use proctor_server::{Server, ServerConfig, StoreLocation};
use tokio::task::JoinSet;

use super::fixture::QUEUE;
use super::LabBenchError;
use crate::process::ProcessError;

/// Claims held at once.
const HELD: usize = 1000;
/// How long each claim asks the server to hold it (the server holds up to 30 s).
const CLAIM_WAIT: Duration = Duration::from_secs(25);
/// A claim answered sooner than this was not held.
const HELD_AT_LEAST: Duration = Duration::from_secs(20);
/// Time for the server to settle (close connections, parse requests) before memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Beyond tokio's keep-alive of idle blocking threads (10 s): the second reading shows the held claims without the
/// threads their arrival burst started.
const AFTER_BURST: Duration = Duration::from_secs(12);
/// How long the bench waits for the server to accept every claim's connection.
const PATIENCE: Duration = Duration::from_secs(30);
/// What `lab serve` prints first, before the address.
const LISTENING: &str = "listening on ";

/// Runs the server for the memory and scale-idle parts: `lab serve (--data-dir DIR | --store URL) --listen ADDR`;
/// prints the bound address on its first line and serves until killed. Its open-file limit is raised to the hard
/// limit first, for the scale-idle part's 10 000 connections.
pub fn serve(args: &[String]) -> Result<(), LabBenchError> {
    let [store_flag, store, listen_flag, listen] = args else {
        return Err(LabBenchError::Usage);
    };
    let store = match store_flag.as_str() {
        "--data-dir" => StoreLocation::Sqlite(PathBuf::from(store)),
        "--store" => store.parse().map_err(|_| LabBenchError::Usage)?,
        _ => return Err(LabBenchError::Usage),
    };
    if listen_flag != "--listen" {
        return Err(LabBenchError::Usage);
    }
    let listen: SocketAddr = listen.parse().map_err(|_| LabBenchError::Usage)?;
    super::raise_open_files_limit()?;
    let runtime = super::multi_thread_runtime()?;
    let mut config = ServerConfig::on(store);
    config.listen = listen;
    let server = runtime.block_on(Server::bind(config))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{LISTENING}{}", server.local_addr())
        .and_then(|()| stdout.flush())
        .map_err(|source| LabBenchError::Io {
            action: "announcing the address on",
            path: PathBuf::from("/dev/stdout"),
            source,
        })?;
    runtime.block_on(server.run(std::future::pending()))?;
    Ok(())
}

/// The server's memory at one moment, in KiB.
#[derive(Debug, Clone, Copy)]
pub(super) struct Memory {
    pub(super) rss: u64,
    pub(super) hwm: u64,
    pub(super) threads: u64,
}

/// The server's memory idle, just after every claim arrived, and later while they are still held.
struct Readings {
    idle: Memory,
    held: Memory,
    held_later: Memory,
}

/// How the claims reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    AllAtOnce,
    /// [`PACED_BATCH`] claims every [`PACED_EVERY`].
    Paced,
}

const PACED_BATCH: usize = 10;
const PACED_EVERY: Duration = Duration::from_millis(10);

/// Measures and prints the memory table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!("\nmemory: the server (a process of its own) holding {HELD} long-polling claims");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LabBenchError::Runtime)?;
    print_header();
    for arrival in [Arrival::AllAtOnce, Arrival::Paced] {
        let scratch = super::scratch_dir()?;
        let store = StoreLocation::Sqlite(scratch.path().join("server"));
        let server = ServerProcess::start(&store)?;
        let readings = runtime.block_on(measure(&server, arrival))?;
        print_rows(arrival, &readings);
    }
    Ok(())
}

/// Registers the agents, reads the idle server, holds every claim, reads it again; checks every claim was held.
async fn measure(server: &ServerProcess, arrival: Arrival) -> Result<Readings, LabBenchError> {
    register_agents(&server.base).await?;
    tokio::time::sleep(SETTLE).await;
    let idle = server.memory()?;
    let idle_fds = server.open_files()?;
    let claims = start_claims(&server.base, arrival).await?;
    wait_for_connections(server, idle_fds + HELD).await?;
    tokio::time::sleep(SETTLE).await;
    let held = server.memory()?;
    tokio::time::sleep(AFTER_BURST).await;
    let held_later = server.memory()?;
    check_every_claim_was_held(claims).await?;
    Ok(Readings {
        idle,
        held,
        held_later,
    })
}

/// Registers the agent ids one at a time, on a client dropped afterwards so its connection does not count.
async fn register_agents(base: &str) -> Result<(), LabBenchError> {
    let http = http_client()?;
    let registration = RegisterAgent {
        queues: vec![QUEUE.to_owned()],
        images: Vec::new(),
    };
    for index in 0..HELD {
        let url = format!("{base}/api/v1/agents/{}", agent_id(index));
        http.post(&url)
            .json(&registration)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| LabBenchError::Http {
                what: format!("registering {url}"),
                source,
            })?;
    }
    Ok(())
}

fn agent_id(index: usize) -> String {
    format!("memory-agent-{index}")
}

fn http_client() -> Result<reqwest::Client, LabBenchError> {
    reqwest::Client::builder()
        .timeout(CLAIM_WAIT + PATIENCE)
        .build()
        .map_err(|source| LabBenchError::Http {
            what: "building the HTTP client".into(),
            source,
        })
}

/// How one held claim ended: its status and how long after it was sent.
type ClaimEnd = Result<(usize, u16, Duration), LabBenchError>;

/// Sends every claim as `arrival` says; each is answered when its wait ends.
async fn start_claims(base: &str, arrival: Arrival) -> Result<JoinSet<ClaimEnd>, LabBenchError> {
    let http = http_client()?;
    let body = ClaimRequest {
        queues: vec![QUEUE.to_owned()],
        wait_seconds: Some(CLAIM_WAIT.as_secs_f64()),
    };
    let mut claims = JoinSet::new();
    for index in 0..HELD {
        if arrival == Arrival::Paced && index > 0 && index % PACED_BATCH == 0 {
            tokio::time::sleep(PACED_EVERY).await;
        }
        let request = http
            .post(format!("{base}/api/v1/agents/{}/claim", agent_id(index)))
            .json(&body);
        claims.spawn(async move {
            let sent = Instant::now();
            let response = request.send().await.map_err(|source| LabBenchError::Http {
                what: format!("claim {index}"),
                source,
            })?;
            Ok((index, response.status().as_u16(), sent.elapsed()))
        });
    }
    Ok(claims)
}

/// Waits until the server has `expected` files open: every claim's connection accepted.
async fn wait_for_connections(
    server: &ServerProcess,
    expected: usize,
) -> Result<(), LabBenchError> {
    let deadline = Instant::now() + PATIENCE;
    while server.open_files()? < expected {
        if Instant::now() > deadline {
            return Err(LabBenchError::TimedOut {
                what: format!("the server to accept {HELD} connections"),
                patience: PATIENCE,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Every claim must end 204 (nothing to run) after nearly its whole wait: proof that the server held it.
async fn check_every_claim_was_held(mut claims: JoinSet<ClaimEnd>) -> Result<(), LabBenchError> {
    while let Some(ended) = claims.join_next().await {
        let (index, status, elapsed) = ended.map_err(|_| LabBenchError::WorkerPanicked)??;
        if status != 204 || elapsed < HELD_AT_LEAST {
            return Err(LabBenchError::ClaimNotHeld {
                index,
                status,
                elapsed,
                wait: CLAIM_WAIT,
            });
        }
    }
    Ok(())
}

fn print_header() {
    println!(
        "\n| server memory | VmRSS | VmHWM | threads | **VmRSS / idle** | VmRSS per held claim |\n\
         |---|---|---|---|---|---|"
    );
}

fn print_rows(arrival: Arrival, readings: &Readings) {
    let idle = readings.idle;
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let row = |name: &str, memory: Memory| {
        println!(
            "| {name} | {} | {} | {} | {:.2}× | {:.1} KiB |",
            mib(memory.rss),
            mib(memory.hwm),
            memory.threads,
            memory.rss as f64 / idle.rss as f64,
            memory.rss.saturating_sub(idle.rss) as f64 / HELD as f64
        );
    };
    let how = match arrival {
        Arrival::AllAtOnce => "sent all at once".to_owned(),
        Arrival::Paced => format!("paced, {PACED_BATCH} every {} ms", PACED_EVERY.as_millis()),
    };
    row(&format!("idle ({HELD} agents registered)"), idle);
    for (after, memory) in [
        (SETTLE, readings.held),
        (SETTLE + AFTER_BURST, readings.held_later),
    ] {
        row(
            &format!(
                "holding {HELD} claims {how}, {} s after the server had all {HELD} connections",
                after.as_secs()
            ),
            memory,
        );
    }
}

/// The server running as `proctor-bench lab serve`, killed when dropped.
pub(super) struct ServerProcess {
    child: Child,
    /// Its base URL.
    pub(super) base: String,
    // Kept open: the server's later writes to stdout must not fail.
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts the server on a free port of 127.0.0.1, with its store at `store`.
    pub(super) fn start(store: &StoreLocation) -> Result<ServerProcess, LabBenchError> {
        let exe = std::env::current_exe().map_err(|source| LabBenchError::Io {
            action: "finding",
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let program = exe.display().to_string();
        let mut command = Command::new(&exe);
        command.args(["lab", "serve"]);
        match store {
            StoreLocation::Sqlite(data_dir) => command.arg("--data-dir").arg(data_dir),
            StoreLocation::Postgres(url) => command.args(["--store", url]),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(ProcessError::spawn(&program))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(LabBenchError::ServeProcess("no stdout pipe".into()));
        };
        let mut server = ServerProcess {
            child,
            base: String::new(),
            stdout: BufReader::new(stdout),
        };
        server.base = server.read_address()?;
        Ok(server)
    }

    /// The base URL from the server's first line.
    fn read_address(&mut self) -> Result<String, LabBenchError> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|error| {
            LabBenchError::ServeProcess(format!("reading its address: {error}"))
        })?;
        line.trim()
            .strip_prefix(LISTENING)
            .map(|address| format!("http://{address}"))
            .ok_or_else(|| {
                LabBenchError::ServeProcess(format!("it printed {line:?}, not its address"))
            })
    }

    fn proc_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{name}", self.child.id()))
    }

    /// Its memory now, from `/proc/PID/status`.
    pub(super) fn memory(&self) -> Result<Memory, LabBenchError> {
        let path = self.proc_path("status");
        let status = fs::read_to_string(&path).map_err(|source| LabBenchError::Io {
            action: "reading",
            path: path.clone(),
            source,
        })?;
        let field = |field: &'static str| {
            status_field(&status, field).ok_or_else(|| LabBenchError::ProcStatus {
                field,
                path: path.clone(),
            })
        };
        Ok(Memory {
            rss: field("VmRSS")?,
            hwm: field("VmHWM")?,
            threads: field("Threads")?,
        })
    }

    /// How many files (sockets included) it has open now.
    pub(super) fn open_files(&self) -> Result<usize, LabBenchError> {
        let path = self.proc_path("fd");
        let entries = fs::read_dir(&path).map_err(|source| LabBenchError::Io {
            action: "listing",
            path,
            source,
        })?;
        Ok(entries.count())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // The server keeps nothing worth a graceful stop: its store is in a scratch directory.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number of a `/proc/PID/status` line like `VmRSS: 12345 kB` (a tab after the colon).
fn status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_by_exact_name() {
        let status = "Name:\tserver\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS"), Some(1024));
        assert_eq!(status_field(status, "VmHWM"), Some(2048));
        assert_eq!(status_field(status, "Threads"), Some(7));
        assert_eq!(status_field(status, "VmRS"), None);
        assert_eq!(status_field(status, "VmSwap"), None);
    }
}
