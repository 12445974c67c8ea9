//! The phases of a job on an agent, in the order they run.

use std::fmt;
use std::str::FromStr;

/// One phase of a job. A phase runs when the agent has a command for it and the job has data for it;
/// `setup` and `cleanup` need no job data, and `cleanup` always runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Prepares the agent's side before anything else.
    Setup,
    /// Installs an image on the machine.
    Provision,
    /// Updates the machine's firmware.
    FirmwareUpdate,
    /// Runs the tests.
    Test,
    /// Hands the machine to a multi-device job.
    Allocate,
    /// Holds the machine for someone to log in.
    Reserve,
    /// Tidies up; runs even after a failure.
    Cleanup,
}

impl Phase {
    /// Every phase, in the order they run.
    pub const ALL: [Phase; 7] = [
        Phase::Setup,
        Phase::Provision,
        Phase::FirmwareUpdate,
        Phase::Test,
        Phase::Allocate,
        Phase::Reserve,
        Phase::Cleanup,
    ];

    /// The phase's name as Testflinger writes it (`firmware_update`), also used in `<phase>_command`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Provision => "provision",
            Phase::FirmwareUpdate => "firmware_update",
            Phase::Test => "test",
            Phase::Allocate => "allocate",
            Phase::Reserve => "reserve",
            Phase::Cleanup => "cleanup",
        }
    }
}

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(name: &str) -> Result<Phase, UnknownPhase> {
        Phase::ALL
            .into_iter()
            .find(|phase| phase.as_str() == name)
            .ok_or_else(|| UnknownPhase {
                name: name.to_owned(),
            })
    }
}

/// A name that is not one of the phases; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a phase; the phases are {}", Phase::names())]
pub struct UnknownPhase {
    /// The name given.
    pub name: String,
}

impl Phase {
    /// The phases' names in the order they run, for messages: `setup, provision, …, cleanup`.
    pub fn names() -> String {
        Phase::ALL.map(Phase::as_str).join(", ")
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_parses_from_its_name_and_other_names_are_refused_with_the_list() {
        for phase in Phase::ALL {
            assert_eq!(phase.as_str().parse::<Phase>(), Ok(phase));
        }
        let error = "firmware-update".parse::<Phase>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"firmware-update\" is not a phase; the phases are setup, provision, firmware_update, test, allocate, \
             reserve, cleanup"
        );
    }
}
