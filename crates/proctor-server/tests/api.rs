//! The HTTP API over real HTTP: a server on 127.0.0.1 with a port of its own and a SQLite store in a temporary
//! directory, driven by reqwest.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proctor_server::{Server, ServerConfig, ServerError};
use proctor_store::{Role, Store};
use proctor_store_sqlite::SqliteStore;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Generous: only a broken server takes this long.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running server and a client for it.
struct TestServer {
    base: String,
    client: Client,
    /// The store's directory, removed when the test ends.
    _data_dir: tempfile::TempDir,
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
            _data_dir: data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers agent `id` on `queues`.
    async fn register(&self, id: &str, queues: &[&str]) {
        let request = self
            .client
            .post(self.url(&format!("/api/v1/agents/{id}")))
            .json(&json!({"queues": queues}));
        let (status, body) = self.send(request, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
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

    /// Reads `path` until its JSON satisfies `done` (the background reaper changes it); fails after [`PATIENCE`].
    async fn get_json_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.get_json(path).await;
            if done(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never changed as expected: {value}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)).json(&body), None)
            .await
    }

    /// Sends `request` with `token` (if any) and returns the status and the body as JSON (null when not JSON).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.unwrap();
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
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1));
    let none = server.get_json("/api/v1/jobs?state=running").await;
    assert_eq!(none["jobs"], json!([]));
    let (status, body) = server
        .send(
            server.client.get(server.url("/api/v1/jobs?state=sleeping")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server
        .send(
            server.client.get(server.url("/api/v1/jobs/no-such-job")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
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

    let xml = server
        .client
        .post(server.url("/api/v1/jobs"))
        .header("content-type", "application/xml")
        .body("<job/>");
    let (status, body) = server.send(xml, None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_queue_no_agent_served_is_refused_unless_allowed() {
    let server = TestServer::start(|_| {}).await;
    let (status, body) = server.submit("job_queue: typo\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "unknown_queue");
    assert!(body["message"].as_str().unwrap().contains("typo"));

    let allowed = server
        .client
        .post(server.url("/api/v1/jobs?allow_unknown_queue=true"))
        .body("job_queue: typo\n");
    let (status, body) = server.send(allowed, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
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
async fn a_claim_asking_a_negative_wait_answers_at_once_whatever_the_server_hold() {
    let server = TestServer::start(|config| config.claim_hold = Duration::from_secs(3600)).await;
    server.register("a1", &["local"]).await;
    let (status, body) = tokio::time::timeout(PATIENCE, server.claim("a1", -1.0))
        .await
        .expect("a negative wait held the claim");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
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

    let results = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/results?offset=0")))
        .body(&b"\xb3\x29\x00"[..]);
    assert_eq!(
        server.send(results, None).await,
        (StatusCode::OK, json!({"end_offset": 3}))
    );
    let lunch = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/log?offset=0&phase=lunch")))
        .body("x");
    let (status, body) = server.send(lunch, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
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
async fn a_lapsed_lease_is_reaped_and_a_silent_agent_goes_offline() {
    let server = TestServer::start(|config| {
        config.lease = Duration::from_millis(300);
        config.agent_offline_after = Duration::from_millis(300);
        config.reap_interval = Duration::from_millis(100);
    })
    .await;
    let id = server.submit_local_job().await;
    assert_eq!(server.claim("a1", 0.0).await.0, StatusCode::OK);
    let agents = server.get_json("/api/v1/agents").await;
    assert_eq!(
        (&agents[0]["id"], &agents[0]["state"]),
        (&json!("a1"), &json!("busy"))
    );
    let job = server
        .get_json_until(&format!("/api/v1/jobs/{id}"), |job| {
            job["state"] != "running"
        })
        .await;
    assert_eq!(job["state"], "error", "{job}");
    assert!(
        job["reason"].as_str().unwrap().starts_with("agent lost"),
        "{job}"
    );
    // Silent since its claim, the agent is marked offline.
    server
        .get_json_until("/api/v1/agents", |agents| agents[0]["state"] == "offline")
        .await;
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_path() {
    let server = TestServer::start(|_| {}).await;
    let response = server
        .client
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
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
        "/api/v1/jobs/{id}/work",
        "/api/v1/jobs/{id}/work-done",
        "/api/v1/jobs/{id}/phases/{phase}/start",
        "/api/v1/jobs/{id}/phases/{phase}/end",
        "/api/v1/agents",
        "/api/v1/agents/{id}",
        "/api/v1/agents/{id}/claim",
        "/api/v1/agents/{id}/heartbeat",
        "/api/v1/queues",
        "/api/v1/jobs/{id}/tests",
        "/api/v1/jobs/{id}/attachments",
        "/api/v1/jobs/{id}/artifacts",
        "/api/v1/recipes",
        "/api/v1/recipes/{name}",
        "/api/v1/recipes/{name}/start",
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
    let [admin, user, other_user, agent] = tokens(
        data_dir.path(),
        [Role::Admin, Role::User, Role::User, Role::Agent],
    );
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let jobs = server.url("/api/v1/jobs");

    let response = server.client.get(&jobs).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        server
            .send(server.client.get(&jobs), Some("forged"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let metrics = server.url("/metrics");
    assert_eq!(
        server.send(server.client.get(&metrics), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let register = || {
        server
            .client
            .post(server.url("/api/v1/agents/a1"))
            .json(&json!({"queues": ["local"]}))
    };
    assert_eq!(
        server.send(register(), Some(&user)).await.0,
        StatusCode::FORBIDDEN,
        "a user is not an agent"
    );
    assert_eq!(
        server.send(register(), Some(&agent)).await.0,
        StatusCode::OK
    );

    let submit = || server.client.post(&jobs).body("job_queue: local\n");
    assert_eq!(
        server.send(submit(), Some(&agent)).await.0,
        StatusCode::FORBIDDEN,
        "an agent cannot submit"
    );
    let (status, submitted) = server.send(submit(), Some(&user)).await;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    let cancel = server.url(&format!(
        "/api/v1/jobs/{}/cancel",
        submitted["id"].as_str().unwrap()
    ));
    assert_eq!(
        server
            .send(server.client.post(&cancel), Some(&other_user))
            .await
            .0,
        StatusCode::FORBIDDEN,
        "only the submitter or an admin may cancel"
    );
    assert_eq!(
        server
            .send(server.client.post(&cancel), Some(&admin))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .send(server.client.get(&metrics), Some(&agent))
            .await
            .0,
        StatusCode::OK
    );
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

/// The cookies a response sets, as sent.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_ui_cookies_are_secure_only_behind_a_proxy_that_says_https() {
    let data_dir = tempfile::tempdir().unwrap();
    let [user] = tokens(data_dir.path(), [Role::User]);
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let sign_in = server.url("/sign-in");
    // The sign-in's answer is a redirect, whose cookies are the point.
    let no_redirects = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (proxied, secure) in [(false, false), (true, true)] {
        let mut form = server.client.get(&sign_in);
        if proxied {
            form = form.header("x-forwarded-proto", "https");
        }
        let form = form.send().await.unwrap();
        let csrf_cookie = set_cookies(&form).pop().expect("a CSRF cookie");
        assert_eq!(csrf_cookie.contains("; Secure"), secure, "{csrf_cookie}");
        let csrf = csrf_cookie
            .strip_prefix("proctor_csrf=")
            .and_then(|rest| rest.split(';').next())
            .unwrap()
            .to_owned();
        let mut post = no_redirects
            .post(&sign_in)
            .header("cookie", format!("proctor_csrf={csrf}"))
            .form(&[("csrf", csrf.as_str()), ("token", user.as_str())]);
        if proxied {
            post = post.header("x-forwarded-proto", "https");
        }
        let signed_in = post.send().await.unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let session = set_cookies(&signed_in)
            .into_iter()
            .find(|cookie| cookie.starts_with("proctor_session="))
            .expect("a session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
        assert_eq!(session.contains("; Secure"), secure, "{session}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let server = TestServer::start(|config| config.max_body_bytes = 1024).await;
    let id = server.submit_local_job().await;
    let big = format!("job_queue: local\nname: {}\n", "x".repeat(2048));
    let (status, _) = server
        .send(
            server.client.post(server.url("/api/v1/jobs")).body(big),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let log = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/log?offset=0")))
        .body(vec![b'x'; 4096]);
    assert_eq!(
        server.send(log, None).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Nothing of the refused chunk was stored.
    assert_eq!(
        server.put_log(&id, 0, b"ok").await.1,
        json!({"end_offset": 2})
    );
    server.stop().await;
}

// --- Issue 4, second part: per-test results, files, recipes, job tokens, waiting heartbeats and reads ---

/// Each queued job wakes one held claim (not all of them): jobs queued together still reach as many held claims,
/// every one answered with a job long before the 25 s hold would have ended.
#[tokio::test]
async fn jobs_queued_together_each_wake_their_own_held_claim() {
    let server = TestServer::start(|_| {}).await;
    let agents = ["a1", "a2", "a3"];
    for agent in agents {
        server.register(agent, &["local"]).await;
    }
    let claims = futures::future::join_all(agents.map(|agent| server.claim(agent, 25.0)));
    let submits = async {
        // Let the claims reach the server and wait first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in agents {
            let (status, job) = server
                .submit("job_queue: local\ntest_data:\n  test_cmds: echo hi\n")
                .await;
            assert_eq!(status, StatusCode::CREATED, "{job}");
        }
    };
    let (answers, ()) = tokio::join!(claims, submits);
    let mut claimed = Vec::new();
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK, "a held claim got no job: {body}");
        let job: Value = serde_json::from_str(&body).unwrap();
        claimed.push(job["id"].as_str().unwrap().to_owned());
    }
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 3, "each claim got its own job");
    server.stop().await;
}

/// Creates a token of each role in the store in `data_dir` (before a server opens it); their secrets.
fn tokens<const N: usize>(data_dir: &std::path::Path, roles: [Role; N]) -> [String; N] {
    let store = SqliteStore::open(data_dir).unwrap();
    let now = jiff::Timestamp::now();
    roles.map(|role| store.create_token(role, &[], now).unwrap().secret)
}

/// Claims a job on `queue` for `agent` (at once, no hold) and returns the ClaimedJob body.
async fn claim_now(server: &TestServer, agent: &str, queue: &str, token: Option<&str>) -> Value {
    let request = server
        .client
        .post(server.url(&format!("/api/v1/agents/{agent}/claim")))
        .json(&json!({"queues": [queue], "wait_seconds": 0.0}));
    let (status, claimed) = server.send(request, token).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    claimed
}

/// A claim by `agent` of `queue`, waited for (in waits of 5 s) until a job is free for it: a requeued job whose
/// holder's lease lapses.
async fn claim_once_free(
    server: &TestServer,
    agent: &str,
    queue: &str,
    token: Option<&str>,
) -> Value {
    loop {
        let request = server
            .client
            .post(server.url(&format!("/api/v1/agents/{agent}/claim")))
            .json(&json!({"queues": [queue], "wait_seconds": 5.0}));
        let (status, claimed) = server.send(request, token).await;
        if status == StatusCode::OK {
            return claimed;
        }
    }
}

/// A subunit v2 packet for one test event.
fn subunit(test_id: &str, status: proctor_subunit::Status, second: u32) -> Vec<u8> {
    let event = proctor_subunit::Event {
        test_id: Some(test_id.into()),
        status: Some(status),
        timestamp: Some(proctor_subunit::Timestamp::new(second, 0)),
        ..proctor_subunit::Event::default()
    };
    let mut bytes = Vec::new();
    proctor_subunit::encode(&event, &mut bytes).unwrap();
    bytes
}

/// A tar.gz entry as a (possibly hostile) client writes it: the raw name, the type, the link target.
struct Entry {
    name: &'static str,
    kind: tar::EntryType,
    link: Option<&'static str>,
}

fn file_entry(name: &'static str) -> Entry {
    Entry {
        name,
        kind: tar::EntryType::Regular,
        link: None,
    }
}

/// A tar.gz of `entries`, each file holding "data". Names go into the raw header field, which the tar crate's
/// own setters would refuse for `..` and absolute paths.
fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry.kind);
        header.set_mode(0o644);
        let data: &[u8] = if entry.kind == tar::EntryType::Regular {
            b"data"
        } else {
            b""
        };
        header.set_size(data.len() as u64);
        if let Some(link) = entry.link {
            header.set_link_name(link).unwrap();
        }
        header.as_old_mut().name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Every run in a `GET /jobs/ID/tests` answer, as (test id, status, duration), test by test.
fn runs_of(tests: &Value) -> Vec<(String, String, Option<u64>)> {
    let results = tests["results"].as_array().expect("results");
    results
        .iter()
        .flat_map(|test| {
            let id = test["test_id"].as_str().unwrap().to_owned();
            test["runs"].as_array().unwrap().iter().map(move |run| {
                (
                    id.clone(),
                    run["status"].as_str().unwrap().to_owned(),
                    run["duration_us"].as_u64(),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn results_are_parsed_into_tests_while_they_stream_in() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let mut stream = subunit("demo.a", proctor_subunit::Status::InProgress, 100);
    let split = stream.len() + 3;
    stream.extend(subunit("demo.a", proctor_subunit::Status::Success, 102));
    stream.extend(subunit("demo.b", proctor_subunit::Status::Fail, 103));
    let results = server.url(&format!("/api/v1/jobs/{id}/results"));
    let tests = server.url(&format!("/api/v1/jobs/{id}/tests"));

    // The first upload ends three bytes into the second packet: only the first is parsed.
    let (status, _) = server
        .send(
            server
                .client
                .put(format!("{results}?offset=0"))
                .body(stream[..split].to_vec()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let parsed = server.get_json(&format!("/api/v1/jobs/{id}/tests")).await;
    assert_eq!(
        runs_of(&parsed),
        [("demo.a".into(), "inprogress".into(), None)]
    );
    assert_eq!(parsed["results"][0]["verdict"], "running", "{parsed}");
    let (status, ack) = server
        .send(
            server
                .client
                .put(format!("{results}?offset={split}"))
                .body(stream[split..].to_vec()),
            None,
        )
        .await;
    assert_eq!(
        (status, ack["end_offset"].as_u64()),
        (StatusCode::OK, Some(stream.len() as u64))
    );
    let (_, parsed) = server.send(server.client.get(&tests), None).await;
    assert_eq!(
        runs_of(&parsed),
        [
            ("demo.a".into(), "success".into(), Some(2_000_000)),
            // One event gives the run one timestamp: it took no time.
            ("demo.b".into(), "fail".into(), Some(0)),
        ]
    );
    assert_eq!(
        parsed["runs"],
        json!({"total": 2, "passed": 1, "failed": 1, "skipped": 0, "running": 0})
    );
    assert_eq!(
        parsed["results"][1]["runs"][0]["agent_id"], "a1",
        "{parsed}"
    );
    let detail = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert!(detail.get("results_problem").is_none(), "{detail}");
    server.stop().await;
}

#[tokio::test]
async fn text_in_the_results_split_inside_a_character_across_uploads_is_no_problem() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let mut stream = subunit("demo.a", proctor_subunit::Status::InProgress, 100);
    stream.extend("caf\u{e9} \u{f3}\n".as_bytes());
    // The first upload ends between the two bytes of "ó" (c3 b3); b3 alone would read as a packet start.
    let split = stream.len() - 2;
    stream.extend(subunit("demo.a", proctor_subunit::Status::Success, 102));
    stream.extend("\u{f3}".as_bytes());
    let results = server.url(&format!("/api/v1/jobs/{id}/results"));
    for (from, to) in [(0, split), (split, stream.len())] {
        let upload = server
            .client
            .put(format!("{results}?offset={from}"))
            .body(stream[from..to].to_vec());
        let (status, ack) = server.send(upload, None).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }
    let (status, _) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/finish"),
            json!({"state": "passed", "reason": "done", "agent_id": "a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let detail = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert!(detail.get("results_problem").is_none(), "{detail}");
    assert_eq!(
        runs_of(&server.get_json(&format!("/api/v1/jobs/{id}/tests")).await),
        [("demo.a".into(), "success".into(), Some(2_000_000))]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_results_stream_cut_short_is_reported_when_the_job_ends() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let whole = subunit("demo.a", proctor_subunit::Status::Success, 100);
    let mut stream = whole.clone();
    stream.extend_from_slice(&subunit("demo.b", proctor_subunit::Status::Fail, 101)[..5]);
    let results = server.url(&format!("/api/v1/jobs/{id}/results"));
    let (status, _) = server
        .send(
            server
                .client
                .put(format!("{results}?offset=0"))
                .body(stream),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let detail = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert!(
        detail.get("results_problem").is_none(),
        "a partial packet waits for its rest while the job runs: {detail}"
    );
    let (status, _) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/finish"),
            json!({"state": "passed", "reason": "done", "agent_id": "a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let detail = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    let problem = detail["results_problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains(&format!("corrupt at byte {}", whole.len())),
        "{detail}"
    );
    let tests = server.get_json(&format!("/api/v1/jobs/{id}/tests")).await;
    assert_eq!(tests["results"].as_array().unwrap().len(), 1, "{tests}");
    server.stop().await;
}

#[tokio::test]
async fn a_results_stream_cut_short_by_a_lost_agent_is_reported_when_the_job_is_reaped() {
    let server = TestServer::start(|config| {
        config.lease = Duration::from_millis(300);
        config.reap_interval = Duration::from_millis(100);
    })
    .await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let whole = subunit("demo.a", proctor_subunit::Status::Success, 100);
    let mut stream = whole.clone();
    stream.extend_from_slice(&subunit("demo.b", proctor_subunit::Status::Fail, 101)[..5]);
    let upload = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/results?offset=0")))
        .body(stream);
    let (status, ack) = server.send(upload, None).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    // The agent never heartbeats: its lease lapses and the reaper ends the job, its stream complete as it is.
    let detail = server
        .get_json_until(&format!("/api/v1/jobs/{id}"), |job| {
            job.get("results_problem").is_some()
        })
        .await;
    assert_eq!(detail["state"], "error", "{detail}");
    let problem = detail["results_problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains(&format!("corrupt at byte {}", whole.len())),
        "{detail}"
    );
    let tests = server.get_json(&format!("/api/v1/jobs/{id}/tests")).await;
    assert_eq!(tests["results"].as_array().unwrap().len(), 1, "{tests}");
    server.stop().await;
}

/// Bytes that reach an ended job's results (an admin, or an open lab, may still write) open no run that stays
/// `inprogress` forever: reading the tests ends the runs left open, as the job's end would have.
#[tokio::test]
async fn an_ended_jobs_runs_left_open_are_unfinished_when_read() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let (status, _) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/finish"),
            json!({"state": "passed", "reason": "done", "agent_id": "a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let late = server
        .client
        .put(server.url(&format!("/api/v1/jobs/{id}/results?offset=0")))
        .body(subunit(
            "demo.late",
            proctor_subunit::Status::InProgress,
            100,
        ));
    let (status, ack) = server.send(late, None).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let tests = server.get_json(&format!("/api/v1/jobs/{id}/tests")).await;
    assert_eq!(
        runs_of(&tests),
        [("demo.late".into(), "unfinished".into(), None)],
        "{tests}"
    );
    assert_eq!(tests["results"][0]["verdict"], "failed", "{tests}");
    server.stop().await;
}

/// A job requeued after its agent was lost keeps the runs of both attempts: the first attempt's open run did not
/// finish (with the reason), and the second attempt's stream, uploaded from its own offset 0, is parsed afresh after
/// the first's (not taken for a resend of it).
#[tokio::test]
async fn a_requeued_job_keeps_both_attempts_runs() {
    let server = TestServer::start(|config| {
        config.lease = Duration::from_millis(300);
        config.reap_interval = Duration::from_millis(100);
    })
    .await;
    server.register("a1", &["local"]).await;
    server.register("a2", &["local"]).await;
    let (status, job) = server
        .submit("job_queue: local\nmax_attempts: 2\ntest_data:\n  test_cmds: echo hi\n")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let results = server.url(&format!("/api/v1/jobs/{id}/results?offset=0"));
    let upload = |stream: Vec<u8>| server.client.put(&results).body(stream);
    let first = claim_now(&server, "a1", "local", None).await;
    let mut stream = subunit("t.ok", proctor_subunit::Status::Success, 100);
    stream.extend(subunit("t.flaky", proctor_subunit::Status::InProgress, 101));
    let (status, ack) = server
        .send(upload(stream), first["job_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    // a1 never heartbeats: the lease lapses and the job is requeued.
    server
        .get_json_until(&format!("/api/v1/jobs/{id}"), |job| {
            job["state"] == "queued"
        })
        .await;
    let second = claim_now(&server, "a2", "local", None).await;
    let mut stream = subunit("t.flaky", proctor_subunit::Status::InProgress, 200);
    stream.extend(subunit("t.flaky", proctor_subunit::Status::Success, 203));
    let (status, ack) = server
        .send(upload(stream.clone()), second["job_token"].as_str())
        .await;
    assert_eq!(
        (status, ack["end_offset"].as_u64()),
        (StatusCode::OK, Some(stream.len() as u64)),
        "{ack}"
    );
    let tests = server.get_json(&format!("/api/v1/jobs/{id}/tests")).await;
    assert_eq!(
        runs_of(&tests),
        [
            ("t.flaky".into(), "unfinished".into(), None),
            ("t.flaky".into(), "success".into(), Some(3_000_000)),
            ("t.ok".into(), "success".into(), Some(0)),
        ],
        "{tests}"
    );
    let flaky = &tests["results"][0];
    assert_eq!(flaky["verdict"], "flaky", "{tests}");
    let places: Vec<_> = flaky["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["attempt"].as_u64().unwrap(),
                run["agent_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(places, [(1, "a1"), (2, "a2")]);
    let reason = flaky["runs"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("attempt 1") && reason.contains("a1 lost"),
        "{reason}"
    );
    assert_eq!(tests["tests"]["flaky"], 1, "{tests}");
    assert_eq!(tests["runs"]["total"], 3, "{tests}");
    server.stop().await;
}

#[tokio::test]
async fn a_corrupt_results_stream_is_kept_and_its_parsing_stops_with_the_reason() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let mut stream = subunit("demo.a", proctor_subunit::Status::Success, 100);
    let good = stream.len();
    let mut corrupt = subunit("demo.b", proctor_subunit::Status::Fail, 101);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // a wrong checksum
    stream.extend(corrupt);
    let results = server.url(&format!("/api/v1/jobs/{id}/results"));
    let (status, ack) = server
        .send(
            server
                .client
                .put(format!("{results}?offset=0"))
                .body(stream.clone()),
            None,
        )
        .await;
    assert_eq!(
        (status, ack["end_offset"].as_u64()),
        (StatusCode::OK, Some(stream.len() as u64))
    );
    // Later uploads are still stored, though no longer parsed.
    let later = subunit("demo.c", proctor_subunit::Status::Success, 102);
    let (status, _) = server
        .send(
            server
                .client
                .put(format!("{results}?offset={}", stream.len()))
                .body(later.clone()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    stream.extend(later);

    let tests = server.get_json(&format!("/api/v1/jobs/{id}/tests")).await;
    assert_eq!(tests["results"].as_array().unwrap().len(), 1, "{tests}");
    assert_eq!(tests["results"][0]["test_id"], "demo.a");
    let detail = server.get_json(&format!("/api/v1/jobs/{id}")).await;
    let problem = detail["results_problem"].as_str().unwrap();
    assert!(
        problem.contains(&format!("corrupt at byte {good}")),
        "{problem}"
    );
    let stored = server.client.get(&results).send().await.unwrap();
    assert_eq!(stored.bytes().await.unwrap().to_vec(), stream);
    server.stop().await;
}

#[tokio::test]
async fn attachments_release_the_job_and_bad_entries_are_refused() {
    let server = TestServer::start(|_| {}).await;
    server.register("a1", &["local"]).await;
    let (status, job) = server
        .submit("job_queue: local\ntest_data:\n  test_cmds: cat attachments/test/data.txt\n  attachments:\n    - local: data.txt\n")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap();
    let attachments = server.url(&format!("/api/v1/jobs/{id}/attachments"));
    assert_eq!(server.claim("a1", 0.0).await.0, StatusCode::NO_CONTENT);

    let symlink = Entry {
        name: "test/link",
        kind: tar::EntryType::Symlink,
        link: Some("/etc/passwd"),
    };
    for (archive, named) in [
        (
            tar_gz(&[file_entry("test/ok.txt"), file_entry("test/../../x")]),
            "test/../../x",
        ),
        (tar_gz(&[file_entry("/etc/cron.d/x")]), "/etc/cron.d/x"),
        (tar_gz(&[symlink]), "test/link"),
        (b"not a tar.gz".to_vec(), "tar.gz"),
    ] {
        let (status, body) = server
            .send(server.client.put(&attachments).body(archive), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"], "invalid_archive");
        assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    }
    // Still held: nothing to claim.
    assert_eq!(server.claim("a1", 0.0).await.0, StatusCode::NO_CONTENT);

    let good = tar_gz(&[
        Entry {
            name: "test/",
            kind: tar::EntryType::Directory,
            link: None,
        },
        file_entry("test/data.txt"),
    ]);
    let (status, body) = server
        .send(server.client.put(&attachments).body(good.clone()), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let claimed = claim_now(&server, "a1", "local", None).await;
    assert_eq!(claimed["id"], id);
    assert_eq!(claimed["has_attachments"], true);
    let job_token = claimed["job_token"].as_str().unwrap();
    let response = server
        .client
        .get(&attachments)
        .bearer_auth(job_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), good);
    // Once stored, they are not replaced under a running job.
    let (status, _) = server
        .send(server.client.put(&attachments).body(good), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    server.stop().await;
}

#[tokio::test]
async fn artifacts_round_trip_and_are_absent_or_too_large_with_clear_answers() {
    let server = TestServer::start(|config| config.max_body_bytes = 4096).await;
    let id = server.submit_local_job().await;
    let claimed = claim_now(&server, "a1", "local", None).await;
    let job_token = claimed["job_token"].as_str().unwrap().to_owned();
    let artifacts = server.url(&format!("/api/v1/jobs/{id}/artifacts"));

    let (status, body) = server
        .send(
            server.client.get(server.url("/api/v1/jobs/nope/artifacts")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = server.send(server.client.get(&artifacts), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_artifacts"))
    );

    let (status, _) = server
        .send(server.client.put(&artifacts).body(vec![0u8; 8192]), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = server
        .send(
            server
                .client
                .put(&artifacts)
                .body(tar_gz(&[file_entry("../escape")])),
            Some(&job_token),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let packed = tar_gz(&[file_entry("report.txt"), file_entry("logs/dmesg.txt")]);
    let (status, body) = server
        .send(
            server.client.put(&artifacts).body(packed.clone()),
            Some(&job_token),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The blocking client used by `proctor artifacts` reads them back the same.
    let base = server.base.clone();
    let (downloaded, missing) = tokio::task::spawn_blocking(move || {
        let client = proctor_client::Client::new(&base, None).unwrap();
        (
            client.artifacts(&id).unwrap(),
            client.artifacts("nope").map_err(|error| error.status()),
        )
    })
    .await
    .unwrap();
    assert_eq!(downloaded, Some(packed));
    assert_eq!(missing, Err(Some(StatusCode::NOT_FOUND)));
    server.stop().await;
}

#[tokio::test]
async fn recipes_are_stored_listed_removed_and_started_with_their_script_snapshotted() {
    let server = TestServer::start(|_| {}).await;
    server.register("a1", &["local"]).await;
    let recipe = server.url("/api/v1/recipes/smoke");
    let script = "#!/bin/sh\necho \"$@\"\n";
    let (status, stored) = server
        .send(
            server.client.put(&recipe).json(&json!({
                "queue": "local", "script": script, "options": {"image": "noble", "count": "2"}
            })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["name"], "smoke");
    assert_eq!(
        server.get_json("/api/v1/recipes").await,
        json!([stored.clone()])
    );
    assert_eq!(server.get_json("/api/v1/recipes/smoke").await, stored);

    let (status, job) = server
        .send(
            server
                .client
                .post(format!("{recipe}/start"))
                .json(&json!({"options": {"count": "5", "extra": "yes"}})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["queue"], "local");
    assert_eq!(job["name"], "smoke");
    assert_eq!(job["definition"]["recipe"], "smoke");
    assert_eq!(
        job["definition"]["options"],
        json!({"image": "noble", "count": "5", "extra": "yes"})
    );

    // Editing, then removing, the recipe does not change the queued job.
    let (status, _) = server
        .send(
            server
                .client
                .put(&recipe)
                .json(&json!({"queue": "local", "script": "#!/bin/sh\nexit 1\n"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.send(server.client.delete(&recipe), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.send(server.client.get(&recipe), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = server
        .send(
            server
                .client
                .post(format!("{recipe}/start"))
                .json(&json!({})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let claimed = claim_now(&server, "a1", "local", None).await;
    assert_eq!(claimed["id"], job["id"]);
    assert_eq!(claimed["recipe_script"], script);
    assert_eq!(claimed["has_attachments"], false);
    server.stop().await;
}

#[tokio::test]
async fn a_job_token_reaches_its_own_job_only_and_only_while_it_runs() {
    let data_dir = tempfile::tempdir().unwrap();
    let [admin, agent] = tokens(data_dir.path(), [Role::Admin, Role::Agent]);
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url("/api/v1/agents/a1"))
                .json(&json!({"queues": ["local"]})),
            Some(&agent),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let submit = |body: &'static str| {
        server
            .client
            .post(server.url("/api/v1/jobs"))
            .header("content-type", "application/yaml")
            .body(body)
    };
    let (_, mine) = server
        .send(submit("job_queue: local\nname: mine\n"), Some(&admin))
        .await;
    let (_, other) = server
        .send(submit("job_queue: local\nname: other\n"), Some(&admin))
        .await;
    let claimed = claim_now(&server, "a1", "local", Some(&agent)).await;
    assert_eq!(claimed["id"], mine["id"]);
    let token = claimed["job_token"].as_str().unwrap().to_owned();
    let mine = mine["id"].as_str().unwrap();
    let other = other["id"].as_str().unwrap();
    let job_url = |id: &str, rest: &str| server.url(&format!("/api/v1/jobs/{id}{rest}"));

    for request in [
        server.client.get(job_url(mine, "")),
        server.client.get(job_url(mine, "/log")),
        server.client.get(job_url(mine, "/tests")),
        server
            .client
            .put(job_url(mine, "/log?offset=0&phase=test"))
            .body("from the script\n"),
        server
            .client
            .put(job_url(mine, "/results?offset=0"))
            .body(Vec::new()),
    ] {
        let (status, body) = server.send(request, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = server
        .send(
            server.client.post(job_url(mine, "/phases/test/start")),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for request in [
        server.client.get(job_url(other, "")),
        server.client.get(job_url(other, "/log")),
        server.client.get(server.url("/api/v1/jobs")),
        server.client.post(job_url(mine, "/cancel")),
        server.client.post(job_url(other, "/phases/test/start")),
        server.client.get(server.url("/api/v1/queues")),
    ] {
        let (status, body) = server.send(request, Some(&token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = server
        .send(
            server.client.post(job_url(mine, "/finish")).json(&json!({
                "state": "passed", "reason": "done", "agent_id": "a1"
            })),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .send(server.client.get(job_url(mine, "")), Some(&token))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("ended"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_agent_token_limited_to_one_queue_is_refused_on_another_queues_jobs() {
    let data_dir = tempfile::tempdir().unwrap();
    let (admin, agent_a, agent_all) = {
        let store = SqliteStore::open(data_dir.path()).unwrap();
        let now = jiff::Timestamp::now();
        (
            store.create_token(Role::Admin, &[], now).unwrap().secret,
            store
                .create_token(Role::Agent, &["qa".into()], now)
                .unwrap()
                .secret,
            store.create_token(Role::Agent, &[], now).unwrap().secret,
        )
    };
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let register = |agent: &str, queue: &str| {
        server
            .client
            .post(server.url(&format!("/api/v1/agents/{agent}")))
            .json(&json!({"queues": [queue]}))
    };
    assert_eq!(
        server.send(register("b1", "qb"), Some(&agent_all)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.send(register("a1", "qa"), Some(&agent_a)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.send(register("a2", "qb"), Some(&agent_a)).await.0,
        StatusCode::FORBIDDEN
    );
    let (_, job) = server
        .send(
            server
                .client
                .post(server.url("/api/v1/jobs"))
                .header("content-type", "application/yaml")
                .body("job_queue: qb\n"),
            Some(&admin),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    let claim_b = server
        .client
        .post(server.url("/api/v1/agents/a1/claim"))
        .json(&json!({"queues": ["qb"], "wait_seconds": 0.0}));
    assert_eq!(
        server.send(claim_b, Some(&agent_a)).await.0,
        StatusCode::FORBIDDEN
    );
    claim_now(&server, "b1", "qb", Some(&agent_all)).await;

    let job_url = |rest: &str| server.url(&format!("/api/v1/jobs/{id}{rest}"));
    for request in [
        server.client.get(job_url("")),
        server.client.post(job_url("/phases/test/start")),
        server.client.put(job_url("/log?offset=0")).body("x"),
        server.client.put(job_url("/results?offset=0")).body("x"),
        server
            .client
            .put(job_url("/artifacts"))
            .body(tar_gz(&[file_entry("a.txt")])),
        server.client.get(job_url("/attachments")),
        server
            .client
            .post(job_url("/finish"))
            .json(&json!({"state": "passed", "reason": "x", "agent_id": "b1"})),
    ] {
        let (status, body) = server.send(request, Some(&agent_a)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = server
        .send(server.client.get(job_url("")), Some(&agent_all))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

/// Issue 11, item 2: only the holder of a job's current claim (its job token) or an admin writes to the job. Another
/// agent serving the queue, the holder's own agent token, a user, a forged token and the holder of an earlier
/// attempt are refused, and the holder's log stays byte-exact through all of their tries.
#[tokio::test]
async fn only_the_current_holder_or_an_admin_writes_to_a_job() {
    let data_dir = tempfile::tempdir().unwrap();
    let [admin, user, agent_1, agent_2] = tokens(
        data_dir.path(),
        [Role::Admin, Role::User, Role::Agent, Role::Agent],
    );
    let server = TestServer::start_in(data_dir, |config| {
        config.lease = Duration::from_millis(400);
        config.reap_interval = Duration::from_millis(100);
    })
    .await;
    for (agent, token) in [("a1", &agent_1), ("a2", &agent_2)] {
        let request = server
            .client
            .post(server.url(&format!("/api/v1/agents/{agent}")))
            .json(&json!({"queues": ["local"]}));
        assert_eq!(server.send(request, Some(token)).await.0, StatusCode::OK);
    }
    let (status, job) = server
        .send(
            server
                .client
                .post(server.url("/api/v1/jobs"))
                .header("content-type", "application/yaml")
                .body("job_queue: local\nmax_attempts: 2\n"),
            Some(&user),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let first = claim_now(&server, "a1", "local", Some(&agent_1)).await;
    let first_token = first["job_token"].as_str().unwrap().to_owned();
    let job_url = |rest: &str| server.url(&format!("/api/v1/jobs/{id}{rest}"));
    let holder_log: Vec<u8> = (1..=15)
        .map(|n| format!("line{n}\n"))
        .collect::<String>()
        .into_bytes();
    let holder_log = [&holder_log[..], b"li"].concat();
    let (status, body) = server
        .send(
            server
                .client
                .put(job_url("/log?offset=0&phase=test"))
                .body(holder_log.clone()),
            Some(&first_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let end = holder_log.len();
    let writes = || {
        [
            server
                .client
                .put(job_url(&format!("/log?offset={end}&phase=test")))
                .body("INJECTED\n"),
            server
                .client
                .put(job_url("/results?offset=0"))
                .body(Vec::new()),
            server
                .client
                .put(job_url("/artifacts"))
                .body(tar_gz(&[file_entry("a.txt")])),
            server.client.post(job_url("/phases/test/start")),
            server
                .client
                .post(job_url("/phases/test/end"))
                .json(&json!({"exit_status": 0})),
            server
                .client
                .post(job_url("/finish"))
                .json(&json!({"state": "passed", "reason": "forged", "agent_id": "a1"})),
        ]
    };
    let read_log = || async {
        let response = server
            .client
            .get(job_url("/log"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap().to_vec()
    };
    let job_state = || async {
        server
            .send(server.client.get(job_url("")), Some(&admin))
            .await
            .1["state"]
            .clone()
    };
    for (who, token, refused) in [
        ("another agent", agent_2.as_str(), StatusCode::FORBIDDEN),
        (
            "the holder's own agent token",
            agent_1.as_str(),
            StatusCode::FORBIDDEN,
        ),
        ("a user", user.as_str(), StatusCode::FORBIDDEN),
        // Not a credential at all: unauthenticated rather than forbidden.
        (
            "a forged job token",
            "0123456789abcdef",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        for request in writes() {
            let (status, body) = server.send(request, Some(token)).await;
            assert_eq!(status, refused, "{who}: {body}");
            if status == StatusCode::FORBIDDEN && who != "a user" {
                let message = body["message"].as_str().unwrap();
                assert!(message.contains("holding job"), "{who}: {message}");
            }
        }
        assert_eq!(read_log().await, holder_log, "after {who}");
        assert_eq!(job_state().await, "running", "after {who}");
    }
    // The holder goes silent, its lease lapses and a2 claims the job again: a1's token is refused from then on.
    let second = claim_once_free(&server, "a2", "local", Some(&agent_2)).await;
    assert_eq!(second["attempts"], 2, "{second}");
    let second_token = second["job_token"].as_str().unwrap().to_owned();
    let log_of_second = read_log().await;
    for request in writes() {
        let (status, body) = server.send(request, Some(&first_token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("earlier claim"), "{message}");
    }
    assert_eq!(read_log().await, log_of_second);
    assert_eq!(job_state().await, "running");
    // The new holder writes; an admin may too, explicitly, and ends the job.
    let (status, body) = server
        .send(
            server.client.post(job_url("/phases/test/start")),
            Some(&second_token),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server
        .send(
            server
                .client
                .post(job_url("/finish"))
                .json(&json!({"state": "failed", "reason": "ended by an admin"})),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "failed");
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_heartbeat_is_answered_as_soon_as_a_cancel_is_requested() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let heartbeat = server
        .client
        .post(server.url("/api/v1/agents/a1/heartbeat"))
        .json(&json!({"wait_seconds": 25.0}));
    let mut waiting = Box::pin(server.send(heartbeat, None));
    // The heartbeat is sent and held: nothing to cancel yet. (The server holds it while this test goes on.)
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut waiting)
            .await
            .is_err(),
        "a heartbeat with nothing to cancel answered before its wait"
    );
    let (status, _) = server
        .post_json(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = tokio::time::timeout(PATIENCE, waiting).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["cancel_requested"], json!([id]));
    // With a cancel pending, a waiting heartbeat answers at once.
    let (status, reply) = server
        .post_json("/api/v1/agents/a1/heartbeat", json!({"wait_seconds": 25.0}))
        .await;
    assert_eq!(
        (status, &reply["cancel_requested"]),
        (StatusCode::OK, &json!([id]))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_log_read_is_woken_by_an_upload_and_by_the_job_ending() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    claim_now(&server, "a1", "local", None).await;
    let read = |from: u64| {
        let request = server.client.get(server.url(&format!(
            "/api/v1/jobs/{id}/log?from={from}&wait_seconds=25"
        )));
        async move {
            let response = request.send().await.unwrap();
            let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
            let (state, next) = (header("proctor-job-state"), header("proctor-next-offset"));
            (state, next, response.bytes().await.unwrap().to_vec())
        }
    };
    let waiting = tokio::spawn(read(0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    server.put_log(&id, 0, b"hello\n").await;
    let answer = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        answer,
        ("running".to_owned(), "6".to_owned(), b"hello\n".to_vec())
    );

    let waiting = tokio::spawn(read(6));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let (status, _) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/finish"),
            json!({"state": "passed", "reason": "done", "agent_id": "a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, ("passed".to_owned(), "6".to_owned(), Vec::new()));
    server.stop().await;
}

/// Issue 11, item 6: a read of a job can be held until its state changes from the one the caller saw, and is
/// answered as soon as it does: at the claim, then at the end.
#[tokio::test]
async fn a_held_job_read_is_answered_when_the_job_state_changes() {
    let server = TestServer::start(|_| {}).await;
    let id = server.submit_local_job().await;
    let held = |seen: &str| {
        let url = server.url(&format!(
            "/api/v1/jobs/{id}?changed_from={seen}&wait_seconds=30"
        ));
        let client = server.client.clone();
        tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        })
    };
    // Unchanged for the whole (short) wait: answered at its end with the state as it is.
    let unchanged = server
        .get_json(&format!(
            "/api/v1/jobs/{id}?changed_from=queued&wait_seconds=0.2"
        ))
        .await;
    assert_eq!(unchanged["state"], "queued");
    let until_claimed = held("queued");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!until_claimed.is_finished(), "answered before any change");
    let (status, claimed) = server.claim("a1", 0.0).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let seen = tokio::time::timeout(PATIENCE, until_claimed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen["state"], "running", "{seen}");
    let until_ended = held("running");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!until_ended.is_finished(), "answered before any change");
    let (status, body) = server
        .post_json(
            &format!("/api/v1/jobs/{id}/finish"),
            json!({"state": "passed", "reason": "done"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = tokio::time::timeout(PATIENCE, until_ended)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen["state"], "passed", "{seen}");
    // A state seen that is no state at all is a 400 naming the states.
    let (status, body) = server
        .send(
            server
                .client
                .get(server.url(&format!("/api/v1/jobs/{id}?changed_from=asleep"))),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.stop().await;
}

/// Issue 11, item 4: a definition over the cap (1 MiB by default) is a 413 naming it and nothing is stored; lists
/// hold summaries (no definitions), a page at a time, filtered by the store.
#[tokio::test]
async fn oversized_definitions_are_refused_and_lists_are_paged_summaries() {
    let server = TestServer::start(|_| {}).await;
    server.register("a1", &["local"]).await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let (status, body) = server
        .submit(&format!("job_queue: local\nname: {padding}\n"))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("cap of 1048576 bytes"), "{message}");
    let listed = server.get_json("/api/v1/jobs").await;
    assert_eq!(listed["jobs"], json!([]), "nothing of it was stored");

    // Just under the cap is fine, and the list does not carry it.
    let big = format!(
        "job_queue: local\ntest_data:\n  test_cmds: \"echo {}\"\n",
        "y".repeat(1_000_000)
    );
    let (status, body) = server.submit(&big).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut ids = vec![body["id"].as_str().unwrap().to_owned()];
    for _ in 0..4 {
        let (status, body) = server.submit("job_queue: local\n").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut listed = Vec::new();
    let mut path = "/api/v1/jobs?limit=2".to_owned();
    loop {
        let page = server.get_json(&path).await;
        for job in page["jobs"].as_array().unwrap() {
            assert!(job.get("definition").is_none(), "{job}");
            listed.push(job["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, ids, "every job once, newest first");
    let running = server.get_json("/api/v1/jobs?state=running").await;
    assert_eq!(running["jobs"], json!([]));
    for bad in [
        "/api/v1/jobs?cursor=nonsense",
        "/api/v1/jobs?limit=1001",
        "/api/v1/jobs?limit=0",
        "/api/v1/jobs?state=asleep",
    ] {
        let (status, body) = server.send(server.client.get(server.url(bad)), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    server.stop().await;
}

/// The cap is the server's to set.
#[tokio::test]
async fn the_definition_cap_is_configurable() {
    let server = TestServer::start(|config| config.max_definition_bytes = 64).await;
    server.register("a1", &["local"]).await;
    let (status, body) = server.submit("job_queue: local\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .submit(&format!("job_queue: local\nname: {}\n", "n".repeat(64)))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cap of 64 bytes"),
        "{body}"
    );
    server.stop().await;
}

/// Issue 11, item 3: a bundle that expands past the server's caps is a 413 naming the cap, and nothing of it is
/// kept: a real bomb (8 MiB of zeros in a few KiB) against small caps, and headers claiming more than the defaults.
#[tokio::test]
async fn bundles_expanding_past_the_caps_are_refused_with_413_and_not_kept() {
    let server = TestServer::start(|config| {
        config.bundle_limits.artifacts.expanded_bytes = 1 << 20;
    })
    .await;
    let id = server.submit_local_job().await;
    let claimed = claim_now(&server, "a1", "local", None).await;
    let job_token = claimed["job_token"].as_str().unwrap().to_owned();
    let artifacts = server.url(&format!("/api/v1/jobs/{id}/artifacts"));
    let bomb = proctor_testkit::bundle_of_zeros("zeros.bin", 8 << 20);
    assert!(bomb.len() < 64 << 10);
    let (status, body) = server
        .send(server.client.put(&artifacts).body(bomb), Some(&job_token))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("cap of 1048576 bytes"), "{message}");
    let (status, _) = server.send(server.client.get(&artifacts), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing of it was kept");

    // With the default caps: attachments of more than 1 GiB are refused, and the job stays held.
    let defaults = TestServer::start(|_| {}).await;
    defaults.register("a1", &["local"]).await;
    let (status, job) = defaults
        .submit("job_queue: local\ntest_data:\n  test_cmds: echo never\n  attachments:\n    - local: big.img\n")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let attachments = defaults.url(&format!(
        "/api/v1/jobs/{}/attachments",
        job["id"].as_str().unwrap()
    ));
    let claims_two_gib = proctor_testkit::bundle_claiming("test/big.img", 2 << 30);
    let (status, body) = defaults
        .send(defaults.client.put(&attachments).body(claims_two_gib), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cap of 1073741824 bytes"),
        "{body}"
    );
    assert_eq!(defaults.claim("a1", 0.0).await.0, StatusCode::NO_CONTENT);
    defaults.stop().await;
    server.stop().await;
}

/// A lab with tokens for the `work` / `work-done` tests: agent `a1` registered on `local` and a job submitted there
/// by a user; `[admin, submitter, another user, agent]` and the job's id.
async fn work_lab(adjust: impl FnOnce(&mut ServerConfig)) -> (TestServer, [String; 4], String) {
    let data_dir = tempfile::tempdir().unwrap();
    let tokens = tokens(
        data_dir.path(),
        [Role::Admin, Role::User, Role::User, Role::Agent],
    );
    let server = TestServer::start_in(data_dir, adjust).await;
    for agent in ["a1", "a2"] {
        let request = server
            .client
            .post(server.url(&format!("/api/v1/agents/{agent}")))
            .json(&json!({"queues": ["local"]}));
        assert_eq!(
            server.send(request, Some(&tokens[3])).await.0,
            StatusCode::OK
        );
    }
    let (status, job) = server
        .send(
            server
                .client
                .post(server.url("/api/v1/jobs"))
                .header("content-type", "application/yaml")
                .body("job_queue: local\nmax_attempts: 2\n"),
            Some(&tokens[1]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    (server, tokens, id)
}

/// Reads a stream of a job with `token` (waiting up to `wait` seconds for bytes past `from`): the status, the
/// `proctor-next-offset` header and the bytes.
fn read_stream(
    server: &TestServer,
    id: &str,
    stream: &str,
    from: u64,
    wait: f64,
    token: &str,
) -> impl std::future::Future<Output = (StatusCode, String, Vec<u8>)> + Send + 'static {
    let request = server
        .client
        .get(server.url(&format!(
            "/api/v1/jobs/{id}/{stream}?from={from}&wait_seconds={wait}"
        )))
        .bearer_auth(token);
    async move {
        let response = request.send().await.unwrap();
        let status = response.status();
        let next = response
            .headers()
            .get("proctor-next-offset")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, next, response.bytes().await.unwrap().to_vec())
    }
}

/// Issue 14 (`proctor run --lab`): the job's submitter writes `work` and its holder reads it; the holder writes
/// `work-done` and the submitter reads it, a waiting read woken by the upload. Every other writer is refused before
/// anything is stored, and once the job has ended its `work` takes nothing more.
#[tokio::test]
async fn work_is_written_by_the_submitter_and_work_done_by_the_holder_only() {
    let (server, [admin, submitter, other_user, agent], id) = work_lab(|_| {}).await;
    let put = |stream: &str, offset: u64, bytes: &'static [u8]| {
        server
            .client
            .put(server.url(&format!("/api/v1/jobs/{id}/{stream}?offset={offset}")))
            .body(bytes)
    };
    let stored = |stream: &'static str| {
        let read = read_stream(&server, &id, stream, 0, 0.0, &admin);
        async move {
            let (status, _, bytes) = read.await;
            assert_eq!(status, StatusCode::OK);
            bytes
        }
    };
    // The submitter may ask before the job is claimed.
    let first: &[u8] = b"{\"batch\":{\"batch\":0}}\n";
    let (status, ack) = server.send(put("work", 0, first), Some(&submitter)).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["end_offset"], first.len());
    let claimed = claim_now(&server, "a1", "local", Some(&agent)).await;
    assert_eq!(claimed["id"], id.as_str());
    let job_token = claimed["job_token"].as_str().unwrap().to_owned();

    // The holder reads the work; a waiting read of it is woken by the submitter's next request.
    let (status, next, bytes) = read_stream(&server, &id, "work", 0, 0.0, &job_token).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, first));
    assert_eq!(next, first.len().to_string());
    let waiting = tokio::spawn(read_stream(
        &server,
        &id,
        "work",
        first.len() as u64,
        25.0,
        &job_token,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let (status, ack) = server
        .send(
            put("work", first.len() as u64, b"\"end\"\n"),
            Some(&submitter),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let (status, _, bytes) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"\"end\"\n"[..])
    );
    let work = [first, b"\"end\"\n"].concat();

    // The submitter waits for the worker's report; the holder's upload wakes it.
    let waiting = tokio::spawn(read_stream(&server, &id, "work-done", 0, 25.0, &submitter));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let report: &'static [u8] = b"{\"ready\":{\"arch\":null,\"distro\":null}}\n";
    let (status, ack) = server
        .send(put("work-done", 0, report), Some(&job_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let (status, next, bytes) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, report));
    assert_eq!(next, report.len().to_string());
    // A resend is harmless; a gap is a 409 with where to resume.
    let (status, ack) = server
        .send(put("work-done", 0, report), Some(&job_token))
        .await;
    assert_eq!(
        (status, &ack["end_offset"]),
        (StatusCode::OK, &json!(report.len()))
    );
    let (status, gap) = server
        .send(put("work-done", 999, b"x"), Some(&job_token))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{gap}");
    assert_eq!(gap["expected_offset"], report.len());

    // The wrong writers, each refused before anything is stored.
    let end = work.len() as u64;
    for (who, token, stream, offset) in [
        ("an agent token", agent.as_str(), "work", end),
        ("another user", other_user.as_str(), "work", end),
        ("the job token", job_token.as_str(), "work", end),
        (
            "the submitter",
            submitter.as_str(),
            "work-done",
            report.len() as u64,
        ),
        (
            "another user",
            other_user.as_str(),
            "work-done",
            report.len() as u64,
        ),
        (
            "an agent token",
            agent.as_str(),
            "work-done",
            report.len() as u64,
        ),
    ] {
        let (status, body) = server
            .send(put(stream, offset, b"INJECTED\n"), Some(token))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{who} writing {stream}: {body}"
        );
    }
    assert_eq!(stored("work").await, work);
    assert_eq!(stored("work-done").await, report);
    assert!(stored("log").await.is_empty(), "the log is its own stream");
    assert!(stored("results").await.is_empty(), "so are the results");
    // Readers: the same rule as the log's (a user, an agent, the job's own token).
    for token in [&other_user, &agent, &job_token] {
        let (status, _, bytes) = read_stream(&server, &id, "work-done", 0, 0.0, token).await;
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, report));
    }

    // The job ends: its token writes no more reports, and its work takes nothing, from its submitter or an admin.
    let (status, body) = server
        .send(
            server
                .client
                .post(server.url(&format!("/api/v1/jobs/{id}/finish")))
                .json(&json!({"state": "passed", "reason": "done", "agent_id": "a1"})),
            Some(&job_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .send(
            put("work-done", report.len() as u64, b"late\n"),
            Some(&job_token),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for token in [&submitter, &admin] {
        let (status, body) = server.send(put("work", end, b"late\n"), Some(token)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "job_ended", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("job {id} has ended")),
            "{message}"
        );
    }
    assert_eq!(stored("work").await, work);
    assert_eq!(stored("work-done").await, report);
    let (status, _, bytes) = read_stream(&server, &id, "work-done", 0, 0.0, &submitter).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, report));
    server.stop().await;
}

/// The token of an earlier claim writes no report to `work-done`: the job's current holder does, from the job's
/// offset 0 (the stream counts from the job's start, not from the attempt's).
#[tokio::test]
async fn a_superseded_job_token_writes_no_work_done() {
    let (server, [admin, submitter, _, agent], id) = work_lab(|config| {
        config.lease = Duration::from_millis(600);
        config.reap_interval = Duration::from_millis(100);
    })
    .await;
    let put = |offset: u64, bytes: &'static [u8]| {
        server
            .client
            .put(server.url(&format!("/api/v1/jobs/{id}/work-done?offset={offset}")))
            .body(bytes)
    };
    let first = claim_now(&server, "a1", "local", Some(&agent)).await;
    let first_token = first["job_token"].as_str().unwrap().to_owned();
    let (status, body) = server.send(put(0, b"ready\n"), Some(&first_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // a1 goes silent; its lease lapses and a2 claims the job again.
    let second = claim_once_free(&server, "a2", "local", Some(&agent)).await;
    assert_eq!(second["attempts"], 2, "{second}");
    let second_token = second["job_token"].as_str().unwrap().to_owned();
    // a2 renews its lease, so the second claim outlives what follows.
    let heartbeat = server
        .client
        .post(server.url("/api/v1/agents/a2/heartbeat"))
        .json(&json!({}));
    assert_eq!(server.send(heartbeat, Some(&agent)).await.0, StatusCode::OK);
    let (status, body) = server.send(put(6, b"stale\n"), Some(&first_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("earlier claim"),
        "{body}"
    );
    let (status, _, bytes) = read_stream(&server, &id, "work-done", 0, 0.0, &submitter).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"ready\n"[..])
    );
    // The new holder resends from the job's start: what is stored is kept, and only the rest is added.
    let (status, ack) = server
        .send(put(0, b"ready\nready again\n"), Some(&second_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["end_offset"], 18);
    let (status, _, bytes) = read_stream(&server, &id, "work-done", 0, 0.0, &admin).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"ready\nready again\n"[..])
    );
    server.stop().await;
}
