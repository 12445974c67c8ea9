//! The web UI in a real headless browser (Debian's Chromium through ChromeDriver) against a real `proctor server`
//! and `proctor agent`: signing in, starting a plan from a recipe's form and watching its log arrive, cancelling
//! (and being refused as another user), the jobs list filtered through its URL, a test's history, and HTML in a
//! job's name and output shown as text. Screenshots of the main pages go to `target/ui-screenshots/`.
// A panic is how a test fails: tests unwrap and expect freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use proctor_testkit::{screenshot, Client, Driver, Locator};
use support::{proctor, token, Lab, PATIENCE};

/// A lab with tokens: an admin, two users, and an agent `a1` on queue `local` running with an agent token.
struct Tokens {
    admin: String,
    alice: String,
    bob: String,
}

fn lab_with_tokens() -> (Lab, Tokens) {
    let mut lab = Lab::start(&[]);
    let tokens = Tokens {
        admin: token(&lab.data_dir(), "admin"),
        alice: token(&lab.data_dir(), "user"),
        bob: token(&lab.data_dir(), "user"),
    };
    agent_with_token(&mut lab, "a1", "local");
    (lab, tokens)
}

/// Starts agent `id` on `queue` with an agent token of its own, and waits until the server lists it.
fn agent_with_token(lab: &mut Lab, id: &str, queue: &str) {
    let agent = token(&lab.data_dir(), "agent");
    let child = proctor()
        .args(["agent", "--server", &lab.url, "--id", id, "--queue", queue])
        .args([
            "--heartbeat",
            "1",
            "--grace",
            "1",
            "--claim-wait",
            "2",
            "--work-dir",
        ])
        .arg(lab.dir.path().join("work").join(id))
        .env("PROCTOR_TOKEN", &agent)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.add(child);
    let client = lab.client(Some(&agent));
    support::eventually(|| {
        client
            .agents()
            .map(|agents| agents.iter().any(|listed| listed.id == id))
            .unwrap_or(false)
    });
}

/// Runs a browser session against the lab.
fn in_browser<F>(narrow: bool, test: impl FnOnce(Client) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = driver.session(narrow).await;
        test(client.clone()).await;
        let _ = client.close().await;
    });
}

