//! Commands that convert between subunit and other formats.

use std::path::{Path, PathBuf};

use proctor_formats::json::JsonLines;
use proctor_formats::text::TextSink;

use super::stdout;
use crate::error::CliError;
use crate::exit;
use crate::input::feed;

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

/// `junit`: a JUnit XML report.
pub fn junit(
    _files: &[PathBuf],
    _suite_name: &str,
    _output: Option<&Path>,
) -> Result<u8, CliError> {
    Err(CliError::Usage("junit is being wired up".to_owned()))
}

/// `to-tap`: TAP version 13.
pub fn to_tap(_files: &[PathBuf]) -> Result<u8, CliError> {
    Err(CliError::Usage("to-tap is being wired up".to_owned()))
}

/// `tap2subunit`: TAP in, subunit out.
pub fn tap2subunit(_files: &[PathBuf]) -> Result<u8, CliError> {
    Err(CliError::Usage("tap2subunit is being wired up".to_owned()))
}
