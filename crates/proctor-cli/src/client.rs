//! The client commands: submit a job and follow it, show jobs, their logs, results and artifacts, cancel them,
//! list queues and agents. Each talks to the server named by `--server` / `PROCTOR_SERVER`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use miette::{NamedSource, SourceSpan};
use proctor_api::{
    JobDetail, JobView, JobsQuery, ProblemView, StreamKind, TestResultView, TestRunView,
};
use proctor_archive::Limits;
use proctor_client::Client;
use proctor_events::{RunStatus, Sink, Tally, Try, UnknownRunStatus};
use proctor_formats::junit::JunitSink;
use proctor_job::{Job, JobFormat, Phase};

use crate::archive;
use crate::cli::{FollowArgs, JobsArgs, Remote, SubmitArgs};
use crate::display;
use crate::error::{CliError, InvalidJob};
use crate::exit;
use crate::follow;

/// A client for the server the command names.
pub fn connect(remote: &Remote) -> Result<Client, CliError> {
    Ok(Client::new(&remote.server, remote.token.as_deref())?)
}

/// `proctor submit`: checks the job file here (pointing at any problem), packs its attachments, says once which of
/// its Testflinger fields the lab does not act on, submits it, uploads them, then waits or follows if asked. The attachments are packed before the submit: the server holds a
/// job with attachments until they arrive, so a job submitted before a packing failure would wait forever.
pub fn submit(args: SubmitArgs) -> Result<u8, CliError> {
    let text = fs::read_to_string(&args.file).map_err(|source| CliError::Input {
        path: args.file.clone(),
        source,
    })?;
    let job = Job::parse(&text, JobFormat::detect(&text))
        .map_err(|error| invalid_job(&args.file, &text, &ProblemView::from(&error.problem)))?;
    let attachments = pack_attachments(&args.file, &job)?;
    let inert = job.inert_fields();
    if !inert.is_empty() {
        eprintln!(
            "proctor: this lab keeps but does not act on {} (they reach the phase commands in job.json)",
            inert.join(", ")
        );
    }
    let client = connect(&args.remote)?;
    let submitted = client
        .submit_job(text.as_bytes(), args.allow_unknown_queue)
        .map_err(
            |error| match error.body().and_then(|body| body.problem.as_ref()) {
                Some(problem) => invalid_job(&args.file, &text, problem),
                None => error.into(),
            },
        )?;
    if let Some(tar_gz) = attachments {
        upload_attachments(&client, &submitted.id, tar_gz)?;
    }
    after_start(&client, submitted, &args.follow)
}

/// What every command that makes a job does next: print its id (or JSON), then wait or follow if asked.
pub fn after_start(client: &Client, job: JobView, follow: &FollowArgs) -> Result<u8, CliError> {
    if !follow.json {
        println!("{}", job.id);
    }
    let ended = if follow.follow {
        Some(follow::follow(
            client,
            &job.id,
            None,
            &mut io::stdout().lock(),
        )?)
    } else if follow.wait {
        Some(follow::wait(client, &job.id)?)
    } else {
        None
    };
    match ended {
        None => {
            if follow.json {
                print_json(&job)?;
            }
            Ok(exit::OK)
        }
        Some(ended) => {
            if follow.json {
                print_json(&ended)?;
            } else {
                follow::report_end(&ended);
            }
            Ok(follow::exit_status(ended.state))
        }
    }
}

/// The job's attachments packed as tar.gz (paths relative to the job file), or `None` when it has none.
fn pack_attachments(file: &Path, job: &Job) -> Result<Option<Vec<u8>>, CliError> {
    let Some(test_data) = job
        .test_data
        .as_ref()
        .filter(|data| !data.attachments.is_empty())
    else {
        return Ok(None);
    };
    let base = file.parent().unwrap_or(Path::new("."));
    Ok(Some(archive::pack_attachments(
        base,
        Phase::Test,
        &test_data.attachments,
    )?))
}

