//! The thread that supervises one command: reads its output as it arrives, enforces its limits,
//! carries out stop requests, and cleans up its tree when it ends.

use std::io;
use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::Signal;

use crate::error::WaitError;
use crate::outcome::{Chunk, Exit, Limit, Outcome, Stream};
use crate::signals::Signals;
use crate::spec::Limits;
use crate::tree::{Roots, Tree};

/// How often a stopping tree is checked for being gone.
const STOPPING_CHECK: Duration = Duration::from_millis(5);
/// How long output is still read after the tree is gone, in case something outside the tree
/// (which the supervisor cannot find) holds the pipes open.
const DRAIN_AFTER_TREE_GONE: Duration = Duration::from_secs(1);
/// How long a tree that could not be supervised any more (poll failed) is given to die after
/// SIGKILL before the monitor gives up on it.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Bytes read from a pipe at once.
const READ_SIZE: usize = 64 * 1024;

/// Why the supervisor stopped the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Limit(Limit),
    Requested,
}

/// How memory is watched for this command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MemoryWatch {
    /// Through the cgroup's OOM-kill counter, every interval (the kernel enforces the limit).
    CgroupOomKills(Duration),
    /// By summing resident memory over the tree every interval, against an optional limit.
    Rss(Duration),
}

/// Everything the monitor thread is given besides the output pipes.
pub(crate) struct MonitorSetup {
    pub(crate) program: String,
    pub(crate) child: Child,
    pub(crate) tree: Tree,
    pub(crate) roots: Arc<Roots>,
    pub(crate) signals: Arc<Signals>,
    pub(crate) output: Sender<Chunk>,
    pub(crate) limits: Limits,
    pub(crate) grace: Duration,
    pub(crate) memory_watch: MemoryWatch,
    pub(crate) started: Instant,
}

/// One of the command's output pipes; `None` once it reached end of file.
struct Pipe {
    stream: Stream,
    fd: Option<OwnedFd>,
}

pub(crate) struct Monitor {
    setup: MonitorSetup,
    pipes: [Pipe; 2],
    buffer: Vec<u8>,
    last_output: Instant,
    next_sample: Option<Instant>,
    peak_rss: Option<u64>,
    stop_reason: Option<StopReason>,
    root_exit: Option<(io::Result<Exit>, Instant)>,
    /// Set once the tree is being stopped: when SIGKILL follows the SIGTERM.
    kill_at: Option<Instant>,
    tree_gone_at: Option<Instant>,
}

impl Monitor {
    pub(crate) fn new(setup: MonitorSetup, stdout: OwnedFd, stderr: OwnedFd) -> Self {
        let started = setup.started;
        let next_sample = match setup.memory_watch {
            MemoryWatch::CgroupOomKills(every) | MemoryWatch::Rss(every) => Some(started + every),
        };
        Monitor {
            setup,
            pipes: [
                Pipe {
                    stream: Stream::Stdout,
                    fd: Some(stdout),
                },
                Pipe {
                    stream: Stream::Stderr,
                    fd: Some(stderr),
                },
            ],
            buffer: vec![0; READ_SIZE],
            last_output: started,
            next_sample,
            peak_rss: None,
            stop_reason: None,
            root_exit: None,
            kill_at: None,
            tree_gone_at: None,
        }
    }

    /// Supervises the command to its end and the end of its tree.
    pub(crate) fn run(mut self) -> Result<Outcome, WaitError> {
        match self.supervise() {
            Ok((status, ended)) => self.finish(status, ended),
            Err(source) => {
                self.kill_everything();
                Err(WaitError::Poll {
                    program: self.setup.program.clone(),
                    source,
                })
            }
        }
    }

    /// Runs until the tree is gone and the output delivered; returns how the root exited.
    fn supervise(&mut self) -> io::Result<(io::Result<Exit>, Instant)> {
        loop {
            let now = Instant::now();
            if self.finished(now) {
                if let Some(exit) = self.root_exit.take() {
                    return Ok(exit);
                }
            }
            self.wait_for_events(self.next_deadline(now))?;
            let now = Instant::now();
            self.take_root_exit(now);
            self.take_stop_request(now);
            self.enforce_limits(now);
            self.advance_stopping(now);
        }
    }

