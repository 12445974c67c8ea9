//! Where a run's batches run: slots on this machine, or the instances a suite's testrepository hooks provision.
//! A local run is the case of one provisioner whose workers are slots.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proctor_sources::{InstanceHooks, Invocation, Project, Suite};

/// One worker: where a batch's process runs, named by its route code.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    /// The route code its events carry (the slot's number, or the instance's id).
    pub(crate) route: String,
    /// The instance it is, when a suite's hooks provisioned it.
    instance: Option<String>,
}

impl Worker {
    /// `invocation` of `suite`'s tests as this worker runs it: through the suite's `instance_execute` on an
    /// instance, as it is in a slot.
    pub(crate) fn place(&self, suite: &Suite, invocation: Invocation) -> Invocation {
        match (&self.instance, suite.instance_hooks()) {
            (Some(id), Some(hooks)) => hooks.execute_in(invocation, id),
            _ => invocation,
        }
    }
}

/// A run's workers, and what releasing them takes.
#[derive(Debug)]
pub(crate) struct Workers {
    pub(crate) workers: Vec<Worker>,
    /// The hooks that provisioned the instances, and where they run.
    provisioned_by: Option<(InstanceHooks, PathBuf)>,
}

impl Workers {
    /// `count` workers for `project`: the instances of its suite's hooks when it has them (provisioned with
    /// `instance_provision`, asked again for the rest until it has printed `count` ids, as `testr` does), else
    /// `count` slots on this machine. The error says which hook failed and what it printed.
    pub(crate) fn provision(project: &Project, count: usize) -> Result<Workers, String> {
        let count = count.max(1);
        let Some(suite) = project
            .suites()
            .iter()
            .find(|s| s.instance_hooks().is_some())
        else {
            let workers = (0..count)
                .map(|slot| Worker {
                    route: slot.to_string(),
                    instance: None,
                })
                .collect();
            return Ok(Workers {
                workers,
                provisioned_by: None,
            });
        };
        let Some(hooks) = suite.instance_hooks().cloned() else {
            return Err("no instance hooks".to_owned());
        };
        let directory = suite.directory().to_path_buf();
        let mut ids: Vec<String> = Vec::new();
        while ids.len() < count {
            let command = hooks.provision_command(count - ids.len());
            let printed = shell(&command, &directory, "instance_provision")?;
            let new: Vec<String> = printed
                .split_whitespace()
                .filter(|id| !ids.iter().any(|known| known == id))
                .map(str::to_owned)
                .collect();
            if new.is_empty() {
                let provisioned = Workers::of_instances(ids, hooks, directory);
                let disposed = provisioned.release().err();
                return Err(format!(
                    "instance_provision (`{command}`) printed no new instance id{}",
                    disposed.map(|e| format!("; {e}")).unwrap_or_default()
                ));
            }
            ids.extend(new);
        }
        Ok(Workers::of_instances(ids, hooks, directory))
    }

    fn of_instances(ids: Vec<String>, hooks: InstanceHooks, directory: PathBuf) -> Workers {
        let workers = ids
            .into_iter()
            .map(|id| Worker {
                route: id.clone(),
                instance: Some(id),
            })
            .collect();
        Workers {
            workers,
            provisioned_by: Some((hooks, directory)),
        }
    }

    /// Releases the workers: the instances are disposed of with `instance_dispose`. The error says what it printed.
    pub(crate) fn release(self) -> Result<(), String> {
        let Some((hooks, directory)) = self.provisioned_by else {
            return Ok(());
        };
        let ids: Vec<String> = self.workers.into_iter().map(|w| w.route).collect();
        match hooks.dispose_command(&ids) {
            Some(command) if !ids.is_empty() => {
                shell(&command, &directory, "instance_dispose").map(drop)
            }
            _ => Ok(()),
        }
    }
}

/// Runs a hook's command line with the shell in `directory`; its standard output, or why it failed.
fn shell(command: &str, directory: &Path, hook: &str) -> Result<String, String> {
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(directory)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{hook} (`{command}`) could not start: {error}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{hook} (`{command}`) failed ({}){}",
            output.status,
            match said.trim() {
                "" => String::new(),
                said => format!(": {said}"),
            }
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
