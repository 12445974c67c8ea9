//! Labs on PostgreSQL through the real binary: `proctor server --store postgres://…` (and `PROCTOR_STORE`), tokens
//! made in the database, and two servers on one database serving one lab. The database is a fresh one on the
//! cluster `scripts/test` starts.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proctor_api::JobState;
use proctor_testkit::PostgresDatabase;
use support::{proctor, Lab};

/// An admin token made in the database at `url`, before any server runs.
fn admin_token(url: &str) -> String {
    let output = proctor()
        .args(["token", "create", "--role", "admin"])
        .env("PROCTOR_STORE", url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_lab_on_postgres_runs_jobs_and_keeps_them_across_a_server_restart() {
    let database = PostgresDatabase::create();
    let mut lab = Lab::start(&["--store", &database.url]);
    lab.agent("a1", "local", &[]);
    let file = lab.job_file(
        "hello.yaml",
        "job_queue: local\nname: on postgres\ntest_data:\n  test_cmds: echo hello from postgres\n",
    );
    let (code, out, err) = lab.run(&["submit", &file, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    assert_eq!(lab.job(&id).state, JobState::Passed);
    assert!(lab.log(&id).contains("hello from postgres"));

    lab.kill_server();
    lab.start_server(&["--store", &database.url]);
    let job = lab.job(&id);
    assert_eq!(
        (job.state, job.name.as_deref()),
        (JobState::Passed, Some("on postgres"))
    );
    assert!(lab.log(&id).contains("hello from postgres"));
}

#[test]
fn two_servers_on_one_database_serve_one_lab() {
    let database = PostgresDatabase::create();
    let mut first = Lab::start(&["--store", &database.url]);
    let second = Lab::start(&["--store", &database.url]);
    // The agent's claims wait up to 30 s on the first server (its hold); only the first server's follower of the
    // database's changes can wake one for a job the second server took.
    let agent = proctor()
        .args([
            "agent", "--server", &first.url, "--id", "a1", "--queue", "local",
        ])
        .args(["--heartbeat", "1", "--claim-wait", "30", "--work-dir"])
        .arg(first.dir.path().join("work"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    first.children.add(agent);
    let client = first.client(None);
    support::eventually(|| client.agents().is_ok_and(|agents| agents.len() == 1));
    // Let its first claim settle into its wait.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let submitted = std::time::Instant::now();
    // Submitted to the second server; the agent asks the first.
    let file = second.job_file(
        "elsewhere.yaml",
        "job_queue: local\nname: through the other server\ntest_data:\n  test_cmds: echo served\n",
    );
    let (code, out, err) = second.run(&["submit", &file, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    assert!(
        submitted.elapsed() < std::time::Duration::from_secs(10),
        "the held claim was not woken: the job waited {:?}",
        submitted.elapsed()
    );
    let seen_by_first = first.job(&id);
    assert_eq!(seen_by_first.state, JobState::Passed);
    assert_eq!(seen_by_first.agent_id.as_deref(), Some("a1"));
    assert!(second.log(&id).contains("served"));
}

#[test]
fn tokens_made_in_postgres_guard_the_lab() {
    let database = PostgresDatabase::create();
    let admin = admin_token(&database.url);
    let lab = Lab::start(&["--store", &database.url]);
    // The token the database holds is the lab's: without it the API refuses, with it it answers.
    let (code, _, err) = lab.run(&["jobs"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("401") || err.to_lowercase().contains("token"),
        "{err}"
    );
    let (code, _, err) = lab.run(&["jobs", "--token", &admin]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_store_that_is_no_store_is_refused_with_the_forms_there_are() {
    let output = proctor()
        .args(["server", "--store", "mysql://db/proctor"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("postgres://") && err.contains("sqlite:"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let output = proctor()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "postgres://lab:s3cret@127.0.0.1:1/proctor",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("cannot open the store postgres://lab:***@127.0.0.1:1/proctor"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

/// A shell command appending a subunit event to the job's results.
fn emit(args: &str) -> String {
    format!(
        "{} subunit emit {args} >> \"$PROCTOR_RESULTS\"",
        assert_cmd::cargo::cargo_bin("proctor").display()
    )
}

#[test]
fn an_agent_moves_to_the_other_server_when_its_server_is_killed_mid_job() {
    let database = PostgresDatabase::create();
    let mut first = Lab::start(&["--store", &database.url]);
    let second = Lab::start(&["--store", &database.url]);
    let servers = format!("{},{}", first.url, second.url);
    first.agent_of(&servers, "a1", "local", &[]);
    let file = first.job_file(
        "long.yaml",
        &format!(
            "job_queue: local\nname: outlives its server\ntest_data:\n  test_cmds:\n    - {}\n    - \
             for i in $(seq 60); do echo \"line $i\"; sleep 0.05; done\n    - {}\n    - {}\n",
            emit("--test before.kill --status success"),
            emit("--test after.kill --status success"),
            emit("--test after.kill.too --status fail"),
        ),
    );
    let id = second.submit(&file);
    support::eventually(|| second.log(&id).contains("line 10\n"));
    first.kill_server();
    let job = second.ended(&id);
    assert_eq!(job.state, JobState::Failed, "{:?}", job.reason);
    // Every line once, in order: nothing lost and nothing sent twice across the move.
    let log = second.log(&id);
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("line "))
        .collect();
    let expected: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "{log}");
    let tests = second.client(None).tests(&id).unwrap();
    let runs: Vec<(String, usize)> = tests
        .results
        .iter()
        .map(|test| (test.test_id.clone(), test.runs.len()))
        .collect();
    assert_eq!(
        runs,
        [
            ("after.kill".to_owned(), 1),
            ("after.kill.too".to_owned(), 1),
            ("before.kill".to_owned(), 1)
        ],
        "each test once"
    );
}

#[test]
fn a_lab_moves_from_sqlite_to_postgres_without_loss_and_only_once() {
    let mut lab = Lab::start(&[]);
    lab.agent("a1", "local", &[]);
    let file = lab.job_file(
        "moved.yaml",
        &format!(
            "job_queue: local\nname: moved\ntest_data:\n  test_cmds:\n    - echo moved along\n    - {}\n",
            emit("--test moved.test --status success")
        ),
    );
    let (code, out, err) = lab.run(&["submit", &file, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let log = lab.log(&id);
    lab.kill_server();

    let database = PostgresDatabase::create();
    let sqlite = format!("sqlite:{}", lab.data_dir().display());
    let copy = || {
        proctor()
            .args(["store", "copy", "--from", &sqlite, "--to", &database.url])
            .output()
            .unwrap()
    };
    let first = copy();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("copied jobs: 1 rows"));
    let second = copy();
    assert!(!second.status.success());
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(refusal.contains("already holds data"), "{refusal}");

    lab.start_server(&["--store", &database.url]);
    let job = lab.job(&id);
    assert_eq!(
        (job.state, job.name.as_deref()),
        (JobState::Passed, Some("moved"))
    );
    assert_eq!(lab.log(&id), log, "the log moved byte for byte");
    let tests = lab.client(None).tests(&id).unwrap();
    assert_eq!(tests.results.len(), 1);
    assert_eq!(tests.results[0].test_id, "moved.test");
}

#[test]
fn the_store_can_come_from_the_servers_configuration_file() {
    let database = PostgresDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\nstore = \"{}\"\n", database.url),
    )
    .unwrap();
    let mut server = proctor()
        .args(["server", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        first_line.contains("(store postgres://postgres@127.0.0.1:"),
        "{first_line}"
    );

    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nstroe = \"sqlite:x\"\n").unwrap();
    let refused = proctor()
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("stroe") && err.contains("line 2"), "{err}");
}

/// Every job the lab holds, through `client`, paging to the end.
fn every_job(client: &proctor_client::Client) -> Vec<proctor_api::JobSummaryView> {
    let mut jobs = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .jobs(&proctor_api::JobsQuery {
                limit: Some(1000),
                cursor: cursor.take(),
                ..proctor_api::JobsQuery::default()
            })
            .unwrap();
        jobs.extend(page.jobs);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return jobs,
        }
    }
}

#[test]
fn agents_spread_over_two_servers_run_a_thousand_jobs_each_once() {
    let database = PostgresDatabase::create();
    let mut first = Lab::start(&["--store", &database.url]);
    let second = Lab::start(&["--store", &database.url]);
    let (a, b) = (first.url.clone(), second.url.clone());
    // Half the agents ask the first server first, half the second.
    for index in 0..6 {
        let servers = if index % 2 == 0 {
            format!("{a},{b}")
        } else {
            format!("{b},{a}")
        };
        first.agent_of(&servers, &format!("a{index}"), "local", &[]);
    }
    let clients = [first.client(None), second.client(None)];
    let submitted: std::collections::BTreeSet<String> = (0..1000)
        .map(|index| {
            clients[index % 2]
                .submit_job(
                    b"job_queue: local\ntest_data:\n  test_cmds: 'true'\n",
                    false,
                )
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(submitted.len(), 1000);
    let mut jobs = Vec::new();
    support::eventually(|| {
        jobs = every_job(&clients[0]);
        jobs.iter().all(|job| job.state.is_final())
    });
    let listed: std::collections::BTreeSet<String> =
        jobs.iter().map(|job| job.id.clone()).collect();
    assert_eq!(listed, submitted, "none lost, none made up");
    for job in &jobs {
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Passed, 1),
            "job {} was not claimed exactly once: {:?}",
            job.id,
            job.reason
        );
    }
    let agents_used: std::collections::BTreeSet<_> =
        jobs.iter().filter_map(|job| job.agent_id.clone()).collect();
    assert!(agents_used.len() > 1, "{agents_used:?}");
}
