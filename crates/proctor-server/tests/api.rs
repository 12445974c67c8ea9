//! The HTTP API over real HTTP: a server on 127.0.0.1 with a port of its own and a SQLite store in a temporary
//! directory, driven by reqwest.

use std::time::Duration;

use proctor_server::{Server, ServerConfig, ServerError};
use proctor_store::{Role, SqliteStore, Store};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Generous: only a broken server takes this long.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running server and a client for it.
struct TestServer {
    base: String,
    client: Client,
    data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server with the defaults changed by `adjust`, on a free loopback port.
    async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        TestServer::start_in(data_dir, adjust).await
    }

    /// Starts a server on the store in `data_dir`.
    async fn start_in(
        data_dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig::new(data_dir.path().to_owned());
        config.listen = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let server = Server::bind(config).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            client: Client::new(),
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers agent `id` on `queues`.
    async fn register(&self, id: &str, queues: &[&str]) {
        let response = self
            .client
            .post(self.url(&format!("/api/v1/agents/{id}")))
            .json(&json!({"queues": queues}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
    }

    /// Submits YAML text; returns the status and the JSON body.
    async fn submit(&self, yaml: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url("/api/v1/jobs"))
            .header("content-type", "application/yaml")
            .body(yaml.to_owned())
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Submits a job on `local` (served by agent `a1`) and returns its id.
    async fn submit_local_job(&self) -> String {
        self.register("a1", &["local"]).await;
        let (status, job) = self
            .submit("job_queue: local\ntest_data:\n  test_cmds: echo hi\n")
            .await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Claims for `agent` on `local` with the given hold; returns the status and body text.
    async fn claim(&self, agent: &str, wait_seconds: f64) -> (StatusCode, String) {
        let response = self
            .client
            .post(self.url(&format!("/api/v1/agents/{agent}/claim")))
            .json(&json!({"queues": ["local"], "wait_seconds": wait_seconds}))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn put_log(&self, job: &str, offset: u64, bytes: &'static [u8]) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.url(&format!(
                "/api/v1/jobs/{job}/log?offset={offset}&phase=test"
            )))
            .body(bytes)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Stops the server and waits for it to end cleanly.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_submitted_job_can_be_read_back() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    let job = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "queued");
    assert_eq!(job["queue"], "local");
    assert_eq!(job["definition"]["test_data"]["test_cmds"], "echo hi");
    assert_eq!(job["phases"], json!([]));
    let listed = server
        .get_json("/api/v1/jobs?queue=local&state=queued")
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let none = server.get_json("/api/v1/jobs?state=running").await;
    assert_eq!(none, json!([]));
    let response = server
        .client
        .get(server.url("/api/v1/jobs?state=sleeping"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = server
        .client
        .get(server.url("/api/v1/jobs/no-such-job"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn a_json_job_is_read_as_json() {
    let server = TestServer::start(|_| {}).await;
    server.register("a1", &["local"]).await;
    let (status, job) = server
        .post_json(
            "/api/v1/jobs",
            json!({"job_queue": "local", "job_priority": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["priority"], 5);
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_job_gets_the_field_path_line_and_column() {
    let server = TestServer::start(|_| {}).await;
    let (status, body) = server
        .submit("job_queue: local\ntest_data:\n  test_cmds: [echo, [1]]\n")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "invalid_job");
    assert_eq!(body["problem"]["path"], "test_data.test_cmds[1]");
    assert_eq!(body["problem"]["line"], 3);
    assert!(body["problem"]["column"].as_u64().is_some(), "{body}");

    let (status, body) = server.submit("job_queue: local\nunknown_field: 1\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["problem"]["path"], "unknown_field");

    let (status, body) = server.submit("job_queue: \"unterminated\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_job");

    let response = server
        .client
        .post(server.url("/api/v1/jobs"))
        .header("content-type", "application/xml")
        .body("<job/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    server.stop().await;
}

#[tokio::test]
async fn a_queue_no_agent_served_is_refused_unless_allowed() {
    let server = TestServer::start(|_| {}).await;
    let (status, body) = server.submit("job_queue: typo\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "unknown_queue");
    assert!(body["message"].as_str().unwrap().contains("typo"));

    let response = server
        .client
        .post(server.url("/api/v1/jobs?allow_unknown_queue=true"))
        .body("job_queue: typo\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_claim_is_woken_by_a_submit() {
    let server = TestServer::start(|_| {}).await;
    server.register("a1", &["local"]).await;
    let claim = {
        let (client, url) = (server.client.clone(), server.url("/api/v1/agents/a1/claim"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"queues": ["local"]}))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };
    // Let the claim reach its wait; a submit before that is found by the claim's first try, which also passes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, submitted) = server.submit("job_queue: local\n").await;
    // The server would hold the claim 30 s; an answer well before that means the submit woke it.
    let (status, claimed) = tokio::time::timeout(Duration::from_secs(10), claim)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claimed["id"], submitted["id"]);
    assert_eq!(claimed["state"], "running");
    assert_eq!(claimed["agent_id"], "a1");
    server.stop().await;
}

#[tokio::test]
async fn a_claim_with_nothing_to_do_ends_with_204() {
    let server = TestServer::start(|config| config.claim_hold = Duration::from_millis(200)).await;
    server.register("a1", &["local"]).await;
    let (status, body) = server.claim("a1", 30.0).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    let (status, _) = server.claim("unregistered", 0.0).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .post_json("/api/v1/agents/a1/claim", json!({"queues": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn a_heartbeat_renews_the_lease_and_carries_cancel_requests() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    let (status, _) = server.claim("a1", 0.0).await;
    assert_eq!(status, StatusCode::OK);

    let (status, reply) = server
        .post_json("/api/v1/agents/a1/heartbeat", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply, json!({"renewed": [id], "cancel_requested": []}));

    let (status, cancel) = server
        .post_json(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancel, json!({"outcome": "requested", "state": "running"}));
    let (_, reply) = server
        .post_json("/api/v1/agents/a1/heartbeat", json!({}))
        .await;
    assert_eq!(reply["cancel_requested"], json!([id]));

    let (status, job) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/finish"),
            json!({"state": "cancelled", "reason": "cancelled by a user", "agent_id": "a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "cancelled");
    let (_, cancel) = server
        .post_json(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        cancel,
        json!({"outcome": "already_ended", "state": "cancelled"})
    );
    server.stop().await;
}

#[tokio::test]
async fn log_uploads_are_idempotent_and_a_gap_is_a_409_with_the_expected_offset() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    assert_eq!(
        server.put_log(&id, 0, b"hello ").await,
        (StatusCode::OK, json!({"end_offset": 6}))
    );
    // A resend that overlaps what is stored adds only its new tail; an exact resend adds nothing.
    assert_eq!(
        server.put_log(&id, 0, b"hello world").await,
        (StatusCode::OK, json!({"end_offset": 11}))
    );
    assert_eq!(
        server.put_log(&id, 6, b"world").await,
        (StatusCode::OK, json!({"end_offset": 11}))
    );
    let (status, gap) = server.put_log(&id, 20, b"later").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(gap["error"], "stream_gap");
    assert_eq!(gap["expected_offset"], 11);

    let response = server
        .client
        .get(server.url(&format!("/api/v1/jobs/{id}/log")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["proctor-next-offset"], "11");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello world");
    let response = server
        .client
        .get(server.url(&format!("/api/v1/jobs/{id}/log?from=6&phase=test")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"world");

    let response = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/results?offset=0")))
        .body(&b"\xb3\x29\x00"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"end_offset": 3})
    );
    let response = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/log?offset=0&phase=lunch")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn a_job_runs_its_phases_and_finishes_with_its_result() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    server.register("a2", &["local"]).await;
    assert_eq!(server.claim("a1", 0.0).await.0, StatusCode::OK);
    let (status, _) = server
        .post_json(&format!("/api/v1/jobs/{id}/phases/test/start"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/phases/test/end"),
            json!({"exit_status": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/phases/reserve/end"),
            json!({"exit_status": 0}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a phase that never started cannot end"
    );

    let finish =
        |agent: &str| json!({"state": "passed", "reason": "every phase passed", "agent_id": agent});
    let (status, body) = server
        .post_json(&format!("/api/v1/jobs/{id}/finish"), finish("a2"))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "another agent cannot end the job: {body}"
    );
    let (status, job) = server
        .post_json(&format!("/api/v1/jobs/{id}/finish"), finish("a1"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "passed");
    assert_eq!(job["reason"], "every phase passed");
    let (status, _) = server
        .post_json(&format!("/api/v1/jobs/{id}/finish"), finish("a1"))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an ended job cannot end again"
    );

    let detail = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(detail["phases"][0]["name"], "test");
    assert_eq!(detail["phases"][0]["exit_status"], 0);
    server.stop().await;
}

#[tokio::test]
async fn a_lapsed_lease_is_reaped() {
    let server = TestServer::start(|config| {
        config.lease = Duration::from_millis(300);
        config.reap_interval = Duration::from_millis(100);
    })
    .await;
    let id = server.submit_local_job().await;
    assert_eq!(server.claim("a1", 0.0).await.0, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job = server.get_json(&format!("/api/v1/jobs/{id}")).await;
        if job["state"] == "error" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reaped: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agents = server.get_json("/api/v1/agents").await;
    assert_eq!(agents[0]["id"], "a1");
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_path() {
    let server = TestServer::start(|_| {}).await;
    let document = server.get_json("/api/v1/openapi.json").await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/jobs/{id}/finish",
        "/api/v1/jobs/{id}/log",
        "/api/v1/jobs/{id}/results",
        "/api/v1/jobs/{id}/phases/{phase}/start",
        "/api/v1/jobs/{id}/phases/{phase}/end",
        "/api/v1/agents",
        "/api/v1/agents/{id}",
        "/api/v1/agents/{id}/claim",
        "/api/v1/agents/{id}/heartbeat",
        "/api/v1/queues",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(paths["/api/v1/jobs"]["post"].is_object());
    assert!(document["components"]["schemas"]["JobView"].is_object());
    assert_eq!(
        document,
        serde_json::to_value(proctor_server::openapi()).unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text() {
    let server = TestServer::start(|_| {}).await;
    server.submit_local_job().await;
    assert_eq!(server.claim("a1", 0.0).await.0, StatusCode::OK);
    server.submit("job_queue: local\n").await;
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        "proctor_queue_depth{queue=\"local\"} 1",
        "proctor_jobs{state=\"queued\"} 1",
        "proctor_jobs{state=\"running\"} 1",
        "proctor_agents_online 1",
        "proctor_claim_latency_seconds_count 1",
        "proctor_claim_latency_seconds_bucket",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn with_tokens_every_request_needs_a_valid_token_of_the_right_role() {
    let data_dir = tempfile::tempdir().unwrap();
    let (admin, user, other_user, agent) = {
        let store = SqliteStore::open(data_dir.path()).unwrap();
        let now = jiff::Timestamp::now();
        let secret = |role| store.create_token(role, &[], now).unwrap().secret;
        (
            secret(Role::Admin),
            secret(Role::User),
            secret(Role::User),
            secret(Role::Agent),
        )
    };
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let jobs = server.url("/api/v1/jobs");

    let response = server.client.get(&jobs).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = server
        .client
        .get(&jobs)
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let register = server
        .client
        .post(server.url("/api/v1/agents/a1"))
        .bearer_auth(&user)
        .json(&json!({"queues": ["local"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        register.status(),
        StatusCode::FORBIDDEN,
        "a user is not an agent"
    );
    let register = server
        .client
        .post(server.url("/api/v1/agents/a1"))
        .bearer_auth(&agent)
        .json(&json!({"queues": ["local"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::OK);

    let submit = |token: &str| {
        server
            .client
            .post(&jobs)
            .bearer_auth(token)
            .body("job_queue: local\n")
            .send()
    };
    assert_eq!(
        submit(&agent).await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "an agent cannot submit"
    );
    let submitted: Value = submit(&user).await.unwrap().json().await.unwrap();
    let cancel = server.url(&format!(
        "/api/v1/jobs/{}/cancel",
        submitted["id"].as_str().unwrap()
    ));
    let by_other = server
        .client
        .post(&cancel)
        .bearer_auth(&other_user)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_other.status(),
        StatusCode::FORBIDDEN,
        "only the submitter or an admin may cancel"
    );
    let by_admin = server
        .client
        .post(&cancel)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(by_admin.status(), StatusCode::OK);
    let response = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_non_loopback_address_needs_authentication() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data_dir.path().to_owned());
    config.listen = "0.0.0.0:0".parse().unwrap();
    let refused = Server::bind(config.clone())
        .await
        .err()
        .expect("an open server on the network");
    assert!(
        matches!(refused, ServerError::OpenToNetwork { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("0.0.0.0"));

    SqliteStore::open(data_dir.path())
        .unwrap()
        .create_token(Role::Admin, &[], jiff::Timestamp::now())
        .unwrap();
    let server = Server::bind(config).await.unwrap();
    assert!(server.local_addr().ip().is_unspecified());
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let server = TestServer::start(|config| config.max_body_bytes = 1024).await;
    let id = server.submit_local_job().await;
    let big = format!("job_queue: local\nname: {}\n", "x".repeat(2048));
    let response = server
        .client
        .post(server.url("/api/v1/jobs"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/log?offset=0")))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing of the refused chunk was stored.
    assert_eq!(
        server.put_log(&id, 0, b"ok").await.1,
        json!({"end_offset": 2})
    );
    assert!(server.data_dir.path().exists());
    server.stop().await;
}
