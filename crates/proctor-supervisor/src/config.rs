//! How a [`Supervisor`](crate::Supervisor) is set up.

use std::fmt;
use std::time::Duration;

/// Which way of enforcing memory limits to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemoryPreference {
    /// A cgroup where one is usable (v2 first, then the v1 `memory` controller), else watching
    /// resident memory through `/proc`.
    #[default]
    Auto,
    /// A cgroup, or [`SupervisorError::CgroupUnavailable`](crate::SupervisorError::CgroupUnavailable).
    Cgroup,
    /// Always watch resident memory through `/proc`, even where a cgroup would work.
    RssWatch,
}

/// The way memory limits are enforced, as chosen when the supervisor was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryStrategy {
    /// Each command gets its own cgroup in the unified hierarchy; the kernel enforces
    /// `memory.max`, and `memory.peak` gives the peak.
    CgroupV2,
    /// Each command gets its own cgroup under the v1 `memory` controller; the kernel enforces
    /// `memory.limit_in_bytes`, and `memory.max_usage_in_bytes` gives the peak.
    CgroupV1,
    /// The supervisor sums resident memory over the tree from `/proc` every
    /// [`SupervisorConfig::sample_interval`] and kills the tree when it is over.
    RssWatch,
}

impl fmt::Display for MemoryStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryStrategy::CgroupV2 => "cgroup v2",
            MemoryStrategy::CgroupV1 => "cgroup v1 memory controller",
            MemoryStrategy::RssWatch => "resident memory watch",
        })
    }
}

/// Settings for a [`Supervisor`](crate::Supervisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// How to enforce memory limits.
    pub memory: MemoryPreference,
    /// Default time between SIGTERM and SIGKILL when stopping a tree (a command can override
    /// it). Default: 10 s.
    pub grace: Duration,
    /// How often memory is sampled under [`MemoryStrategy::RssWatch`], and how often a cgroup's
    /// OOM-kill counter is checked for commands with a memory limit. Default: 100 ms.
    pub sample_interval: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            memory: MemoryPreference::Auto,
            grace: Duration::from_secs(10),
            sample_interval: Duration::from_millis(100),
        }
    }
}