    /// Done when the root exited, the tree is gone and the output pipes are closed (or had
    /// their chance).
    fn finished(&self, now: Instant) -> bool {
        self.root_exit.is_some()
            && self.tree_gone_at.is_some_and(|gone| {
                self.pipes.iter().all(|pipe| pipe.fd.is_none())
                    || now >= gone + DRAIN_AFTER_TREE_GONE
            })
    }

    fn root_running(&self) -> bool {
        self.root_exit.is_none()
    }

    /// The next moment something must be checked even if no output or news arrives.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if let Some(gone) = self.tree_gone_at {
            return Some(gone + DRAIN_AFTER_TREE_GONE);
        }
        if let Some(kill_at) = self.kill_at {
            let next_check = now + STOPPING_CHECK;
            return Some(if kill_at > now {
                next_check.min(kill_at)
            } else {
                next_check
            });
        }
        if !self.root_running() {
            return None;
        }
        let limits = &self.setup.limits;
        [
            limits.time.map(|limit| self.setup.started + limit),
            limits.no_output.map(|limit| self.last_output + limit),
            self.next_sample,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Waits for output, news or the deadline, and reads whatever output is ready.
    fn wait_for_events(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let readable = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
        let mut ready = [false; 2];
        {
            let mut fds = vec![PollFd::new(self.setup.signals.wake_fd(), PollFlags::IN)];
            let mut polled = Vec::with_capacity(2);
            for (index, pipe) in self.pipes.iter().enumerate() {
                if let Some(fd) = &pipe.fd {
                    fds.push(PollFd::new(fd, PollFlags::IN));
                    polled.push(index);
                }
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(()),
                Err(errno) => return Err(errno.into()),
            }
            if fds[0].revents().intersects(readable) {
                self.setup.signals.clear();
            }
            for (fd, index) in fds[1..].iter().zip(polled) {
                ready[index] = fd.revents().intersects(readable);
            }
        }
        for (index, is_ready) in ready.into_iter().enumerate() {
            if is_ready {
                self.read_pipe(index);
            }
        }
        Ok(())
    }

    /// Reads once from a ready pipe and delivers the bytes at once; closes it at end of file.
    fn read_pipe(&mut self, index: usize) {
        let pipe = &mut self.pipes[index];
        let Some(fd) = &pipe.fd else { return };
        match rustix::io::read(fd, &mut self.buffer) {
            Ok(0) => pipe.fd = None,
            Ok(read) => {
                self.last_output = Instant::now();
                let chunk = Chunk {
                    stream: pipe.stream,
                    data: Bytes::copy_from_slice(&self.buffer[..read]),
                    at: SystemTime::now(),
                };
                // A caller that dropped the receiver does not want the output; the command is
                // still supervised to its end.
                let _ = self.setup.output.send(chunk);
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => pipe.fd = None,
        }
    }

    fn take_root_exit(&mut self, now: Instant) {
        let Some(exit) = self.setup.signals.take_root_exit() else {
            return;
        };
        self.root_exit = Some((exit.status, exit.at));
        self.setup.tree.root_exited();
        if self.stop_reason.is_none() && self.cgroup_oom_killed() {
            self.stop_reason = Some(StopReason::Limit(Limit::Memory));
        }
        if self.kill_at.is_some() {
            return;
        }
        if self.setup.tree.reap_and_check_gone() {
            self.tree_gone_at = Some(now);
        } else {
            // Leftovers of a command that ended: stopped like any tree.
            self.begin_stopping(now, self.grace_for_current_reason());
        }
    }

    fn take_stop_request(&mut self, now: Instant) {
        if self.setup.signals.stop_requested() && self.stop_reason.is_none() && self.root_running()
        {
            self.stop_reason = Some(StopReason::Requested);
            self.begin_stopping(now, self.setup.grace);
        }
    }

    fn enforce_limits(&mut self, now: Instant) {
        if self.stop_reason.is_some() || !self.root_running() {
            return;
        }
        let limits = self.setup.limits;
        if limits
            .time
            .is_some_and(|limit| now >= self.setup.started + limit)
        {
            self.stop_for(Limit::Time, now);
        } else if limits
            .no_output
            .is_some_and(|limit| now >= self.last_output + limit)
        {
            self.stop_for(Limit::NoOutput, now);
        } else if self.next_sample.is_some_and(|at| now >= at) && self.memory_over_limit(now) {
            self.stop_for(Limit::Memory, now);
        }
    }

    fn stop_for(&mut self, limit: Limit, now: Instant) {
        self.stop_reason = Some(StopReason::Limit(limit));
        self.begin_stopping(now, self.grace_for_current_reason());
    }

    /// A tree over its memory limit would only grow during a grace period: it is killed at once.
    fn grace_for_current_reason(&self) -> Duration {
        match self.stop_reason {
            Some(StopReason::Limit(Limit::Memory)) => Duration::ZERO,
            _ => self.setup.grace,
        }
    }

    /// Takes a memory sample and schedules the next; says whether the tree is over its limit.
    fn memory_over_limit(&mut self, now: Instant) -> bool {
        match self.setup.memory_watch {
            MemoryWatch::CgroupOomKills(every) => {
                self.next_sample = Some(now + every);
                self.cgroup_oom_killed()
            }
            MemoryWatch::Rss(every) => {
                self.next_sample = Some(now + every);
                let resident = self.setup.tree.resident_total();
                self.peak_rss = Some(self.peak_rss.unwrap_or(0).max(resident));
                self.setup
                    .limits
                    .memory
                    .is_some_and(|limit| resident > limit)
            }
        }
    }

    fn cgroup_oom_killed(&self) -> bool {
        self.setup
            .tree
            .cgroup()
            .is_some_and(|cgroup| cgroup.oom_kills() > 0)
    }

    /// SIGTERM to the tree now, SIGKILL after `grace` (at once when `grace` is zero).
    fn begin_stopping(&mut self, now: Instant, grace: Duration) {
        let signal = if grace.is_zero() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        self.setup.tree.signal_all(signal);
        self.kill_at = Some(now + grace);
    }

    /// While stopping: notices when the tree is gone, and past the grace period SIGKILLs
    /// whatever is left, again on every check, so processes forked meanwhile die too.
    fn advance_stopping(&mut self, now: Instant) {
        let Some(kill_at) = self.kill_at else { return };
        if self.tree_gone_at.is_some() {
            return;
        }
        if self.setup.tree.reap_and_check_gone() {
            self.tree_gone_at = Some(now);
        } else if now >= kill_at {
            self.setup.tree.signal_all(Signal::KILL);
        }
    }

    /// After supervision itself failed: SIGKILL the tree until it is gone, or for a while.
    fn kill_everything(&mut self) {
        let give_up = Instant::now() + KILL_WAIT;
        loop {
            self.setup.tree.signal_all(Signal::KILL);
            if let Some(exit) = self.setup.signals.take_root_exit() {
                self.root_exit = Some((exit.status, exit.at));
                self.setup.tree.root_exited();
            }
            if self.setup.tree.reap_and_check_gone() || Instant::now() >= give_up {
                break;
            }
            std::thread::sleep(STOPPING_CHECK);
        }
        let _ = self.setup.child.wait();
        self.setup.roots.remove(self.setup.child.id() as i32);
    }

    fn finish(mut self, status: io::Result<Exit>, ended: Instant) -> Result<Outcome, WaitError> {
        // Only now is the command's own process reaped: until here its pid held the process
        // group id that the supervisor signals.
        let _ = self.setup.child.wait();
        let pid = self.setup.child.id();
        self.setup.roots.remove(pid as i32);
        let peak_memory = match self.setup.tree.cgroup() {
            Some(cgroup) => cgroup.peak_memory(),
            None => self.peak_rss,
        };
        let exit = status.map_err(|source| WaitError::StatusLost {
            program: self.setup.program.clone(),
            pid,
            source,
        })?;
        Ok(Outcome {
            exit,
            limit: match self.stop_reason {
                Some(StopReason::Limit(limit)) => Some(limit),
                _ => None,
            },
            stopped: self.stop_reason == Some(StopReason::Requested),
            duration: ended.saturating_duration_since(self.setup.started),
            peak_memory,
            leftovers_killed: self.setup.tree.leftovers_signalled(),
        })
    }
}
