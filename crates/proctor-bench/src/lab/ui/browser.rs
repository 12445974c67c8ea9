//! A log line to the open job page in a real browser: one agent runs a job that waits two seconds (the browser opens
//! the job's page meanwhile) and then prints `tick $EPOCHREALTIME` every 50 ms. Headless Chromium, driven through
//! chromedriver, shows the page; a `MutationObserver` on its `<pre id="log">` notes when each batch of lines the
//! page's script appends (on the server's `log` event) is in the document. A line's latency runs from its print to
//! that moment. Baselines, in the same run: the API follower of the same script (`read_stream` with a wait, the tail
//! part's) and the script's stdout read through a pipe.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proctor_testkit::{Client, Driver};

use crate::lab::fixture::{Lab, PATIENCE};
use crate::lab::tail::{follow, read_through_pipe, Ticks, MARKER};
use crate::lab::{marked_times, millis, since, verdict, LabBenchError, Latencies};
use crate::process::ratio;

/// The job: 200 lines, after long enough for the browser to open the page and its event stream, and followed by
/// long enough to collect the last lines before the job's end reloads the page.
const TICKS: Ticks = Ticks {
    lines: 200,
    before: Duration::from_secs(2),
    after: Duration::from_secs(3),
};
/// How often the bench takes what the page saw (the page keeps it until then).
const COLLECT_EVERY: Duration = Duration::from_millis(500);
/// The goal of issue 13.
const GOAL: Duration = Duration::from_millis(250);

/// Records, for each batch of nodes added to the log, its text, when it was added and when the next frame began
/// (milliseconds since the epoch, as fractional as the browser's clock allows); answers the log's text so far,
/// which must hold no line yet (else lines were added before anyone watched). The first time is taken in the
/// observer's callback, a microtask right after the page's script appended the lines: the moment they are in the
/// document. The second is the next animation frame's callback, after which that frame is laid out and painted:
/// about when a reader sees them.
const OBSERVE: &str = r#"
const log = document.getElementById("log");
if (!log || !log.dataset.live) return null;
window.__seen = [];
new MutationObserver(function (records) {
  const seen = [performance.timeOrigin + performance.now(), null, ""];
  for (const record of records) for (const node of record.addedNodes) seen[2] += node.textContent;
  window.__seen.push(seen);
  requestAnimationFrame(function () { seen[1] = performance.timeOrigin + performance.now(); });
}).observe(log, { childList: true });
return log.textContent;
"#;

/// Takes what the observer recorded since the last take, once its frame has begun; `null` once the page was
/// reloaded (the job ended), which lost the observer.
const TAKE: &str = r#"
if (!window.__seen) return null;
const framed = window.__seen.filter(function (seen) { return seen[1] !== null; });
window.__seen = window.__seen.filter(function (seen) { return seen[1] === null; });
return framed;
"#;

/// The browser's clock as the latencies read it, and `Date.now()`.
const CLOCK: &str = "return [performance.timeOrigin + performance.now(), Date.now()];";

/// Measures and prints the table.
pub(super) fn bench() -> Result<(), LabBenchError> {
    println!(
        "\nui browser: a job printing a line every 50 ms ({} lines, after {:?}), its page open in headless Chromium",
        TICKS.lines, TICKS.before
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LabBenchError::Runtime)?;
    // Started before the lab, so the page opens at once after the submit. The testkit panics if chromedriver or
    // Chromium is missing or will not start: nothing is measured then anyway.
    let driver = Driver::start();
    let client = runtime.block_on(driver.session(false));
    let lab = Lab::start(1)?;
    let measured = watch_in_browser(&runtime, &client, &lab).and_then(|browser| {
        let follower = follow(&lab, &TICKS)?;
        Ok((browser, follower))
    });
    // Closing the session ends its Chromium; whether it closed cleanly changes no figure.
    let _ = runtime.block_on(client.close());
    lab.stop()?;
    let (browser, follower) = measured?;
    let pipe = read_through_pipe(&TICKS)?;
    print_table(
        (Latencies::of(browser.added), Latencies::of(browser.framed)),
        Latencies::of(follower),
        Latencies::of(pipe),
    );
    Ok(())
}

/// Each line's latency as the page saw it.
#[derive(Debug, Default)]
struct Seen {
    /// From the print to the line being in the page's document.
    added: Vec<Duration>,
    /// From the print to the start of the next frame, which paints it.
    framed: Vec<Duration>,
}

/// Submits the job, opens its page and collects what the page saw until every line was seen; each line's latency.
fn watch_in_browser(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    lab: &Lab,
) -> Result<Seen, LabBenchError> {
    let job = lab.submit(&TICKS.script())?;
    let url = format!(
        "{}/jobs/{}",
        lab.client.base().trim_end_matches('/'),
        job.id
    );
    let seen = runtime.block_on(async {
        client
            .goto(&url)
            .await
            .map_err(browser_error("opening the job page"))?;
        observe(client).await?;
        print_clock_offset(client).await?;
        collect(client).await
    })?;
    // The job must have passed, or its lines mean nothing.
    lab.follow_to_end(&job.id)?;
    Ok(seen)
}

/// Starts the observer on the open page, before its first line.
async fn observe(client: &Client) -> Result<(), LabBenchError> {
    let shown = client
        .execute(OBSERVE, Vec::new())
        .await
        .map_err(browser_error("observing the log"))?;
    match shown.as_str() {
        Some(log) if marked_times(log, MARKER).next().is_none() => Ok(()),
        Some(_) => Err(LabBenchError::Browser(format!(
            "the page showed lines before the observer started: open it sooner or wait longer than {:?}",
            TICKS.before
        ))),
        None => Err(LabBenchError::Browser(
            "the job page has no live log".to_owned(),
        )),
    }
}

