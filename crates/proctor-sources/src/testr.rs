//! testrepository projects: `.testr.conf`, read as `testr` reads it.

use std::path::Path;

use crate::ini::{IniFile, DEFAULT};
use crate::instances::InstanceHooks;
use crate::invocation::Protocol;
use crate::suite::{Concurrency, GroupRegex, Runner, Suite};
use crate::template::CommandTemplate;
use crate::SourceError;

/// The file testrepository reads.
pub(crate) const FILE: &str = ".testr.conf";

/// The suite a `.testr.conf` describes; its commands run in the file's
/// directory and report subunit v2.
pub(crate) fn load(path: &Path, directory: &Path) -> Result<Suite, SourceError> {
    let ini = IniFile::load(path)?;
    let run = ini
        .get(DEFAULT, "test_command")?
        .ok_or_else(|| SourceError::MissingKey {
            path: path.to_path_buf(),
            section: DEFAULT.to_owned(),
            key: "test_command".to_owned(),
        })?;
    let template = CommandTemplate {
        run,
        list: None,
        id_option: ini.get(DEFAULT, "test_id_option")?.unwrap_or_default(),
        list_option: ini.get(DEFAULT, "test_list_option")?.unwrap_or_default(),
        id_list_default: ini.get(DEFAULT, "test_id_list_default")?,
    };
    let mut suite = Suite::new(
        "testr".to_owned(),
        directory.to_path_buf(),
        Runner::Commands(template),
        Protocol::Subunit,
    );
    suite.group_regex = group_regex(&ini, ini.get(DEFAULT, "group_regex")?)?;
    if let Some(command) = ini.get(DEFAULT, "test_run_concurrency")? {
        suite.concurrency = Concurrency::Command(command);
    }
    // As under testr, the hooks are used only when instances can be provisioned.
    suite.instance_hooks = match ini.get(DEFAULT, "instance_provision")? {
        Some(provision) => Some(InstanceHooks {
            provision,
            execute: ini.get(DEFAULT, "instance_execute")?,
            dispose: ini.get(DEFAULT, "instance_dispose")?,
        }),
        None => None,
    };
    suite.filter_tags = ini
        .get(DEFAULT, "filter_tags")?
        .map(|tags| tags.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(suite)
}

/// A group regex from an INI file; empty means none, as Python tests it for
/// truth.
pub(crate) fn group_regex(
    ini: &IniFile,
    pattern: Option<String>,
) -> Result<Option<GroupRegex>, SourceError> {
    match pattern.filter(|pattern| !pattern.is_empty()) {
        Some(pattern) => GroupRegex::new(&pattern)
            .map(Some)
            .map_err(|error| ini.invalid("group_regex", error.to_string())),
        None => Ok(None),
    }
}
