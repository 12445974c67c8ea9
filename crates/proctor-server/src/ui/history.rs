//! One test across jobs (pass/fail strip, duration trend, flakiness, the agents it fails on), and two jobs'
//! results compared (new failures, fixed, slower).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use proctor_api::{TestHistoryQuery, TestResultView, TestResultsView};
use serde::Deserialize;

use super::format::duration;
use super::{page, Frame, Visitor};
use crate::api::{self, AppState};
use crate::auth::Caller;
use crate::error::ApiError;

/// How many jobs a test's history looks at.
const HISTORY_JOBS: u32 = 100;
/// A test is slower when it takes this many times as long, and at least [`SLOWER_BY`] more.
const SLOWER_RATIO: f64 = 1.5;
const SLOWER_BY: Duration = Duration::from_millis(100);

/// Which test.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WhichTest {
    #[serde(default)]
    id: String,
}

struct StripRun {
    job_id: String,
    class: &'static str,
    title: String,
}

struct FailsOn {
    agent: String,
    failed: usize,
    runs: usize,
}

struct RunRow {
    job_id: String,
    job: String,
    status: String,
    duration: String,
    agent: String,
}

#[derive(Template)]
#[template(path = "tests.html")]
struct TestHistoryPage {
    frame: Frame,
    test_id: String,
    runs: usize,
    jobs: usize,
    failure_rate: String,
    flaky_rate: String,
    strip: Vec<StripRun>,
    chart: String,
    fails_on: Vec<FailsOn>,
    table: Vec<RunRow>,
}

fn failed(status: &str) -> bool {
    matches!(status, "fail" | "uxsuccess" | "unfinished")
}

fn passed(status: &str) -> bool {
    matches!(status, "success" | "xfail")
}

/// `GET /tests?id=`: one test's history across the newest jobs that ran it.
pub(crate) async fn test_history(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(which): Query<WhichTest>,
) -> Response {
    let result = async {
        let caller = visitor.reader()?;
        let mut history = Vec::new();
        if !which.id.is_empty() {
            let query = TestHistoryQuery {
                test_id: which.id.clone(),
                jobs: Some(HISTORY_JOBS),
            };
            let Json(found) = api::jobs::test_history(State(state), caller, Query(query)).await?;
            history = found.runs;
        }
        // Oldest first, for the strip and the trend.
        history.reverse();
        let runs = history.len();
        let mut by_job: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        let mut agents: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for entry in &history {
            let seen = by_job.entry(entry.job_id.as_str()).or_default();
            seen.0 |= failed(&entry.run.status);
            seen.1 |= passed(&entry.run.status);
            let agent = entry.run.agent_id.clone().unwrap_or_else(|| "?".to_owned());
            let counts = agents.entry(agent).or_default();
            counts.1 += 1;
            if failed(&entry.run.status) {
                counts.0 += 1;
            }
        }
        let failed_runs = history.iter().filter(|e| failed(&e.run.status)).count();
        let flaky_jobs = by_job.values().filter(|(f, p)| *f && *p).count();
        let percent = |part: usize, whole: usize| match whole {
            0 => "0 %".to_owned(),
            _ => format!(
                "{:.0} % ({part} of {whole})",
                100.0 * part as f64 / whole as f64
            ),
        };
        let mut fails_on: Vec<FailsOn> = agents
            .into_iter()
            .filter(|(_, (failed, _))| *failed > 0)
            .map(|(agent, (failed, runs))| FailsOn {
                agent,
                failed,
                runs,
            })
            .collect();
        fails_on.sort_by(|a, b| b.failed.cmp(&a.failed).then_with(|| a.agent.cmp(&b.agent)));
        let durations: Vec<Option<Duration>> = history
            .iter()
            .map(|entry| entry.run.duration_us.map(Duration::from_micros))
            .collect();
        let template = TestHistoryPage {
            frame: visitor.frame("jobs"),
            runs,
            jobs: by_job.len(),
            failure_rate: percent(failed_runs, runs),
            flaky_rate: percent(flaky_jobs, by_job.len()),
            strip: history
                .iter()
                .map(|entry| StripRun {
                    job_id: entry.job_id.clone(),
                    class: match entry.run.status.as_str() {
                        status if failed(status) => "bad",
                        status if passed(status) => "ok",
                        _ => "going",
                    },
                    title: format!(
                        "{}: {} in job {}",
                        entry.job_created_at.strftime("%Y-%m-%d %H:%M"),
                        entry.run.status,
                        entry.job_name.as_deref().unwrap_or(&entry.job_id)
                    ),
                })
                .collect(),
            chart: duration_chart(&durations, "Duration of each run"),
            fails_on,
            table: history
                .iter()
                .rev()
                .map(|entry| RunRow {
                    job_id: entry.job_id.clone(),
                    job: entry
                        .job_name
                        .clone()
                        .unwrap_or_else(|| entry.job_id.clone()),
                    status: entry.run.status.clone(),
                    duration: entry
                        .run
                        .duration_us
                        .map(|micros| duration(Duration::from_micros(micros)))
                        .unwrap_or_default(),
                    agent: entry.run.agent_id.clone().unwrap_or_default(),
                })
                .collect(),
            test_id: which.id,
        };
        Ok(page(&visitor, &template))
    }
    .await;
    result.unwrap_or_else(|error| super::error_page(&visitor, &error, "/tests"))
}

