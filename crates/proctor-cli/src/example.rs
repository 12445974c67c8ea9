//! `proctor example`: runs the example tests built into the binary with the
//! real runner (as `proctor run --executables` would), records their subunit
//! stream and shows its summary.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use proctor_events::{Sink, Summary, Tee};
use proctor_runner::{RunConfig, Runner};
use proctor_subunit::EventWriter;
use proctor_supervisor::{Supervisor, SupervisorConfig};

use crate::cli::ExampleArgs;
use crate::display::{results_line, Display};
use crate::error::CliError;
use crate::exit;

/// The example tests: file name and bash script. Exit 0 passes, 77 skips,
/// anything else fails.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "arithmetic.sh",
        include_str!("../../../examples/tests/arithmetic.sh"),
    ),
    (
        "text-tools.sh",
        include_str!("../../../examples/tests/text-tools.sh"),
    ),
    (
        "unicode-output.sh",
        include_str!("../../../examples/tests/unicode-output.sh"),
    ),
    ("slow.sh", include_str!("../../../examples/tests/slow.sh")),
    (
        "needs-missing-tool.sh",
        include_str!("../../../examples/tests/needs-missing-tool.sh"),
    ),
];

/// Runs the examples on `concurrency` workers and summarises the stream.
pub fn run(args: ExampleArgs) -> Result<u8, CliError> {
    let path = args.output.unwrap_or_else(default_output);
    let file = File::create(&path).map_err(|source| CliError::Input {
        path: path.clone(),
        source,
    })?;
    let scripts = tempfile::tempdir()?;
    write_examples(scripts.path())?;
    let project = proctor_sources::discover(scripts.path(), Some(Path::new(".")))?;
    let tests = project.list()?;
    let supervisor = Supervisor::new(SupervisorConfig::default())?;
    let config = RunConfig {
        concurrency: args.concurrency.max(1),
        ..RunConfig::default()
    };
    let runner = Runner::new(&project, &supervisor, config);
    let mut writer = EventWriter::new(BufWriter::new(file));
    let mut summary = Summary::new();
    let mut progress = Display::plain();
    {
        let mut tee = Tee::new()
            .with(&mut writer)
            .with(&mut summary)
            .with(&mut progress);
        let ran = runner.run(tests, &HashMap::new(), &mut tee, &mut |_| {});
        let finished = tee.finish();
        ran?;
        finished?;
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "\n{}",
        results_line(&summary.tests, summary.wall_time())
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

/// Writes each example as an executable bash script in `dir`.
fn write_examples(dir: &Path) -> Result<(), CliError> {
    for (name, script) in EXAMPLES {
        let path = dir.join(name);
        let written = std::fs::write(&path, format!("#!/usr/bin/env bash\n{script}"))
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)));
        written.map_err(|source| CliError::Input { path, source })?;
    }
    Ok(())
}
