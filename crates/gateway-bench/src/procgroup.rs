//! Child processes that never outlive the bench. Every process `gateway-bench` starts itself
//! (the reference gateway, whose uvicorn master forks worker processes, and the niced
//! attacker) runs as the leader of its own process group, held by a [`ProcessGroup`]. The
//! whole group is stopped (SIGTERM, then SIGKILL after a grace period) by
//! [`ProcessGroup::stop`] on the normal path, and by `Drop` on every other one: an error
//! returned with `?`, a panic, or the bench's own SIGINT/SIGTERM/SIGHUP (`main` then drops
//! the whole run before it exits). Killing only the leader is not enough: uvicorn's workers would be
//! orphaned and keep running. What is said on the way goes through [`note`], which cannot
//! panic on a closed stderr and so cannot cut the stopping short.

use std::{
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use platform::shutdown::note;
use tokio::process::{Child, ChildStdout, Command};

/// How often the group's members are looked at while waiting for them to exit.
const POLL: Duration = Duration::from_millis(50);
/// How long processes get to die after SIGKILL before we give up waiting.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// A child process leading its own process group; the whole group dies with this value.
pub struct ProcessGroup {
    name: &'static str,
    pgid: Pid,
    child: Child,
    grace: Duration,
    stopped: bool,
}

impl ProcessGroup {
    /// Spawns `command` as the leader of a new process group (`setpgid(0, 0)` in the child);
    /// `grace` is how long the group gets between SIGTERM and SIGKILL when stopped.
    pub fn spawn(
        name: &'static str,
        command: &mut Command,
        grace: Duration,
    ) -> anyhow::Result<ProcessGroup> {
        let child = command
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited before its pid was read"))?;
        Ok(ProcessGroup {
            name,
            pgid: Pid::from_raw(pid as i32),
            child,
            grace,
            stopped: false,
        })
    }

    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// The leader's exit status, if it has exited (the rest of the group may still run).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The leader's stdout, when it was piped.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// SIGTERM to every process of the group, SIGKILL to those still alive after the grace
    /// period; returns once no process of the group is left (or 5 s after SIGKILL), with the
    /// leader's exit status.
    pub async fn stop(mut self) -> Option<ExitStatus> {
        self.stopped = true;
        let _ = killpg(self.pgid, Signal::SIGTERM);
        if !self.wait_gone(self.grace).await {
            note(format_args!(
                "{} (process group {}) still running {:?} after SIGTERM: SIGKILL",
                self.name, self.pgid, self.grace
            ));
            let _ = killpg(self.pgid, Signal::SIGKILL);
            if !self.wait_gone(AFTER_KILL).await {
                note(format_args!(
                    "{} (process group {}): processes {:?} survived SIGKILL",
                    self.name,
                    self.pgid,
                    live_members(self.pgid.as_raw())
                ));
            }
        }
        self.child.try_wait().ok().flatten()
    }

    async fn wait_gone(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            // Reap the leader as soon as it exits (a zombie is not counted as alive).
            let _ = self.child.try_wait();
            if live_members(self.pgid.as_raw()).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The same as [`stop`](Self::stop), blocking: for `Drop`, where nothing can be awaited.
    fn stop_blocking(&mut self) {
        self.stopped = true;
        let gone = |group: &mut Self, within: Duration| {
            let deadline = Instant::now() + within;
            loop {
                let _ = group.child.try_wait();
                if live_members(group.pgid.as_raw()).is_empty() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(POLL);
            }
        };
        if killpg(self.pgid, Signal::SIGTERM).is_err() {
            // ESRCH: no process of the group is left.
            let _ = self.child.try_wait();
            return;
        }
        if !gone(self, self.grace) {
            let _ = killpg(self.pgid, Signal::SIGKILL);
            gone(self, AFTER_KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.stopped {
            note(format_args!(
                "stopping {} (process group {})",
                self.name, self.pgid
            ));
            self.stop_blocking();
        }
    }
}

/// Pids of the processes of group `pgid` that are alive (zombies, already dead and only
/// waiting to be reaped, are left out), read from `/proc`.
pub fn live_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell that starts two background sleeps (grandchildren) and waits: the shape of
    /// uvicorn's master and workers.
    fn family(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    async fn wait_for_members(pgid: i32, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while live_members(pgid).len() < at_least {
            assert!(
                Instant::now() < deadline,
                "the group never had {at_least} members"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    #[tokio::test]
    async fn drop_kills_the_whole_group() {
        let group = ProcessGroup::spawn(
            "test family",
            &mut family("sleep 60 & sleep 60 & wait"),
            Duration::from_secs(5),
        )
        .unwrap();
        let pgid = group.pgid();
        wait_for_members(pgid, 3).await;
        drop(group);
        assert_eq!(live_members(pgid), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn stop_kills_grandchildren_left_behind_by_the_leader() {
        // The children are started with SIGTERM ignored (inherited from birth, so no race
        // with the signal), then the leader takes SIGTERM back: it exits at once on SIGTERM,
        // leaving its children behind, and only the SIGKILL after the grace ends them.
        let group = ProcessGroup::spawn(
            "test orphans",
            &mut family("trap '' TERM; sleep 60 & sleep 60 & trap - TERM; wait"),
            Duration::from_millis(300),
        )
        .unwrap();
        let pgid = group.pgid();
        wait_for_members(pgid, 3).await;
        let started = Instant::now();
        group.stop().await;
        assert_eq!(live_members(pgid), Vec::<i32>::new());
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