/// Uploads a submitted job's attachments. When the server does not take them, the job (held until they arrive)
/// is cancelled, so it does not wait for ever, and the error is the upload's.
fn upload_attachments(client: &Client, job_id: &str, tar_gz: Vec<u8>) -> Result<(), CliError> {
    let Err(error) = client.upload_attachments(job_id, tar_gz) else {
        return Ok(());
    };
    match client.cancel(job_id) {
        Ok(_) => eprintln!("proctor: job {job_id} was cancelled: its attachments were not uploaded"),
        Err(cancel) => eprintln!(
            "proctor: job {job_id} waits for attachments that were not uploaded, and could not be cancelled: {cancel}"
        ),
    }
    Err(error.into())
}

/// A job file's problem as an error pointing into the file.
fn invalid_job(file: &Path, text: &str, problem: &ProblemView) -> CliError {
    let (line, column) = (problem.line.unwrap_or(0), problem.column.unwrap_or(0));
    let field = if problem.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", problem.path)
    };
    let at = offset_of(text, line, column).map(|offset| SourceSpan::from((offset, 0)));
    CliError::InvalidJob(Box::new(InvalidJob {
        file: file.display().to_string(),
        line,
        column,
        message: format!("{field}{}", problem.message),
        text: NamedSource::new(file.display().to_string(), text.to_owned()),
        at,
    }))
}

/// The byte offset of a 1-based line and column (counted in characters), if the text has them.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut lines = text.split_inclusive('\n');
    let mut line_start = 0;
    for _ in 1..line {
        line_start += lines.next()?.len();
    }
    let line_text = lines.next()?;
    let within: usize = line_text
        .chars()
        .take(column.checked_sub(1)?)
        .map(char::len_utf8)
        .sum();
    (line > 0).then_some(line_start + within)
}

/// `proctor status`.
pub fn status(remote: &Remote, job_id: &str, json: bool) -> Result<u8, CliError> {
    let detail = connect(remote)?.job(job_id)?;
    if json {
        print_json(&detail)?;
    } else {
        print_detail(&detail)?;
    }
    Ok(exit::OK)
}

fn print_detail(detail: &JobDetail) -> Result<(), CliError> {
    let job = &detail.job;
    let mut out = io::stdout().lock();
    writeln!(out, "job       {}", job.id)?;
    if let Some(name) = &job.name {
        writeln!(out, "name      {name}")?;
    }
    writeln!(out, "queue     {}", job.queue)?;
    let reason = job.reason.as_deref().map(|reason| format!(" ({reason})"));
    writeln!(out, "state     {}{}", job.state, reason.unwrap_or_default())?;
    if let Some(agent) = &job.agent_id {
        writeln!(out, "agent     {agent}")?;
    }
    writeln!(out, "attempts  {} of {}", job.attempts, job.max_attempts)?;
    if let Some(problem) = &detail.results_problem {
        writeln!(out, "results   could not be read to their end: {problem}")?;
    }
    writeln!(out, "submitted {}", job.created_at)?;
    if let Some(started) = job.started_at {
        writeln!(out, "started   {started}")?;
    }
    if let Some(ended) = job.ended_at {
        writeln!(out, "ended     {ended}")?;
    }
    for phase in &detail.phases {
        let status = phase
            .exit_status
            .map_or_else(|| "running".to_owned(), |status| format!("exit {status}"));
        writeln!(out, "phase     {:<16} {status}", phase.name)?;
    }
    out.flush()?;
    Ok(())
}

/// `proctor logs`.
pub fn logs(
    remote: &Remote,
    job_id: &str,
    phase: Option<Phase>,
    live: bool,
) -> Result<u8, CliError> {
    let client = connect(remote)?;
    let mut out = io::stdout().lock();
    if live {
        follow::follow(&client, job_id, phase, &mut out)?;
    } else {
        out.write_all(&follow::read_all(&client, job_id, StreamKind::Log, phase)?)?;
        out.flush()?;
    }
    Ok(exit::OK)
}

