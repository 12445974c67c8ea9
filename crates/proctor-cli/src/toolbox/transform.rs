//! Commands that pass a stream through, changed: `filter`, `tags`, `mux`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use proctor_events::{multiplex, Filter, FilterSpec, TagEditor};
use proctor_subunit::EventWriter;
use regex::Regex;

use super::stdout;
use crate::cli::FilterArgs;
use crate::error::CliError;
use crate::exit;
use crate::input::{feed, open};

/// `filter`: the runs the options accept, as subunit.
pub fn filter(args: FilterArgs) -> Result<u8, CliError> {
    let spec = FilterSpec {
        statuses: args.statuses.into_iter().collect(),
        exclude_statuses: args.exclude_statuses.into_iter().collect(),
        ids: compile_all(&args.with)?,
        exclude_ids: compile_all(&args.without)?,
        tags: args.tags.into_iter().collect(),
        exclude_tags: args.exclude_tags.into_iter().collect(),
        drop_global: args.no_passthrough,
    };
    let mut sink = Filter::new(spec, EventWriter::new(stdout()));
    feed(&args.inputs.files, &mut sink)?;
    Ok(exit::OK)
}

fn compile_all(patterns: &[String]) -> Result<Vec<Regex>, CliError> {
    patterns
        .iter()
        .map(|pattern| {
            Regex::new(pattern).map_err(|source| CliError::Parse {
                what: format!("the regular expression {pattern:?}"),
                source: Box::new(source),
            })
        })
        .collect()
}

/// `tags`: every event with tags added and removed.
pub fn tags(changes: &[String], input: Option<PathBuf>) -> Result<u8, CliError> {
    let (mut add, mut remove) = (BTreeSet::new(), BTreeSet::new());
    for change in changes {
        let (set, name) = match change.split_at_checked(1) {
            Some(("-", name)) => (&mut remove, name),
            Some(("+", name)) => (&mut add, name),
            _ => (&mut add, change.as_str()),
        };
        if name.is_empty() {
            return Err(CliError::Usage(format!("{change:?} names no tag")));
        }
        set.insert(name.to_owned());
    }
    let mut sink = TagEditor::new(EventWriter::new(stdout()), add, remove);
    feed(input.as_slice(), &mut sink)?;
    Ok(exit::OK)
}

/// `mux`: the files merged live, each labelled by its position.
pub fn mux(files: Vec<PathBuf>) -> Result<u8, CliError> {
    let inputs = files
        .iter()
        .enumerate()
        .map(|(index, path)| Ok((index.to_string(), open(path)?)))
        .collect::<Result<Vec<_>, CliError>>()?;
    let mut sink = EventWriter::new(stdout());
    multiplex(inputs, &mut sink)?;
    Ok(exit::OK)
}
