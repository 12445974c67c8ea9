//! `proctor example`: runs the example tests built into the binary, records
//! their subunit stream and shows its summary. It exercises the whole event
//! layer (route codes, tee, timestamps, summary, writer) on real processes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use bytes::Bytes;
use proctor_events::{Sink, Summary, Tee};
use proctor_subunit::{Event, EventWriter, Status, Timestamp};

use crate::cli::ExampleArgs;
use crate::display::Display;
use crate::error::CliError;
use crate::exit;

/// The example tests: name and bash script. Exit 0 passes, 77 skips, anything
/// else fails.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "examples.arithmetic",
        include_str!("../../../examples/tests/arithmetic.sh"),
    ),
    (
        "examples.text_tools",
        include_str!("../../../examples/tests/text-tools.sh"),
    ),
    (
        "examples.unicode_output",
        include_str!("../../../examples/tests/unicode-output.sh"),
    ),
    (
        "examples.slow",
        include_str!("../../../examples/tests/slow.sh"),
    ),
    (
        "examples.needs_missing_tool",
        include_str!("../../../examples/tests/needs-missing-tool.sh"),
    ),
];

/// The exit status that marks a test as skipped.
const SKIP_EXIT_CODE: i32 = 77;

/// Runs the examples on `concurrency` workers and summarises the stream.
pub fn run(args: ExampleArgs) -> Result<u8, CliError> {
    let path = args.output.unwrap_or_else(default_output);
    let file = File::create(&path).map_err(|source| CliError::Input {
        path: path.clone(),
        source,
    })?;
    let mut writer = EventWriter::new(BufWriter::new(file));
    let mut summary = Summary::new();
    let mut progress = Display::plain();
    {
        let mut tee = Tee::new()
            .with(&mut writer)
            .with(&mut summary)
            .with(&mut progress);
        for event in run_examples(args.concurrency.max(1)) {
            tee.event(&event)?;
        }
        tee.finish()?;
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "\n{} tests: {} passed, {} failed, {} skipped in {:.2}s",
        summary.total,
        summary.passed,
        summary.failed,
        summary.skipped,
        summary.wall_time().unwrap_or_default().as_secs_f64()
    )?;
    writeln!(out, "subunit stream: {}", path.display())?;
    writeln!(out, "  try: proctor subunit stats {}", path.display())?;
    Ok(if summary.was_successful() {
        exit::OK
    } else {
        exit::TESTS_FAILED
    })
}

fn default_output() -> PathBuf {
    std::env::temp_dir().join(format!("proctor-example-{}.subunit", std::process::id()))
}

/// Starts the workers and returns their events as they happen.
fn run_examples(workers: usize) -> mpsc::Receiver<Event> {
    let queue = Arc::new(Mutex::new(
        EXAMPLES.iter().copied().collect::<VecDeque<_>>(),
    ));
    let (sender, receiver) = mpsc::channel();
    for worker in 0..workers {
        let queue = Arc::clone(&queue);
        let sender = sender.clone();
        thread::spawn(move || {
            let route = worker.to_string();
            while let Some((name, script)) = next_example(&queue) {
                for event in run_example(name, script) {
                    if sender.send(event.routed(route.clone())).is_err() {
                        return;
                    }
                }
            }
        });
    }
    receiver
}

fn next_example(
    queue: &Mutex<VecDeque<(&'static str, &'static str)>>,
) -> Option<(&'static str, &'static str)> {
    queue.lock().ok()?.pop_front()
}

/// One test's events: started, its output, its final status.
fn run_example(name: &str, script: &str) -> Vec<Event> {
    let started = Event::test(name, Status::InProgress)
        .at(Timestamp::now())
        .tagged("example");
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(name)
        .output();
    let finished_at = Timestamp::now();
    let (status, stdout, stderr) = match output {
        Ok(output) => {
            let status = match output.status.code() {
                Some(0) => Status::Success,
                Some(SKIP_EXIT_CODE) => Status::Skip,
                _ => Status::Fail,
            };
            (status, output.stdout, output.stderr)
        }
        Err(error) => (
            Status::Fail,
            Vec::new(),
            format!("cannot run bash: {error}").into_bytes(),
        ),
    };
    let mut events = vec![started];
    for (file_name, content) in [("stdout", stdout), ("stderr", stderr)] {
        if content.is_empty() {
            continue;
        }
        let template = Event::file(Some(name.to_owned()), file_name, Bytes::new(), false)
            .at(finished_at)
            .with_mime_type("text/plain;charset=utf8");
        events.extend(Event::file_chunks(
            &template,
            file_name,
            Bytes::from(content),
        ));
    }
    events.push(Event::test(name, status).at(finished_at).tagged("example"));
    events
}
