//! Reading subunit input: standard input, or files in order.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use proctor_events::Sink;
use proctor_subunit::EventReader;

use crate::error::CliError;

/// Feeds every event of the inputs to `sink`, then finishes it. Each file is
/// decoded on its own, so a truncated file cannot swallow the next one. The
/// sink is flushed whenever the input has nothing more buffered, so output
/// keeps pace with a live input.
pub fn feed(files: &[PathBuf], sink: &mut dyn Sink) -> Result<(), CliError> {
    if files.is_empty() {
        feed_reader(io::stdin().lock(), Path::new("<stdin>"), sink)?;
    }
    for path in files {
        let file = open(path)?;
        feed_reader(file, path, sink)?;
    }
    sink.finish()?;
    Ok(())
}

/// Opens an input file with an error that names it.
pub fn open(path: &Path) -> Result<File, CliError> {
    File::open(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })
}

/// Feeds every event of one input to `sink` (without finishing it); `path` names the input in errors.
pub fn feed_reader(input: impl Read, path: &Path, sink: &mut dyn Sink) -> Result<(), CliError> {
    let mut reader = EventReader::new(input);
    loop {
        let event = reader.next_ref().map_err(|source| CliError::Input {
            path: path.to_owned(),
            source,
        })?;
        let Some(event) = event else {
            return Ok(());
        };
        sink.event_ref(&event)?;
        if reader.buffered() == 0 {
            sink.flush()?;
        }
    }
}
