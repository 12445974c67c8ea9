//! Command templates with testrepository's placeholders.
//!
//! testrepository (and stestr after it) substitutes `$IDOPTION`, `$IDFILE`,
//! `$IDLIST` and `$LISTOPT` with one regular expression in a single pass, so
//! `$IDLISTX` is `$IDLIST` followed by `X`, `${IDLIST}` is left for the shell
//! (where it is an unset variable), and an unknown placeholder expands to
//! nothing. This module does exactly that, except that ids in `$IDLIST` and
//! the path in `$IDFILE` are shell-quoted (testrepository joins them bare,
//! which breaks ids with spaces, brackets or quotes; plain ids come out the
//! same either way).

use std::borrow::Cow;
use std::io::Write;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use tempfile::TempPath;

/// testrepository's `variable_regex`.
// A literal pattern: every test that expands a template compiles it, so it cannot fail in use.
#[allow(clippy::expect_used)]
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$(IDOPTION|IDFILE|IDLIST|LISTOPT)").expect("the placeholder pattern is valid")
});

/// How a suite's shell commands list tests and run chosen ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandTemplate {
    /// The command running tests (testrepository's `test_command`).
    pub run: String,
    /// A separate listing command; `None` lists with `run` and `$LISTOPT`.
    pub list: Option<String>,
    /// What `$IDOPTION` expands to when tests are chosen (`test_id_option`).
    pub id_option: String,
    /// What `$LISTOPT` expands to when listing (`test_list_option`).
    pub list_option: String,
    /// What `$IDLIST` is when no ids are known (`test_id_list_default`).
    pub id_list_default: Option<String>,
}

/// A run command with its placeholders filled in, and the id file it names.
pub(crate) struct ExpandedRun {
    pub command: String,
    pub idfile: Option<TempPath>,
}

/// Why a run command could not be expanded.
pub(crate) enum ExpandError {
    /// An id no quoting or id file can carry.
    UnusableId { id: String, reason: &'static str },
    /// The id file could not be written.
    IdFile(std::io::Error),
}

impl CommandTemplate {
    /// The command that lists tests, with its placeholders expanded; `None`
    /// when there is no separate list command and `run` has no `$LISTOPT`
    /// (testrepository refuses to list then, too).
    pub fn list_command(&self) -> Option<String> {
        let template = match &self.list {
            Some(list) => list,
            None if self.run.contains("$LISTOPT") => &self.run,
            None => return None,
        };
        let idlist = self.id_list_default.as_deref().unwrap_or("");
        Some(substitute(template, |name| match name {
            "LISTOPT" => Cow::Borrowed(self.list_option.as_str()),
            "IDLIST" => Cow::Borrowed(idlist),
            _ => Cow::Borrowed(""),
        }))
    }

    /// Whether running chosen tests can actually tell the command which ones.
    pub fn can_select(&self) -> bool {
        let idoption_selects = uses(&self.run, "IDOPTION")
            && (uses(&self.id_option, "IDFILE") || uses(&self.id_option, "IDLIST"));
        idoption_selects || uses(&self.run, "IDFILE") || uses(&self.run, "IDLIST")
    }

    /// The command running exactly `ids`, writing the id file only when the
    /// command refers to it.
    pub fn run_command(&self, ids: &[&str]) -> Result<ExpandedRun, ExpandError> {
        for id in ids {
            check_id(id)?;
        }
        let idoption_used = uses(&self.run, "IDOPTION");
        let needs_idfile =
            uses(&self.run, "IDFILE") || (idoption_used && uses(&self.id_option, "IDFILE"));
        let idfile = needs_idfile
            .then(|| write_idfile(ids))
            .transpose()
            .map_err(ExpandError::IdFile)?;
        let idfile_path = match &idfile {
            Some(path) => quote(&path.to_string_lossy())?.into_owned(),
            None => String::new(),
        };
        let idlist = quote_all(ids)?;
        let values = |name: &str| match name {
            "IDFILE" => Cow::Borrowed(idfile_path.as_str()),
            "IDLIST" => Cow::Borrowed(idlist.as_str()),
            _ => Cow::Borrowed(""),
        };
        let idoption = substitute(&self.id_option, values);
        let command = substitute(&self.run, |name| match name {
            "IDOPTION" => Cow::Borrowed(idoption.as_str()),
            other => values(other),
        });
        Ok(ExpandedRun { command, idfile })
    }

    /// The command running every test: no id option, no id file, and
    /// `$IDLIST` only from `test_id_list_default`.
    pub fn run_all_command(&self) -> String {
        match &self.id_list_default {
            // testrepository turns the default list into the ids to run.
            Some(default) => {
                let ids: Vec<&str> = default.split_whitespace().collect();
                self.default_ids_command(&ids)
            }
            None => substitute(&self.run, |_| Cow::Borrowed("")),
        }
    }

    fn default_ids_command(&self, ids: &[&str]) -> String {
        // The default list is the user's own shell text, used as written.
        let idlist = ids.join(" ");
        let idoption = substitute(&self.id_option, |name| match name {
            "IDLIST" => Cow::Borrowed(idlist.as_str()),
            _ => Cow::Borrowed(""),
        });
        substitute(&self.run, |name| match name {
            "IDOPTION" => Cow::Borrowed(idoption.as_str()),
            "IDLIST" => Cow::Borrowed(idlist.as_str()),
            _ => Cow::Borrowed(""),
        })
    }
}

fn uses(template: &str, name: &str) -> bool {
    PLACEHOLDER
        .captures_iter(template)
        .any(|captures| &captures[1] == name)
}

fn substitute<'a>(template: &str, value: impl Fn(&str) -> Cow<'a, str>) -> String {
    PLACEHOLDER
        .replace_all(template, |captures: &Captures<'_>| {
            value(&captures[1]).into_owned()
        })
        .into_owned()
}