/// Prints how far the browser's clock is from the bench's, within the round trip of asking: the latencies compare
/// times of both.
async fn print_clock_offset(client: &Client) -> Result<(), LabBenchError> {
    let asked = SystemTime::now();
    let clocks = client
        .execute(CLOCK, Vec::new())
        .await
        .map_err(browser_error("reading the browser's clock"))?;
    let answered = SystemTime::now();
    let epoch_millis = |time: SystemTime| since(UNIX_EPOCH, time).as_secs_f64() * 1000.0;
    let middle = (epoch_millis(asked) + epoch_millis(answered)) / 2.0;
    let read = |index: usize| clocks.get(index).and_then(serde_json::Value::as_f64);
    let (Some(precise), Some(date)) = (read(0), read(1)) else {
        return Err(LabBenchError::Browser(format!(
            "the browser's clocks read {clocks}"
        )));
    };
    println!(
        "(browser clock − bench clock: {:+.2} ms, Date.now() − browser clock: {:+.2} ms, asked within {})",
        precise - middle,
        date - precise,
        millis(since(asked, answered))
    );
    Ok(())
}

/// Takes what the page saw every [`COLLECT_EVERY`] until all the job's lines are in; each line's latencies.
async fn collect(client: &Client) -> Result<Seen, LabBenchError> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Seen::default();
    while seen.added.len() < TICKS.lines {
        tokio::time::sleep(COLLECT_EVERY).await;
        let taken = client
            .execute(TAKE, Vec::new())
            .await
            .map_err(browser_error("collecting what the page saw"))?;
        let Some(batches) = taken.as_array() else {
            // The page reloaded: the job ended before every line was collected.
            break;
        };
        for batch in batches {
            let (added, framed, text) = seen_batch(batch)?;
            for printed in marked_times(text, MARKER) {
                seen.added.push(since(printed, added));
                seen.framed.push(since(printed, framed));
            }
        }
        if Instant::now() > deadline {
            return Err(LabBenchError::TimedOut {
                what: "the job page to show every line".to_owned(),
                patience: PATIENCE,
            });
        }
    }
    if seen.added.len() != TICKS.lines {
        return Err(LabBenchError::MissingLines {
            what: "the browser saw",
            expected: TICKS.lines,
            found: seen.added.len(),
        });
    }
    Ok(seen)
}

/// One record of the observer: when the text was added, when the next frame began, and the text.
fn seen_batch(batch: &serde_json::Value) -> Result<(SystemTime, SystemTime, &str), LabBenchError> {
    let time = |index: usize| {
        batch
            .get(index)
            .and_then(serde_json::Value::as_f64)
            .and_then(|millis| Duration::try_from_secs_f64(millis / 1000.0).ok())
            .map(|since_epoch| UNIX_EPOCH + since_epoch)
    };
    match (
        time(0),
        time(1),
        batch.get(2).and_then(serde_json::Value::as_str),
    ) {
        (Some(added), Some(framed), Some(text)) => Ok((added, framed, text)),
        _ => Err(LabBenchError::Browser(format!(
            "the observer recorded {batch}"
        ))),
    }
}

/// The error of a browser command doing `what`, to pass to `map_err`.
fn browser_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> LabBenchError {
    move |error| LabBenchError::Browser(format!("{what}: {error}"))
}

/// Prints the browser's rows, both baselines and the ratios; the goal is judged on the frame that paints a line.
fn print_table(browser: (Latencies, Latencies), follower: Latencies, pipe: Latencies) {
    let (added, framed) = browser;
    println!(
        "\n| print → seen ({} lines) | p50 | p95 | p99 | max |\n|---|---|---|---|---|",
        TICKS.lines
    );
    let rows = [
        (
            "browser: agent → server → event stream → live.js, in the page's log",
            added,
        ),
        (
            "browser: … and the next frame begins (it paints the line)",
            framed,
        ),
        ("baseline: API follower, read_stream with a wait", follower),
        ("baseline: the script's stdout through a pipe", pipe),
    ];
    for (label, row) in rows {
        println!(
            "| {label} | {} | {} | {} | {} |",
            millis(row.p50),
            millis(row.p95),
            millis(row.p99),
            millis(row.max)
        );
    }
    for (label, baseline) in [("API follower", follower), ("pipe", pipe)] {
        println!(
            "| **browser (next frame) / {label}** | **{:.1}×** | **{:.1}×** | **{:.1}×** | {:.1}× |",
            ratio(framed.p50, baseline.p50),
            ratio(framed.p95, baseline.p95),
            ratio(framed.p99, baseline.p99),
            ratio(framed.max, baseline.max)
        );
    }
    println!(
        "goal p99 ≤ {} (to the next frame): {}",
        millis(GOAL),
        verdict(framed.p99 <= GOAL)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_records_read_as_times_and_text() {
        let record = serde_json::json!([1_700_000_000_123.5, 1_700_000_000_130.0, "tick 1.5\n"]);
        let (added, framed, text) = seen_batch(&record)
            .ok()
            .unwrap_or((UNIX_EPOCH, UNIX_EPOCH, ""));
        // Milliseconds in a double are exact to well under a microsecond at today's epoch.
        let close = |time: SystemTime, micros: u64| {
            let exact = UNIX_EPOCH + Duration::from_micros(micros);
            since(time, exact).max(since(exact, time)) < Duration::from_micros(1)
        };
        assert!(close(added, 1_700_000_000_123_500), "{added:?}");
        assert!(close(framed, 1_700_000_000_130_000), "{framed:?}");
        assert_eq!(text, "tick 1.5\n");
        assert!(seen_batch(&serde_json::json!([1.0, null, "tick"])).is_err());
    }
}
