//! `proctor subunit …`: the subunit toolbox.

mod convert;
mod emit;
mod report;
mod transform;

use crate::cli::SubunitCommand;
use crate::error::CliError;

/// Runs one toolbox command, returning its exit status.
pub fn run(command: SubunitCommand) -> Result<u8, CliError> {
    match command {
        SubunitCommand::Stats {
            json,
            passthrough,
            inputs,
        } => report::stats(&inputs.files, json, !passthrough.no_passthrough),
        SubunitCommand::Ls {
            times,
            exists,
            passthrough,
            inputs,
        } => report::ls(&inputs.files, times, exists, !passthrough.no_passthrough),
        SubunitCommand::Filter(args) => transform::filter(args),
        SubunitCommand::Tags { changes, input } => transform::tags(&changes, input),
        SubunitCommand::Mux { files } => transform::mux(files),
        SubunitCommand::Json { inputs } => convert::json(&inputs.files),
        SubunitCommand::Cat { inputs } => convert::cat(&inputs.files),
        SubunitCommand::Junit {
            suite_name,
            output,
            inputs,
        } => convert::junit(&inputs.files, &suite_name, output.as_deref()),
        SubunitCommand::ToTap { inputs } => convert::to_tap(&inputs.files),
        SubunitCommand::Tap2subunit { files } => convert::tap2subunit(&files),
        SubunitCommand::Emit(args) => emit::emit(args),
    }
}

/// Standard output, buffered: sinks flush it when their input pauses.
fn stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}
