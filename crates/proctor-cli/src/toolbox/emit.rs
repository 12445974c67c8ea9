//! `emit`: one event from the shell, like subunit-output.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use proctor_subunit::{Event, EventWriter, Status, Timestamp};

use super::stdout;
use crate::cli::EmitArgs;
use crate::error::CliError;
use crate::exit;
use crate::input::open;

/// Writes the event the options describe; an attachment goes out in as many
/// chunks as it needs, the status riding on the last one.
pub fn emit(args: EmitArgs) -> Result<u8, CliError> {
    let (test_id, status) = match args.start {
        Some(test_id) => (Some(test_id), Some(Status::InProgress)),
        None => (args.test, args.status),
    };
    if test_id.is_none() && status.is_some() {
        return Err(CliError::Usage(
            "a status needs a test: give --test ID (or --start ID)".to_owned(),
        ));
    }
    let template = Event {
        test_id,
        route_code: args.route,
        timestamp: (!args.no_timestamp).then(Timestamp::now),
        runnable: !args.not_runnable,
        tags: args.tags.into_iter().collect(),
        mime_type: args.mime_type,
        ..Event::default()
    };
    let mut events = match &args.attach {
        Some(path) => {
            let name = args.file_name.unwrap_or_else(|| attachment_name(path));
            Event::file_chunks(&template, &name, read_attachment(path)?)
        }
        None => vec![template],
    };
    if let Some(last) = events.last_mut() {
        last.status = status;
    }
    let mut writer = EventWriter::new(stdout());
    for event in &events {
        writer.write(event).map_err(CliError::Encode)?;
    }
    writer.flush()?;
    Ok(exit::OK)
}

fn attachment_name(path: &Path) -> String {
    if path == Path::new("-") {
        return "stdin".to_owned();
    }
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn read_attachment(path: &Path) -> Result<Bytes, CliError> {
    let mut content = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut content)
    } else {
        open(path)?.read_to_end(&mut content)
    };
    result.map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    Ok(Bytes::from(content))
}
