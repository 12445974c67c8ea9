//! `proctor config list`: every `proctor run` setting, its value and where the value came from.

use std::path::Path;

use proctor::config::RunSettings;
use serde::Serialize;

use crate::client::print_listing;
use crate::error::CliError;

/// One row of the listing, as `--json` gives it.
#[derive(Debug, Serialize)]
struct Listed {
    key: &'static str,
    /// `None` (JSON null, `none` in the table) when an optional setting is not set.
    value: Option<String>,
    source: String,
    layer: &'static str,
}

/// `proctor config list`: the settings of the project in `project`, as `proctor run` there would read them
/// without flags.
pub fn list(project: &Path, json: bool) -> Result<u8, CliError> {
    let settings = RunSettings::load(project)?;
    let rows: Vec<Listed> = settings
        .entries()
        .into_iter()
        .map(|entry| Listed {
            key: entry.key,
            value: entry.value,
            source: entry.source.to_string(),
            layer: entry.source.layer(),
        })
        .collect();
    let shown = |row: &Listed| row.value.clone().unwrap_or_else(|| "none".to_owned());
    let key_width = rows.iter().map(|row| row.key.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|row| shown(row).chars().count())
        .max()
        .unwrap_or(0);
    let line = |key: &str, value: &str, source: &str| {
        format!("{key:<key_width$}  {value:<value_width$}  {source}")
    };
    let header = line("KEY", "VALUE", "SOURCE");
    print_listing(&rows, json, &header, |row| {
        line(row.key, &shown(row), &row.source)
    })
}
