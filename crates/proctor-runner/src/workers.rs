//! Where a run's batches run: the workers its provisioners make. Without a pool, a run has one provisioner: the
//! instances of its suite's testrepository hooks when it has them, else `-j N` slots on this machine. A pool
//! (`proctor run --pool FILE`) gives several, each making up to its `max_workers`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_pool::{Platform, Pool, Provisioner, ProvisionerKind};
use proctor_sources::{InstanceHooks, Invocation, Project};

/// One worker: where a batch's process runs, named by its route code.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    /// The route code its events carry: the slot's number, or the instance's id.
    pub(crate) route: String,
    /// The instance it is and the hooks that run commands in it, when hooks provisioned it.
    instance: Option<(String, Arc<InstanceHooks>)>,
}

impl Worker {
    /// `invocation` as this worker runs it: through its hooks' `instance_execute` on an instance, as it is in a
    /// slot.
    pub(crate) fn place(&self, invocation: Invocation) -> Invocation {
        match &self.instance {
            Some((id, hooks)) => hooks.execute_in(invocation, id),
            None => invocation,
        }
    }
}

/// A run's workers, and what releasing them takes.
#[derive(Debug, Default)]
pub(crate) struct Workers {
    pub(crate) workers: Vec<Worker>,
    /// The instances made, with the hooks that dispose of them and where those run.
    instances: Vec<(Arc<InstanceHooks>, PathBuf, Vec<String>)>,
    /// Provisioners given up on while others made workers, and why.
    pub(crate) given_up: Vec<String>,
    next_slot: usize,
}

impl Workers {
    /// The workers of a run of `project`: from `pool`'s provisioners when there is one, else from the project's
    /// instance hooks or `concurrency` slots. A provisioner that fails is given up and the others go on; the error
    /// (why no provisioner made a worker) comes only when none did.
    pub(crate) fn provision(
        project: &Project,
        pool: Option<&Pool>,
        concurrency: usize,
    ) -> Result<Workers, String> {
        let directory = project
            .suites()
            .first()
            .map(|suite| suite.directory().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let mut workers = Workers::default();
        match pool {
            Some(pool) => {
                for (index, provisioner) in pool.provisioners.iter().enumerate() {
                    if let Err(problem) = workers.add(provisioner, &directory) {
                        workers
                            .given_up
                            .push(format!("provisioner {index}: {problem}"));
                    }
                }
            }
            None => {
                let hooks = project.suites().iter().find_map(|suite| {
                    Some((
                        suite.instance_hooks()?.clone(),
                        suite.directory().to_path_buf(),
                    ))
                });
                let added = match hooks {
                    Some((hooks, directory)) => {
                        workers.add_instances(Arc::new(hooks), &directory, concurrency.max(1))
                    }
                    None => {
                        workers.add_slots(concurrency.max(1));
                        Ok(())
                    }
                };
                if let Err(problem) = added {
                    workers.given_up.push(problem);
                }
            }
        }
        if workers.workers.is_empty() {
            let why = std::mem::take(&mut workers.given_up).join("; ");
            return Err(match why.as_str() {
                "" => "the pool has no provisioner".to_owned(),
                _ => why,
            });
        }
        Ok(workers)
    }

    fn add(&mut self, provisioner: &Provisioner, directory: &Path) -> Result<(), String> {
        let count = provisioner.max_workers.get();
        match &provisioner.kind {
            ProvisionerKind::Local => {
                self.add_slots(count);
                Ok(())
            }
            ProvisionerKind::Hooks {
                provision,
                execute,
                dispose,
            } => {
                let hooks = InstanceHooks {
                    provision: provision.clone(),
                    execute: Some(execute.clone()),
                    dispose: dispose.clone(),
                };
                self.add_instances(Arc::new(hooks), directory, count)
            }
        }
    }

    fn add_slots(&mut self, count: usize) {
        for _ in 0..count {
            self.workers.push(Worker {
                route: self.next_slot.to_string(),
                instance: None,
            });
            self.next_slot += 1;
        }
    }

    /// Provisions `count` instances with `instance_provision`, asking again for the rest until it has printed
    /// `count` ids, as `testr` does. On failure, the instances it did make are disposed of.
    fn add_instances(
        &mut self,
        hooks: Arc<InstanceHooks>,
        directory: &Path,
        count: usize,
    ) -> Result<(), String> {
        let mut ids: Vec<String> = Vec::new();
        while ids.len() < count {
            let command = hooks.provision_command(count - ids.len());
            let made = shell(&command, directory, "instance_provision").and_then(|printed| {
                let new: Vec<String> = printed
                    .split_whitespace()
                    .filter(|id| !ids.iter().any(|known| known == id))
                    .map(str::to_owned)
                    .collect();
                if new.is_empty() {
                    Err(format!(
                        "instance_provision (`{command}`) printed no new instance id"
                    ))
                } else {
                    Ok(new)
                }
            });
            match made {
                Ok(new) => ids.extend(new),
                Err(problem) => {
                    let disposed = dispose(&hooks, directory, &ids).err();
                    return Err(match disposed {
                        Some(also) => format!("{problem}; {also}"),
                        None => problem,
                    });
                }
            }
        }
        for id in &ids {
            self.workers.push(Worker {
                route: id.clone(),
                instance: Some((id.clone(), Arc::clone(&hooks))),
            });
        }
        self.instances.push((hooks, directory.to_path_buf(), ids));
        Ok(())
    }

    /// Releases the workers: instances are disposed of with their `instance_dispose`. The error says what failed.
    pub(crate) fn release(self) -> Result<(), String> {
        let failures: Vec<String> = self
            .instances
            .iter()
            .filter_map(|(hooks, directory, ids)| dispose(hooks, directory, ids).err())
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

/// What provisioning one provisioner of a pool once gave ([`check_pool`]).
#[derive(Debug, Clone)]
pub struct ProvisionerCheck {
    /// Its place in the pool file, from 0.
    pub index: usize,
    /// The route codes of the workers it made, each with its platform.
    pub workers: Vec<(String, Platform)>,
    /// How long provisioning took.
    pub took: Duration,
    /// Why provisioning or releasing failed, with what the hook printed.
    pub problem: Option<String>,
}

/// Provisions each provisioner of `pool` once, with hooks run in `directory`, and releases what each made: the
/// workers it gave and their platforms (a local worker's is this machine's where the file says nothing), how
/// long it took, and what failed.
pub fn check_pool(pool: &Pool, directory: &Path) -> Vec<ProvisionerCheck> {
    let here = Platform::of_this_machine();
    pool.provisioners
        .iter()
        .enumerate()
        .map(|(index, provisioner)| {
            let started = Instant::now();
            let mut workers = Workers::default();
            let added = workers.add(provisioner, directory);
            let took = started.elapsed();
            let platform = match provisioner.kind {
                ProvisionerKind::Local => provisioner.platform.clone().or(here.clone()),
                ProvisionerKind::Hooks { .. } => provisioner.platform.clone(),
            };
            let made = workers
                .workers
                .iter()
                .map(|worker| (worker.route.clone(), platform.clone()))
                .collect();
            let released = workers.release();
            ProvisionerCheck {
                index,
                workers: made,
                took,
                problem: added.and(released).err(),
            }
        })
        .collect()
}

fn dispose(hooks: &InstanceHooks, directory: &Path, ids: &[String]) -> Result<(), String> {
    match hooks.dispose_command(ids) {
        Some(command) if !ids.is_empty() => {
            shell(&command, directory, "instance_dispose").map(drop)
        }
        _ => Ok(()),
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
