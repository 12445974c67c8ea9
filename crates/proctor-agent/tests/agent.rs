//! The agent against the real server: a server on 127.0.0.1 with a port of its own and a SQLite store in a
//! temporary directory, an agent running in a thread, jobs submitted over HTTP and their end states, logs and
//! results read back over HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proctor_agent::{Agent, AgentSettings};
use proctor_job::{AgentConfig, Name};
use proctor_server::{Server, ServerConfig, ServerError};
use reqwest::blocking::Client;
use serde_json::Value;
use tokio::sync::oneshot;

/// Generous: only a broken agent or server takes this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server and one agent serving queue `local`, both running until dropped.
struct Lab {
    base: String,
    server: Option<RunningServer>,
    http: Client,
    work_dir: tempfile::TempDir,
    shutdown: Arc<AtomicBool>,
    agent: Option<JoinHandle<()>>,
    // Dropped last: stopping the runtime stops the server.
    _data_dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Lab {
    /// Starts a server and an agent whose configuration `adjust` may change.
    fn start(adjust: impl FnOnce(&mut AgentConfig)) -> Lab {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let server =
            RunningServer::start(&runtime, data_dir.path(), "127.0.0.1:0".parse().unwrap());
        let base = format!("http://{}", server.address);

        let mut config = AgentConfig::new(name("test-agent"), vec![name("local")]);
        config.server_address = base.clone();
        adjust(&mut config);
        let work_dir = tempfile::tempdir().unwrap();
        let settings = AgentSettings {
            claim_wait: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(200),
            grace: Duration::from_secs(1),
            drain_limit: Duration::from_secs(10),
            cleanup_allowance: Duration::from_secs(30),
        };
        let agent = Agent::with_settings(config, work_dir.path().to_owned(), settings).unwrap();
        // Registered before any submit: the server refuses jobs for queues no agent ever served.
        agent.register().unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&shutdown);
        let agent = std::thread::spawn(move || {
            agent.run(&stop, |error| panic!("the agent failed: {error}"));
        });
        Lab {
            base,
            server: Some(server),
            http: Client::builder().timeout(PATIENCE).build().unwrap(),
            work_dir,
            shutdown,
            agent: Some(agent),
            _data_dir: data_dir,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Stops the server, leaves it down for `down_for`, and starts it again on the same address and store.
    fn restart_server(&mut self, down_for: Duration) {
        let server = self.server.take().unwrap();
        let address = server.address;
        server.stop(&self._runtime);
        std::thread::sleep(down_for);
        self.server = Some(RunningServer::start(
            &self._runtime,
            self._data_dir.path(),
            address,
        ));
    }

    /// Submits a YAML job; answers its id.
    fn submit(&self, yaml: &str) -> String {
        let response = self
            .http
            .post(self.url("/jobs"))
            .header("content-type", "application/yaml")
            .body(yaml.to_owned())
            .send()
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().unwrap());
        let job: Value = response.json().unwrap();
        job["id"].as_str().unwrap().to_owned()
    }

    fn job(&self, id: &str) -> Value {
        self.http
            .get(self.url(&format!("/jobs/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Waits for the job to end; answers it with its phases.
    fn wait_for_end(&self, id: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self.job(id);
            if !matches!(job["state"].as_str(), Some("queued" | "running")) {
                return job;
            }
            assert!(Instant::now() < deadline, "the job never ended: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stream(&self, id: &str, stream: &str) -> Vec<u8> {
        let response = self
            .http
            .get(self.url(&format!("/jobs/{id}/{stream}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().unwrap().to_vec()
    }

    fn log(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.stream(id, "log")).into_owned()
    }

    /// Waits until the job's log (as uploaded so far) contains `text`.
    fn wait_for_log(&self, id: &str, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log(id).contains(text) {
            assert!(
                Instant::now() < deadline,
                "the log never showed {text:?}: {}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cancel(&self, id: &str) -> Value {
        self.http
            .post(self.url(&format!("/jobs/{id}/cancel")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.work_dir.path().join(id)
    }
}

/// A server task and what stops it.
struct RunningServer {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    fn start(runtime: &tokio::runtime::Runtime, data_dir: &Path, listen: SocketAddr) -> Self {
        let mut config = ServerConfig::new(data_dir.to_owned());
        config.listen = listen;
        let server = runtime.block_on(Server::bind(config)).unwrap();
        let address = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(server.run(async {
            let _ = stopped.await;
        }));
        RunningServer {
            address,
            stop,
            task,
        }
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        runtime.block_on(self.task).unwrap().unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(agent) = self.agent.take() {
            let _ = agent.join();
        }
    }
}

fn name(text: &str) -> Name {
    Name::new(text).unwrap()
}

/// The job's phases as (name, exit status).
fn phases(job: &Value) -> Vec<(String, Option<i64>)> {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| {
            (
                phase["name"].as_str().unwrap().to_owned(),
                phase["exit_status"].as_i64(),
            )
        })
        .collect()
}

/// Whether process `pid` is still running (a zombie is not).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The pid a job's script wrote to `file`.
fn read_pid(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A job script that starts a long sleep in the background, writes its pid to `pid_file`, and waits for it.
fn background_sleeper(pid_file: &Path) -> String {
    format!(
        "    echo started\n    sleep 300 &\n    echo $! > {}\n    wait\n",
        pid_file.display()
    )
}

#[test]
fn a_passing_job_passes_with_its_output_once_and_in_order() {
    let lab = Lab::start(|_| {});
    let id = lab.submit(
        "job_queue: local\ntest_data:\n  test_cmds:\n    - echo first line\n    - echo \"job $PROCTOR_JOB_ID in $PROCTOR_PHASE\"\n    - test -f \"$PROCTOR_JOB_FILE\" && test -d \"$PROCTOR_ARTIFACTS\"\n    - echo last line\n",
    );
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "passed", "{job}");
    assert_eq!(phases(&job), vec![("test".to_owned(), Some(0))]);
    let log = lab.log(&id);
    for line in [
        "first line\n",
        &format!("job {id} in test\n"),
        "last line\n",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} in {log:?}");
    }
    let first = log.find("first line").unwrap();
    let last = log.find("last line").unwrap();
    assert!(first < last, "{log}");
    let job_file: Value =
        serde_json::from_slice(&std::fs::read(lab.job_dir(&id).join("job.json")).unwrap()).unwrap();
    assert_eq!(job_file["job_queue"], "local");
}

#[test]
fn a_failing_test_phase_fails_the_job_and_cleanup_still_runs() {
    let lab = Lab::start(|config| config.cleanup_command = Some("echo tidied".into()));
    let id = lab.submit(
        "job_queue: local\ntest_data:\n  test_cmds: |\n    echo about to fail\n    exit 3\n",
    );
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["reason"].as_str().unwrap().contains("status 3"),
        "{job}"
    );
    assert_eq!(
        phases(&job),
        vec![
            ("test".to_owned(), Some(3)),
            ("cleanup".to_owned(), Some(0))
        ]
    );
    let log = lab.log(&id);
    assert!(
        log.find("about to fail").unwrap() < log.find("tidied").unwrap(),
        "{log}"
    );
}

#[test]
fn a_failing_setup_is_an_error_and_skips_the_test_phase() {
    let lab = Lab::start(|config| config.setup_command = Some("echo no device >&2; exit 1".into()));
    let id = lab.submit("job_queue: local\ntest_data:\n  test_cmds: [echo never]\n");
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "error", "{job}");
    assert_eq!(phases(&job), vec![("setup".to_owned(), Some(1))]);
    let log = lab.log(&id);
    assert!(
        log.contains("no device") && !log.contains("never\n"),
        "{log}"
    );
}

#[test]
fn the_global_timeout_kills_the_job_and_its_whole_tree() {
    let lab = Lab::start(|_| {});
    let pid_file = lab.work_dir.path().join("sleeper.pid");
    let id = lab.submit(&format!(
        "job_queue: local\nglobal_timeout: 2\ntest_data:\n  test_cmds: |\n{}",
        background_sleeper(&pid_file)
    ));
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "killed", "{job}");
    assert!(
        job["reason"].as_str().unwrap().contains("global timeout"),
        "{job}"
    );
    assert!(
        !is_running(read_pid(&pid_file)),
        "the background sleep survived"
    );
}

#[test]
fn the_output_timeout_kills_a_silent_job() {
    let lab = Lab::start(|_| {});
    let id = lab.submit("job_queue: local\noutput_timeout: 1\ntest_data:\n  test_cmds: |\n    echo then silence\n    sleep 300\n");
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "killed", "{job}");
    assert!(
        job["reason"].as_str().unwrap().contains("output timeout"),
        "{job}"
    );
    assert!(lab.log(&id).contains("then silence\n"));
}

#[test]
fn cancelling_a_running_job_stops_its_tree_runs_cleanup_and_ends_cancelled() {
    let lab = Lab::start(|config| config.cleanup_command = Some("echo cleanup ran".into()));
    let pid_file = lab.work_dir.path().join("sleeper.pid");
    let id = lab.submit(&format!(
        "job_queue: local\ntest_data:\n  test_cmds: |\n{}",
        background_sleeper(&pid_file)
    ));
    // Seeing the output before the job ends shows it streams live.
    lab.wait_for_log(&id, "started\n");
    assert_eq!(lab.cancel(&id)["outcome"], "requested");
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        !is_running(read_pid(&pid_file)),
        "the background sleep survived"
    );
    assert!(lab.log(&id).contains("cleanup ran\n"));
}

#[test]
fn a_subunit_stream_written_to_proctor_results_is_uploaded_and_its_failures_fail_the_job() {
    let lab = Lab::start(|_| {});
    let output = proctor_testkit::venv_bin("subunit-output");
    let output = output.display();
    let id = lab.submit(&format!(
        "job_queue: local\ntest_data:\n  test_cmds: |\n    {output} --inprogress demo.one >> \"$PROCTOR_RESULTS\"\n    {output} --success demo.one >> \"$PROCTOR_RESULTS\"\n    {output} --fail demo.two >> \"$PROCTOR_RESULTS\"\n"
    ));
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["reason"].as_str().unwrap().contains("demo.two"),
        "{job}"
    );
    let results = lab.stream(&id, "results");
    let events: Vec<(String, String)> = proctor_subunit::EventReader::new(results.as_slice())
        .map(|event| {
            let event = event.unwrap();
            (
                event.test_id.unwrap_or_default(),
                event
                    .status
                    .map(|status| status.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("demo.one", "inprogress"),
        ("demo.one", "success"),
        ("demo.two", "fail"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(id, status)| ((*id).to_owned(), (*status).to_owned()))
        .collect();
    assert_eq!(events, expected);
    assert_eq!(
        results,
        std::fs::read(lab.job_dir(&id).join("results.subunit")).unwrap()
    );
}

#[test]
fn huge_binary_output_and_a_deleted_work_dir_do_not_harm_the_agent() {
    let lab = Lab::start(|config| config.cleanup_command = Some("echo cleanup in $PWD".into()));
    let size = 3 * 1024 * 1024;
    let id = lab.submit(&format!(
        "job_queue: local\ntest_data:\n  test_cmds: |\n    head -c {size} /dev/zero | tr '\\0' '\\377'\n    rm -rf \"$PROCTOR_WORK_DIR\"\n"
    ));
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "passed", "{job}");
    let log = lab.stream(&id, "log");
    assert_eq!(log.iter().filter(|&&byte| byte == 0xff).count(), size);
    assert!(String::from_utf8_lossy(&log).contains("cleanup in "));
    // The agent goes on taking jobs.
    let next = lab.submit("job_queue: local\ntest_data:\n  test_cmds: [echo still here]\n");
    assert_eq!(lab.wait_for_end(&next)["state"], "passed");
}

#[test]
fn output_written_while_the_server_is_down_arrives_whole_after_it_returns() {
    let mut lab = Lab::start(|_| {});
    let id = lab.submit(
        "job_queue: local\ntest_data:\n  test_cmds: |\n    for i in $(seq 1 30); do echo line $i; sleep 0.1; done\n",
    );
    lab.wait_for_log(&id, "line 3\n");
    lab.restart_server(Duration::from_secs(1));
    let job = lab.wait_for_end(&id);
    assert_eq!(job["state"], "passed", "{job}");
    let log = lab.log(&id);
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("line "))
        .collect();
    let expected: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "{log}");
}