/// `proctor results`: a table of the tests (one row per test with its verdict, and its runs when it ran more than
/// once or did not finish), the raw subunit stream, or a JUnit report. Exit 1 when a test failed (by Proctor's one
/// results model: a run of its latest try failed, `fail`, `uxsuccess`, or started and never finished) or the server
/// could not read the stream to its end.
pub fn results(
    remote: &Remote,
    job_id: &str,
    subunit: bool,
    junit: Option<&Path>,
) -> Result<u8, CliError> {
    let client = connect(remote)?;
    if subunit {
        let stream = follow::read_all(&client, job_id, StreamKind::Results, None)?;
        let mut out = io::stdout().lock();
        out.write_all(&stream)?;
        out.flush()?;
        return Ok(exit::OK);
    }
    if let Some(path) = junit {
        let stream = follow::read_all(&client, job_id, StreamKind::Results, None)?;
        write_junit(job_id, &stream, path)?;
        return Ok(exit::OK);
    }
    let problem = client.job(job_id)?.results_problem;
    let results = client.tests(job_id)?;
    let mut out = io::stdout().lock();
    let mut tally = Tally::new();
    for test in &results.results {
        let runs = test
            .runs
            .iter()
            .map(|run| Ok((run, run.status.parse::<RunStatus>()?)))
            .collect::<Result<Vec<_>, UnknownRunStatus>>()
            .map_err(|error| CliError::Parse {
                what: format!("the server's results for test {}", test.test_id),
                source: Box::new(error),
            })?;
        for (run, status) in &runs {
            let at = Try {
                attempt: run.attempt,
                retry: run.retry,
            };
            tally.add(&test.test_id, at, *status);
        }
        writeln!(out, "{}", test_line(test))?;
        // A test's runs are listed when one is not enough to tell its story.
        if runs.len() > 1
            || runs
                .iter()
                .any(|(_, status)| *status == RunStatus::Unfinished)
        {
            for (run, _) in &runs {
                writeln!(out, "{}", run_line(run))?;
            }
        }
    }
    writeln!(out, "{}", display::results_line(&tally, None))?;
    if let Some(problem) = &problem {
        writeln!(
            out,
            "the results stream could not be read to its end: {problem}"
        )?;
    }
    out.flush()?;
    Ok(if tally.tests().failed > 0 || problem.is_some() {
        exit::TESTS_FAILED
    } else {
        exit::OK
    })
}

/// A test's row: its verdict, the duration of its last run and its id.
fn test_line(test: &TestResultView) -> String {
    let seconds = test
        .runs
        .last()
        .and_then(|run| run.duration_us)
        .map_or_else(String::new, seconds_text);
    format!("{:<10} {:>9}  {}", test.verdict, seconds, test.test_id)
}

/// One run of a test, under its row: status, duration, where it ran and why it did not finish.
fn run_line(run: &TestRunView) -> String {
    let seconds = run.duration_us.map_or_else(String::new, seconds_text);
    let mut place = format!("attempt {}", run.attempt);
    if let Some(route) = &run.route_code {
        place.push_str(&format!(", route {route}"));
    }
    if run.retry > 0 {
        place.push_str(&format!(", retry {}", run.retry));
    }
    if let Some(agent) = &run.agent_id {
        place.push_str(&format!(", on {agent}"));
    }
    let mut line = format!("  {:<10} {:>7}  {place}", run.status, seconds);
    if let Some(reason) = &run.reason {
        line.push_str(&format!(": {reason}"));
    }
    line
}

fn seconds_text(micros: u64) -> String {
    format!("{:.3}s", micros as f64 / 1e6)
}

fn write_junit(job_id: &str, stream: &[u8], path: &Path) -> Result<(), CliError> {
    let mut sink = JunitSink::new().with_suite_name(job_id);
    crate::input::feed_reader(stream, Path::new("the job's results"), &mut sink)?;
    sink.finish()?;
    let xml = sink.to_xml_string().map_err(|source| CliError::Parse {
        what: "the job's results into JUnit XML".to_owned(),
        source: Box::new(source),
    })?;
    fs::write(path, xml).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })
}

