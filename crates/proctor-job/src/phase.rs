//! The phases of a job on an agent, in the order they run.

use std::fmt;

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

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