/// An SVG line chart of durations, oldest first (gaps where there is none), described to screen readers as
/// `what`. Only numbers and `what` (a fixed text) go into it.
pub(crate) fn duration_chart(durations: &[Option<Duration>], what: &str) -> String {
    let (width, height, pad) = (600.0, 160.0, 30.0);
    let most = durations
        .iter()
        .flatten()
        .map(Duration::as_secs_f64)
        .fold(0.0_f64, f64::max);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{what}, oldest first; \
         longest {}\">",
        duration(Duration::from_secs_f64(most))
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#d8dce4\"/>\
         <text x=\"2\" y=\"14\" font-size=\"11\" fill=\"#5b6475\">{}</text>",
        height - pad,
        width - 4.0,
        height - pad,
        duration(Duration::from_secs_f64(most))
    );
    // All-zero durations still draw, along the axis.
    let scale = if most > 0.0 { most } else { 1.0 };
    if durations.iter().any(Option::is_some) {
        let step = (width - pad - 4.0) / (durations.len().max(2) - 1) as f64;
        let mut points = String::new();
        for (index, took) in durations.iter().enumerate() {
            let Some(took) = took else { continue };
            let x = pad + step * index as f64;
            let y = height - pad - (height - 2.0 * pad) * took.as_secs_f64() / scale;
            let _ = write!(points, "{x:.1},{y:.1} ");
            let _ = write!(
                svg,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#2754c5\"/>"
            );
        }
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2754c5\" stroke-width=\"1.5\"/>",
            points.trim_end()
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Which two jobs.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Pair {
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
}

struct CompareRow {
    test: String,
    before: String,
    after: String,
}

struct Section {
    key: &'static str,
    title: &'static str,
    rows: Vec<CompareRow>,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    frame: Frame,
    a: String,
    b: String,
    compared: bool,
    sections: Vec<Section>,
}

/// A test's verdict and last run's duration, as a cell.
fn cell(test: Option<&TestResultView>) -> String {
    match test {
        None => "not run".to_owned(),
        Some(test) => match last_duration(test) {
            Some(took) => format!("{} in {}", test.verdict, duration(took)),
            None => test.verdict.clone(),
        },
    }
}

fn last_duration(test: &TestResultView) -> Option<Duration> {
    test.runs.last()?.duration_us.map(Duration::from_micros)
}

async fn results(state: &AppState, caller: &Caller, id: &str) -> Result<TestResultsView, ApiError> {
    let Json(results) =
        api::jobs::list_tests(State(state.clone()), caller.clone(), Path(id.to_owned())).await?;
    Ok(results)
}

/// `GET /compare?a=JOB&b=JOB`: what changed from job `a` to job `b`.
pub(crate) async fn compare(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(pair): Query<Pair>,
) -> Response {
    let result = async {
        let caller = visitor.reader()?;
        let (a, b) = (pair.a.trim().to_owned(), pair.b.trim().to_owned());
        let compared = !a.is_empty() && !b.is_empty();
        let mut sections = Vec::new();
        if compared {
            let before = results(&state, &caller, &a).await?;
            let after = results(&state, &caller, &b).await?;
            sections = compare_results(&before, &after);
        }
        let template = ComparePage {
            frame: visitor.frame("jobs"),
            a,
            b,
            compared,
            sections,
        };
        Ok(page(&visitor, &template))
    }
    .await;
    result.unwrap_or_else(|error| super::error_page(&visitor, &error, "/compare"))
}

/// New failures, fixed tests, slower tests, and tests only one job ran.
fn compare_results(before: &TestResultsView, after: &TestResultsView) -> Vec<Section> {
    let index = |view: &TestResultsView| -> BTreeMap<String, TestResultView> {
        view.results
            .iter()
            .map(|test| (test.test_id.clone(), test.clone()))
            .collect()
    };
    let (old, new) = (index(before), index(after));
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut sections = [
        ("new-failures", "New failures"),
        ("fixed", "Fixed"),
        ("slower", "Slower"),
        ("only-before", "Only in the first job"),
        ("only-after", "Only in the second job"),
    ]
    .map(|(key, title)| Section {
        key,
        title,
        rows: Vec::new(),
    });
    for id in ids {
        let (was, is) = (old.get(id), new.get(id));
        let row = CompareRow {
            test: id.clone(),
            before: cell(was),
            after: cell(is),
        };
        let bad = |test: &TestResultView| test.verdict == "failed";
        let section = match (was, is) {
            (None, Some(_)) => Some(4),
            (Some(_), None) => Some(3),
            (Some(was), Some(is)) if bad(is) && !bad(was) => Some(0),
            (Some(was), Some(is)) if bad(was) && !bad(is) => Some(1),
            (Some(was), Some(is)) => match (last_duration(was), last_duration(is)) {
                (Some(then), Some(now))
                    if now.as_secs_f64() > then.as_secs_f64() * SLOWER_RATIO
                        && now.saturating_sub(then) >= SLOWER_BY =>
                {
                    Some(2)
                }
                _ => None,
            },
            (None, None) => None,
        };
        if let Some(section) = section {
            sections[section].rows.push(row);
        }
    }
    sections.into_iter().collect()
}