/// `proctor artifacts`.
pub fn artifacts(
    remote: &Remote,
    job_id: &str,
    output: &Path,
    max_expanded_bytes: u64,
) -> Result<u8, CliError> {
    let tar_gz = connect(remote)?
        .artifacts(job_id)?
        .ok_or_else(|| CliError::NoArtifacts {
            job: job_id.to_owned(),
        })?;
    let limits = Limits {
        expanded_bytes: max_expanded_bytes,
        ..Limits::ARTIFACTS
    };
    proctor_archive::unpack(&tar_gz[..], output, proctor_archive::Layout::Any, limits)?;
    eprintln!(
        "unpacked job {job_id}'s artifacts into {}",
        output.display()
    );
    Ok(exit::OK)
}

/// `proctor cancel`.
pub fn cancel(remote: &Remote, job_id: &str) -> Result<u8, CliError> {
    let outcome = connect(remote)?.cancel(job_id)?;
    let what = match outcome.outcome.as_str() {
        "cancelled" => "cancelled".to_owned(),
        "requested" => "cancel requested; its agent stops it".to_owned(),
        _ => format!("already ended ({})", outcome.state),
    };
    println!("job {job_id}: {what}");
    Ok(exit::OK)
}

/// `proctor jobs`.
pub fn jobs(args: &JobsArgs) -> Result<u8, CliError> {
    let query = JobsQuery {
        queue: args.queue.clone(),
        state: args.state.map(|state| state.as_str().to_owned()),
        submitter: args.submitter.clone(),
        limit: args.limit,
        cursor: args.cursor.clone(),
    };
    let page = connect(&args.remote)?.jobs(&query)?;
    if let Some(cursor) = &page.next_cursor {
        eprintln!("more jobs: the same command with --cursor {cursor}");
    }
    let header = format!("{:<36}  {:<9}  {:<16}  NAME", "ID", "STATE", "QUEUE");
    print_listing(&page.jobs, args.json, &header, |job| {
        let name = job.name.as_deref().unwrap_or("");
        format!(
            "{:<36}  {:<9}  {:<16}  {name}",
            job.id,
            job.state.as_str(),
            job.queue
        )
    })
}

/// `proctor queues`.
pub fn queues(remote: &Remote, json: bool) -> Result<u8, CliError> {
    let queues = connect(remote)?.queues()?;
    let header = format!(
        "{:<20}  {:>6}  {:>7}  {:>6}",
        "QUEUE", "QUEUED", "RUNNING", "AGENTS"
    );
    print_listing(&queues, json, &header, |queue| {
        format!(
            "{:<20}  {:>6}  {:>7}  {:>6}",
            queue.name, queue.queued, queue.running, queue.agents_online
        )
    })
}

/// `proctor agents`.
pub fn agents(remote: &Remote, json: bool) -> Result<u8, CliError> {
    let agents = connect(remote)?.agents()?;
    let header = format!(
        "{:<20}  {:<11}  {:<30}  QUEUES",
        "AGENT", "STATE", "LAST HEARD"
    );
    print_listing(&agents, json, &header, |agent| {
        format!(
            "{:<20}  {:<11}  {:<30}  {}",
            agent.id,
            agent.state.as_str(),
            agent.last_heartbeat.to_string(),
            agent.queues.join(",")
        )
    })
}

/// Prints `items` as pretty JSON, or as a table: `header`, then one `row` per item.
pub fn print_listing<T: serde::Serialize>(
    items: &[T],
    json: bool,
    header: &str,
    row: impl Fn(&T) -> String,
) -> Result<u8, CliError> {
    if json {
        print_json(&items)?;
        return Ok(exit::OK);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{header}")?;
    for item in items {
        writeln!(out, "{}", row(item))?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// Prints a value as pretty JSON on standard output.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::offset_of;

    #[test]
    fn offsets_count_lines_and_characters_from_one() {
        let text = "job_queue: local\nnamé: x\n  bad: 1\n";
        assert_eq!(offset_of(text, 1, 1), Some(0));
        assert_eq!(offset_of(text, 2, 7), Some(17 + 7));
        assert_eq!(offset_of(text, 3, 3), Some(17 + 9 + 2));
        assert_eq!(offset_of(text, 0, 1), None);
        assert_eq!(offset_of(text, 9, 1), None);
    }
}
