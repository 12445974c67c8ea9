//! Commands that convert between subunit and other formats.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use proctor_events::Sink;
use proctor_formats::json::JsonLines;
use proctor_formats::junit::JunitSink;
use proctor_formats::tap::{TapError, TapParser, TapSink};
use proctor_formats::text::TextSink;
use proctor_subunit::EventWriter;

use super::stdout;
use crate::error::CliError;
use crate::exit;
use crate::input::{feed, open};

/// `json`: one JSON object per event.
pub fn json(files: &[PathBuf]) -> Result<u8, CliError> {
    feed(files, &mut JsonLines::new(stdout()))?;
    Ok(exit::OK)
}

/// `cat`: events for people to read.
pub fn cat(files: &[PathBuf]) -> Result<u8, CliError> {
    feed(files, &mut TextSink::new(stdout()))?;
    Ok(exit::OK)
}

/// `junit`: a JUnit XML report, to standard output or `output`.
pub fn junit(files: &[PathBuf], suite_name: &str, output: Option<&Path>) -> Result<u8, CliError> {
    let mut sink = JunitSink::new().with_suite_name(suite_name);
    feed(files, &mut sink)?;
    let xml = sink.to_xml_string().map_err(|source| CliError::Parse {
        what: "the test records into JUnit XML".to_owned(),
        source: Box::new(source),
    })?;
    match output {
        Some(path) => fs::write(path, xml).map_err(|source| CliError::Input {
            path: path.to_owned(),
            source,
        })?,
        None => {
            let mut out = stdout();
            out.write_all(xml.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(exit::OK)
}

/// `to-tap`: TAP version 13, a line as each test finishes.
pub fn to_tap(files: &[PathBuf]) -> Result<u8, CliError> {
    feed(files, &mut TapSink::new(stdout()))?;
    Ok(exit::OK)
}

/// `tap2subunit`: TAP in, subunit out.
pub fn tap2subunit(files: &[PathBuf]) -> Result<u8, CliError> {
    let mut sink = EventWriter::new(stdout());
    let mut parser = TapParser::new();
    if files.is_empty() {
        read_tap(
            &mut parser,
            io::stdin().lock(),
            Path::new("<stdin>"),
            &mut sink,
        )?;
    }
    for path in files {
        let file = BufReader::new(open(path)?);
        read_tap(&mut parser, file, path, &mut sink)?;
    }
    sink.finish()?;
    Ok(exit::OK)
}

fn read_tap(
    parser: &mut TapParser,
    input: impl BufRead,
    path: &Path,
    sink: &mut dyn Sink,
) -> Result<(), CliError> {
    let parse_error = |source: TapError| CliError::Parse {
        what: format!("TAP from {}", path.display()),
        source: Box::new(source),
    };
    parser.read(input, sink).map_err(parse_error)?;
    parser.finish(sink).map_err(parse_error)
}