/// The text of the first element `css` finds, or "" when there is none.
async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `condition` holds of the page, reloading it first when `reload`.
async fn until<F, Fut>(client: &Client, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < PATIENCE,
            "gave up waiting for {what}; the page says:\n{}",
            text_of(client, "body").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(client: &Client, url: &str, token: &str) {
    client.goto(&format!("{url}/sign-in")).await.unwrap();
    let form = client.form(Locator::Css("form.stack")).await.unwrap();
    form.set_by_name("token", token).await.unwrap();
    form.submit().await.unwrap();
    until(client, "the signed-in name", || async {
        !text_of(client, "#signed-in").await.is_empty()
    })
    .await;
}

async fn sign_out(client: &Client) {
    client
        .find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(client, "the signed-out page", || async {
        client.find(Locator::LinkText("Sign in")).await.is_ok()
    })
    .await;
}

#[test]
fn a_plan_started_from_a_recipe_form_shows_its_log_live() {
    let (lab, tokens) = lab_with_tokens();
    let script = lab.job_file(
        "lines.sh",
        "#!/bin/sh\nn=1\nwhile [ $# -gt 0 ]; do case $1 in --lines) n=$2; shift 2;; *) shift;; esac; done\n\
         i=1; while [ $i -le $n ]; do echo \"line $i of $n\"; sleep 0.5; i=$((i+1)); done\n",
    );
    let (code, _, err) = lab.run(&[
        "recipe",
        "add",
        "lines",
        &script,
        "--queue",
        "local",
        "--option",
        "lines=3",
        "--token",
        &tokens.admin,
    ]);
    assert_eq!(code, 0, "{err}");
    let url = lab.url.clone();
    in_browser(false, |client| async move {
        sign_in(&client, &url, &tokens.alice).await;
        client.goto(&format!("{url}/recipes")).await.unwrap();
        screenshot(&client, "recipes").await;
        client
            .find(Locator::LinkText("lines"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let form = client.form(Locator::Css("#start-plan")).await.unwrap();
        // The form is built from the recipe's options, with their defaults.
        let field = client
            .find(Locator::Css("input[name='option.lines']"))
            .await
            .unwrap();
        assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("3"));
        form.set_by_name("option.lines", "12").await.unwrap();
        screenshot(&client, "recipe-start-plan").await;
        form.submit().await.unwrap();
        until(&client, "the new job's page", || async {
            client
                .current_url()
                .await
                .unwrap()
                .path()
                .starts_with("/jobs/")
        })
        .await;
        // Lines appear while the job runs, without a reload: the page stays the one loaded.
        until(&client, "a line of the log while the job runs", || async {
            text_of(&client, "#log").await.contains("line 2 of 12")
                && text_of(&client, "#job-state").await == "running"
        })
        .await;
        screenshot(&client, "job-running").await;
        until(&client, "the job's end", || async {
            text_of(&client, "#job-state").await == "passed"
        })
        .await;
        assert!(text_of(&client, "#log").await.contains("line 12 of 12"));
        screenshot(&client, "job-passed").await;
        client.goto(&format!("{url}/")).await.unwrap();
        // The queue's row, and the chart of how long its jobs waited (this one, at least).
        assert!(text_of(&client, "table").await.contains("local"));
        assert!(client.find(Locator::Css("svg.chart circle")).await.is_ok());
        screenshot(&client, "overview").await;
        client.goto(&format!("{url}/agents")).await.unwrap();
        assert!(text_of(&client, "#agents").await.contains("a1"));
        screenshot(&client, "agents").await;
    });
}

#[test]
fn cancel_is_refused_to_another_user_and_works_for_the_submitter() {
    let (lab, tokens) = lab_with_tokens();
    let job = lab.job_file(
        "long.yaml",
        "job_queue: local\nname: long\ntest_data:\n  test_cmds: sleep 120\n",
    );
    let (code, out, err) = lab.run(&["submit", &job, "--token", &tokens.alice]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    // Running, as the API says, before the browser looks (refreshing a page in a loop opens a live stream each time).
    let api = lab.client(Some(&tokens.admin));
    support::eventually(|| api.job(&id).unwrap().job.state == proctor_api::JobState::Running);
    let url = lab.url.clone();
    in_browser(false, |client| async move {
        let page = format!("{url}/jobs/{id}");
        // Bob may read the job and sees the button; the API refuses him when he presses it.
        sign_in(&client, &url, &tokens.bob).await;
        client.goto(&page).await.unwrap();
        client
            .find(Locator::Css("#cancel"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(&client, "the refusal", || async {
            text_of(&client, "h1").await.starts_with("403")
        })
        .await;
        assert!(text_of(&client, "[role=alert]").await.contains("submitter"));
        screenshot(&client, "cancel-refused").await;
        client.goto(&page).await.unwrap();
        assert_eq!(text_of(&client, "#job-state").await, "running");
        sign_out(&client).await;

        sign_in(&client, &url, &tokens.alice).await;
        client.goto(&page).await.unwrap();
        // A cancel posted without the page's CSRF token (as another site's form would) is refused.
        let forged = client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 fetch(arguments[0], {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},\
                   body: 'csrf=forged'}).then(r => done(r.status));",
                vec![serde_json::json!(format!("{page}/cancel"))],
            )
            .await
            .unwrap();
        assert_eq!(forged.as_u64(), Some(400));
        client.refresh().await.unwrap();
        assert_eq!(text_of(&client, "#job-state").await, "running");
        client
            .find(Locator::Css("#cancel"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(&client, "the cancel notice", || async {
            text_of(&client, "[role=status]")
                .await
                .contains("Cancel requested")
        })
        .await;
        until(&client, "the job cancelled", || async {
            client.refresh().await.unwrap();
            text_of(&client, "#job-state").await == "cancelled"
        })
        .await;
    });
}

#[test]
fn the_jobs_list_is_filtered_through_its_url() {
    let (lab, tokens) = lab_with_tokens();
    let job = |name: &str, queue: &str| {
        let file = lab.job_file(
            &format!("{name}.yaml"),
            &format!("job_queue: {queue}\nname: {name}\ntest_data:\n  test_cmds: echo {name}\n"),
        );
        let (code, _, err) = lab.run(&[
            "submit",
            &file,
            "--allow-unknown-queue",
            "--token",
            &tokens.alice,
        ]);
        assert_eq!(code, 0, "{err}");
    };
    job("here-one", "local");
    job("here-two", "local");
    job("elsewhere", "nowhere");
    let late = lab.job_file(
        "late.yaml",
        "job_queue: nowhere\nname: late\ntest_data:\n  test_cmds: echo late\n",
    );
    let alice = tokens.alice.clone();
    let url = lab.url.clone();
    in_browser(false, |client| async move {
        // The overview's counts follow the lab live: a job queued after the page loaded is counted without a reload.
        client.goto(&format!("{url}/")).await.unwrap();
        let waiting = "#queues a[href='/jobs?queue=nowhere&state=queued']";
        assert_eq!(text_of(&client, waiting).await, "1");
        let submitted = proctor()
            .args([
                "submit",
                &late,
                "--allow-unknown-queue",
                "--server",
                &url,
                "--token",
                &alice,
            ])
            .output()
            .unwrap();
        assert!(submitted.status.success());
        until(&client, "the live count", || async {
            text_of(&client, waiting).await == "2"
        })
        .await;
        // Read-only pages are open on loopback: no sign-in.
        client
            .goto(&format!("{url}/jobs?queue=nowhere&state=queued"))
            .await
            .unwrap();
        let table = text_of(&client, "#jobs tbody").await;
        assert!(
            table.contains("elsewhere") && !table.contains("here-"),
            "{table}"
        );
        // The form shows the filters the URL holds, and filtering again puts them in the URL.
        let queue = client
            .find(Locator::Css("input[name=queue]"))
            .await
            .unwrap();
        assert_eq!(
            queue.prop("value").await.unwrap().as_deref(),
            Some("nowhere")
        );
        let form = client.form(Locator::Css("form.filters")).await.unwrap();
        form.set_by_name("queue", "local").await.unwrap();
        form.set_by_name("state", "").await.unwrap();
        // htmx swaps in the results alone: the page stays the one loaded, and the filters go to the address.
        client
            .execute("window.sameLoad = true;", vec![])
            .await
            .unwrap();
        client
            .find(Locator::Css("form.filters button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(&client, "the local jobs", || async {
            let table = text_of(&client, "#jobs tbody").await;
            table.contains("here-one") && table.contains("here-two") && !table.contains("elsewhere")
        })
        .await;
        let address = client.current_url().await.unwrap();
        assert!(
            address.query().unwrap_or_default().contains("queue=local"),
            "{address}"
        );
        let same = client.execute("return window.sameLoad;", vec![]).await;
        assert_eq!(same.unwrap().as_bool(), Some(true), "the page was reloaded");
        client.goto(&format!("{url}/jobs?q=two")).await.unwrap();
        let table = text_of(&client, "#jobs tbody").await;
        assert!(
            table.contains("here-two") && !table.contains("here-one"),
            "{table}"
        );
        screenshot(&client, "jobs").await;
    });
}

/// A shell command appending a subunit event to the job's results.
fn emit(args: &str) -> String {
    format!(
        "{} subunit emit {args} >> \"$PROCTOR_RESULTS\"",
        assert_cmd::cargo::cargo_bin("proctor").display()
    )
}

#[test]
fn a_tests_history_shows_where_it_failed_across_three_jobs() {
    let (lab, tokens) = lab_with_tokens();
    let mut ids = Vec::new();
    for (n, status) in ["success", "fail", "success"].iter().enumerate() {
        // Each run attaches a traceback, which the failing run's job page shows.
        let sometimes = emit(&format!(
            "--test demo.sometimes --status {status} --attach - --file-name traceback"
        ));
        let file = lab.job_file(
            &format!("run{n}.yaml"),
            &format!(
                "job_queue: local\nname: run{n}\ntest_data:\n  test_cmds:\n    - {}\n    - {}\n    - \
                 echo 'assert 41 == 42 failed' | {sometimes}\n",
                emit("--start demo.steady"),
                emit("--test demo.steady --status success"),
            ),
        );
        let (code, out, err) = lab.run(&["submit", &file, "--wait", "--token", &tokens.alice]);
        assert!(code == 0 || code == 1, "{err}");
        ids.push(out.trim().to_owned());
    }
    let url = lab.url.clone();
    in_browser(false, |client| async move {
        client
            .goto(&format!("{url}/jobs/{}", ids[1]))
            .await
            .unwrap();
        assert!(text_of(&client, "#tests").await.contains("demo.sometimes"));
        // The failure's traceback is one click away.
        client
            .find(Locator::Css("#tests summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let details = text_of(&client, "#tests details pre").await;
        assert!(
            details.contains("--- traceback ---") && details.contains("assert 41 == 42 failed"),
            "{details}"
        );
        client
            .find(Locator::LinkText("demo.sometimes"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(&client, "the test's history", || async {
            text_of(&client, "h1").await == "Test demo.sometimes"
        })
        .await;
        let facts = text_of(&client, "dl.facts").await;
        assert!(facts.contains("3 in 3 jobs"), "{facts}");
        assert!(facts.contains("33 % (1 of 3)"), "{facts}");
        let strip = client.find_all(Locator::Css(".strip a")).await.unwrap();
        assert_eq!(strip.len(), 3);
        let failed = strip[1].attr("class").await.unwrap();
        assert_eq!(failed.as_deref(), Some("bad"));
        assert!(text_of(&client, "#fails-on").await.contains("a1"));
        assert!(client
            .find(Locator::Css("svg.chart polyline"))
            .await
            .is_ok());
        screenshot(&client, "test-history").await;
        client
            .goto(&format!("{url}/compare?a={}&b={}", ids[0], ids[1]))
            .await
            .unwrap();
        assert!(text_of(&client, ".compare-new-failures")
            .await
            .contains("demo.sometimes"));
        client
            .goto(&format!("{url}/compare?a={}&b={}", ids[1], ids[2]))
            .await
            .unwrap();
        assert!(text_of(&client, ".compare-fixed")
            .await
            .contains("demo.sometimes"));
        screenshot(&client, "compare").await;
    });
}

#[test]
fn html_in_a_jobs_name_and_output_shows_as_text() {
    let (lab, tokens) = lab_with_tokens();
    let file = lab.job_file(
        "hostile.yaml",
        "job_queue: local\nname: \"<script>window.pwned=1</script>\"\ntest_data:\n  test_cmds: \
         \"echo '<b>bold</b><img src=x onerror=window.pwned=2>'\"\n",
    );
    let (code, out, err) = lab.run(&["submit", &file, "--wait", "--token", &tokens.alice]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let url = lab.url.clone();
    in_browser(true, |client| async move {
        for page in [format!("{url}/jobs/{id}"), format!("{url}/jobs")] {
            client.goto(&page).await.unwrap();
            let pwned = client
                .execute("return typeof window.pwned;", vec![])
                .await
                .unwrap();
            assert_eq!(pwned.as_str(), Some("undefined"), "a script ran on {page}");
            assert!(client
                .find_all(Locator::Css("#log script, #log b, #log img, h1 script"))
                .await
                .unwrap()
                .is_empty());
        }
        client.goto(&format!("{url}/jobs/{id}")).await.unwrap();
        assert!(text_of(&client, "h1")
            .await
            .contains("<script>window.pwned=1</script>"));
        assert!(text_of(&client, "#log")
            .await
            .contains("<b>bold</b><img src=x onerror=window.pwned=2>"));
        screenshot(&client, "job-phone-width").await;
    });
}

/// WebDriver's key codes.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// Presses Tab until the focused element matches `css` (failing after 40 presses); answers that element.
async fn tab_to(client: &Client, css: &str) -> proctor_testkit::Element {
    for _ in 0..40 {
        let focused = client.active_element().await.unwrap();
        let matches = client
            .execute(
                "return document.activeElement.matches(arguments[0]);",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap();
        if matches.as_bool() == Some(true) {
            return focused;
        }
        focused.send_keys(TAB).await.unwrap();
    }
    panic!("Tab never reached {css}");
}

#[test]
fn a_job_page_follows_its_agent_and_phases_and_works_from_the_keyboard() {
    let (mut lab, tokens) = lab_with_tokens();
    // Queue `later` has no agent yet: the page is opened while the job waits.
    let file = lab.job_file(
        "later.yaml",
        "job_queue: later\nname: later\ntest_data:\n  test_cmds: echo begun; sleep 4; echo done\n",
    );
    let (code, out, err) = lab.run(&[
        "submit",
        &file,
        "--allow-unknown-queue",
        "--token",
        &tokens.alice,
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let url = lab.url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let driver = Driver::start();
    let client = runtime.block_on(driver.session(false));
    runtime.block_on(async {
        // Signing in with the keyboard alone: Tab to the field, type, Enter.
        client.goto(&format!("{url}/sign-in")).await.unwrap();
        let field = tab_to(&client, "input[name=token]").await;
        let outline = client
            .execute(
                "return getComputedStyle(document.activeElement).outlineStyle;",
                vec![],
            )
            .await
            .unwrap();
        assert_ne!(outline.as_str(), Some("none"), "the focus is not visible");
        field.send_keys(&tokens.alice).await.unwrap();
        field.send_keys(ENTER).await.unwrap();
        until(&client, "the signed-in name", || async {
            !text_of(&client, "#signed-in").await.is_empty()
        })
        .await;
        client.goto(&format!("{url}/jobs/{id}")).await.unwrap();
        assert_eq!(text_of(&client, "#job-state").await, "queued");
        assert!(text_of(&client, "#job-summary")
            .await
            .contains("No phase has started"));
        client
            .execute("window.sameLoad = true;", vec![])
            .await
            .unwrap();
    });
    // An agent for the queue comes; the page follows without a reload.
    agent_with_token(&mut lab, "a2", "later");
    runtime.block_on(async {
        until(
            &client,
            "the agent and the test phase on the page",
            || async {
                let summary = text_of(&client, "#job-summary").await;
                let phases = text_of(&client, "#phases").await;
                summary.contains("a2") && phases.contains("test") && phases.contains("running")
            },
        )
        .await;
        let same = client.execute("return window.sameLoad;", vec![]).await;
        assert_eq!(same.unwrap().as_bool(), Some(true), "the page was reloaded");
        assert_eq!(text_of(&client, "#job-state").await, "running");
        screenshot(&client, "job-phases-live").await;
        // The Cancel button is reached and pressed with the keyboard too.
        let cancel = tab_to(&client, "#cancel").await;
        cancel.send_keys(ENTER).await.unwrap();
        until(&client, "the cancel notice", || async {
            text_of(&client, "[role=status]")
                .await
                .contains("Cancel requested")
        })
        .await;
        until(&client, "the job cancelled", || async {
            text_of(&client, "#job-state").await == "cancelled"
        })
        .await;
        let _ = client.close().await;
    });
}

/// This machine's first IPv4 address that is not loopback, if it has one.
fn outside_address() -> Option<String> {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_owned)
}

/// A lab whose server listens on `listen` (beyond loopback, where the server wants a token in its store before it
/// starts), and that token (an admin's).
fn lab_beyond_loopback(listen: &str, flags: &[&str]) -> (Lab, String) {
    let dir = tempfile::tempdir().unwrap();
    let admin = token(&dir.path().join("data"), "admin");
    (Lab::start_on(dir, listen, flags), admin)
}

#[test]
fn pages_beyond_loopback_need_a_sign_in_unless_made_public() {
    let Some(address) = outside_address() else {
        eprintln!("skipped: this machine has no address beyond loopback");
        return;
    };
    let listen = format!("{address}:0");
    let (closed, _) = lab_beyond_loopback(&listen, &[]);
    let (public, admin) = lab_beyond_loopback(&listen, &["--public-pages"]);
    let job = public.job_file(
        "public.yaml",
        "job_queue: local\nname: public\ntest_data:\n  test_cmds: echo hi\n",
    );
    let (code, out, err) =
        public.run(&["submit", &job, "--allow-unknown-queue", "--token", &admin]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let (closed_url, public_url) = (closed.url.clone(), public.url.clone());
    assert!(!public_url.contains("127.0.0.1"), "{public_url}");
    in_browser(false, |client| async move {
        client.goto(&format!("{closed_url}/jobs")).await.unwrap();
        assert!(text_of(&client, "h1").await.starts_with("401"));
        assert!(client.find(Locator::LinkText("Sign in")).await.is_ok());
        client.goto(&format!("{public_url}/jobs")).await.unwrap();
        assert!(text_of(&client, "#jobs").await.contains("public"));
        // Open to read, not to write: a visitor who has not signed in may not cancel.
        client
            .goto(&format!("{public_url}/jobs/{id}"))
            .await
            .unwrap();
        assert!(client.find(Locator::Css("#cancel")).await.is_err());
        // Even with the CSRF token of a page's form (the sign-in form's), the cancel asks for a sign-in.
        client.goto(&format!("{public_url}/sign-in")).await.unwrap();
        let status = client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 const csrf = document.querySelector('input[name=csrf]').value;\
                 fetch(arguments[0], {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},\
                   body: 'csrf=' + csrf}).then(r => done(r.status));",
                vec![serde_json::json!(format!("{public_url}/jobs/{id}/cancel"))],
            )
            .await
            .unwrap();
        assert_eq!(status.as_u64(), Some(401));
    });
}