fn check_id(id: &str) -> Result<(), ExpandError> {
    let reason = if id.contains('\n') || id.contains('\r') {
        "it contains a line break, and $IDFILE holds one id per line"
    } else if id.contains('\0') {
        "it contains a NUL byte"
    } else if id.trim() != id || id.is_empty() {
        "runners strip blank space around ids in $IDFILE"
    } else {
        return Ok(());
    };
    Err(ExpandError::UnusableId {
        id: id.to_owned(),
        reason,
    })
}

fn quote(word: &str) -> Result<Cow<'_, str>, ExpandError> {
    shlex::try_quote(word).map_err(|_| ExpandError::UnusableId {
        id: word.to_owned(),
        reason: "it contains a NUL byte",
    })
}

fn quote_all(ids: &[&str]) -> Result<String, ExpandError> {
    let quoted = ids
        .iter()
        .map(|id| quote(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quoted.join(" "))
}

/// Writes ids one per line, newline-terminated, as testrepository's
/// `write_list` does.
pub(crate) fn write_idfile(ids: &[&str]) -> std::io::Result<TempPath> {
    let mut file = tempfile::Builder::new()
        .prefix("proctor-ids-")
        .suffix(".list")
        .tempfile()?;
    let mut contents = String::with_capacity(ids.iter().map(|id| id.len() + 1).sum());
    for id in ids {
        contents.push_str(id);
        contents.push('\n');
    }
    file.write_all(contents.as_bytes())?;
    file.flush()?;
    Ok(file.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testr_like() -> CommandTemplate {
        CommandTemplate {
            run: "python -m subunit.run discover $LISTOPT $IDOPTION".into(),
            list: None,
            id_option: "--load-list $IDFILE".into(),
            list_option: "--list".into(),
            id_list_default: None,
        }
    }

    #[test]
    fn listing_expands_listopt_and_drops_the_rest() {
        assert_eq!(
            testr_like().list_command().as_deref(),
            Some("python -m subunit.run discover --list ")
        );
    }

    #[test]
    fn no_listopt_means_no_listing() {
        let template = CommandTemplate {
            run: "make check".into(),
            ..testr_like()
        };
        assert_eq!(template.list_command(), None);
    }

    #[test]
    fn running_ids_writes_the_idfile_and_expands_idoption() {
        let run = testr_like()
            .run_command(&["a.b", "c d"])
            .unwrap_or_else(|_| panic!("expands"));
        let idfile = run.idfile.expect("an id file is written");
        assert_eq!(
            std::fs::read_to_string(&idfile).expect("readable"),
            "a.b\nc d\n"
        );
        let path = idfile.to_string_lossy().into_owned();
        assert_eq!(
            run.command,
            format!(
                "python -m subunit.run discover  --load-list {}",
                shlex::try_quote(&path).expect("quotable")
            )
        );
    }

    #[test]
    fn idlist_quotes_what_the_shell_would_split_or_glob() {
        let template = CommandTemplate {
            run: "runner $IDLIST".into(),
            ..testr_like()
        };
        let ids = ["plain.id", "with space", "p[1]", "it's \"q\"", "$HOME"];
        let run = template
            .run_command(&ids)
            .unwrap_or_else(|_| panic!("expands"));
        assert!(run.idfile.is_none(), "no $IDFILE, no file");
        assert!(run
            .command
            .starts_with("runner plain.id 'with space' 'p[1]' "));
        let words = shlex::split(&run.command).expect("a valid shell line");
        assert_eq!(words[0], "runner");
        assert_eq!(words[1..], ids);
    }

    #[test]
    fn placeholders_are_matched_like_testrepository() {
        let template = CommandTemplate {
            run: "x $IDLISTX ${IDLIST} $UNKNOWN $IDOPTION".into(),
            id_option: "--ids $IDLIST".into(),
            ..testr_like()
        };
        let run = template
            .run_command(&["t"])
            .unwrap_or_else(|_| panic!("expands"));
        assert_eq!(run.command, "x tX ${IDLIST} $UNKNOWN --ids t");
    }

    #[test]
    fn selection_needs_an_id_placeholder() {
        assert!(testr_like().can_select());
        let no_option = CommandTemplate {
            id_option: String::new(),
            ..testr_like()
        };
        assert!(!no_option.can_select());
        let direct = CommandTemplate {
            run: "r $IDFILE".into(),
            id_option: String::new(),
            ..testr_like()
        };
        assert!(direct.can_select());
    }

    #[test]
    fn ids_that_cannot_travel_are_refused() {
        for bad in ["two\nlines", " padded", "nul\0"] {
            assert!(matches!(
                testr_like().run_command(&[bad]),
                Err(ExpandError::UnusableId { .. })
            ));
        }
    }

    #[test]
    fn running_all_uses_the_default_id_list() {
        let template = CommandTemplate {
            run: "r $IDOPTION $IDLIST".into(),
            id_option: "--only $IDLIST".into(),
            id_list_default: Some("a b".into()),
            ..testr_like()
        };
        assert_eq!(template.run_all_command(), "r --only a b a b");
        assert_eq!(
            testr_like().run_all_command(),
            "python -m subunit.run discover  "
        );
    }
}
