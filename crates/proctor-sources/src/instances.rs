//! testrepository's instance hooks: commands that provision test environments, run a test command inside one, and
//! dispose of them, with the variables `testr` substitutes into them.

use crate::invocation::Invocation;

/// The three hooks of a `.testr.conf`, as `testr` uses them: `instance_provision` is run with `$INSTANCE_COUNT` and
/// prints instance ids; `instance_execute` runs `$COMMAND` in instance `$INSTANCE_ID`, after the paths in `$FILES`
/// are copied there, and its standard output is that command's stream; `instance_dispose` gets `$INSTANCE_IDS`.
/// Each variable is replaced in the command's text before a shell runs it, as `testr` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceHooks {
    /// `instance_provision`.
    pub provision: String,
    /// `instance_execute`; without it a test command runs as it is (on this machine), as under `testr`.
    pub execute: Option<String>,
    /// `instance_dispose`; without it nothing is disposed of.
    pub dispose: Option<String>,
}

impl InstanceHooks {
    /// The command that provisions `count` instances.
    pub fn provision_command(&self, count: usize) -> String {
        self.provision
            .replace("$INSTANCE_COUNT", &count.to_string())
    }

    /// The command that disposes of `ids`, given sorted and space-separated as `testr` gives them.
    pub fn dispose_command(&self, ids: &[String]) -> Option<String> {
        let mut ids = ids.to_vec();
        ids.sort();
        Some(
            self.dispose
                .as_ref()?
                .replace("$INSTANCE_IDS", &ids.join(" ")),
        )
    }

    /// `invocation` (a shell command) run in instance `id` through `instance_execute`: `$COMMAND` is its command
    /// line and `$FILES` its file of test ids (empty when it has none). The result keeps the invocation's
    /// protocol, tests, limits, environment and id file.
    pub fn execute_in(&self, invocation: Invocation, id: &str) -> Invocation {
        let Some(execute) = &self.execute else {
            return invocation;
        };
        let command = invocation.shell_command().unwrap_or_default().to_owned();
        let files = invocation
            .idfile()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        invocation.with_shell_command(substitute(execute, id, &command, &files))
    }
}

/// `testr`'s substitution in `instance_execute`: one pass, so text that a value brings in is not substituted again.
fn substitute(template: &str, id: &str, command: &str, files: &str) -> String {
    let mut out = String::with_capacity(template.len() + command.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let found = [("INSTANCE_ID", id), ("COMMAND", command), ("FILES", files)]
            .into_iter()
            .find(|(name, _)| after.starts_with(name));
        match found {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_substituted_once_as_testr_does() {
        let hooks = InstanceHooks {
            provision: "make $INSTANCE_COUNT".into(),
            execute: Some("ssh $INSTANCE_ID 'cd /w && $COMMAND' # $FILES $OTHER".into()),
            dispose: Some("drop $INSTANCE_IDS".into()),
        };
        assert_eq!(hooks.provision_command(3), "make 3");
        assert_eq!(
            hooks.dispose_command(&["b".into(), "a".into()]).as_deref(),
            Some("drop a b")
        );
        assert_eq!(
            substitute(
                hooks.execute.as_deref().unwrap(),
                "vm1",
                "run $FILES",
                "/tmp/ids"
            ),
            "ssh vm1 'cd /w && run $FILES' # /tmp/ids $OTHER"
        );
    }
}
