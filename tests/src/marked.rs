//! Which live processes a run started, whatever they are called: the run puts a unique marker
//! in its environment, which everything it starts inherits (servers, their workers, the
//! helpers they fork), and `/proc/<pid>/environ` then tells them apart from every other
//! process on the machine. Used by the tests that check a benchmark leaves nothing behind
//! ([`MarkedRun`]).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// One run of a program with a unique marker in its environment and a scratch directory;
/// kills whatever the run left behind when dropped, so a failing test does not leave
/// processes to the next one.
pub struct MarkedRun {
    child: Child,
    variable: &'static str,
    marker: String,
    pub out_dir: PathBuf,
}

impl MarkedRun {
    /// Starts the command `build` makes for a fresh scratch directory (under the temp dir,
    /// named after `name`), with `variable=<a unique marker>` in its environment, stdin
    /// closed, stdout discarded and stderr kept in the scratch directory.
    pub fn start(
        variable: &'static str,
        name: &str,
        build: impl FnOnce(&Path) -> Command,
    ) -> MarkedRun {
        Self::start_with_stderr(variable, name, None, build)
    }

    /// [`start`](Self::start), with the program's stderr going to `stderr` (a pipe whose
    /// reader a test closes, say) instead of the scratch directory's file.
    pub fn start_with_stderr(
        variable: &'static str,
        name: &str,
        stderr: Option<Stdio>,
        build: impl FnOnce(&Path) -> Command,
    ) -> MarkedRun {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let marker = format!("{name}-{}-{nanos}", std::process::id());
        let out_dir = std::env::temp_dir().join(format!("marked-run-{marker}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let stderr = stderr.unwrap_or_else(|| {
            std::fs::File::create(out_dir.join("stderr"))
                .unwrap()
                .into()
        });
        let mut command = build(&out_dir);
        let child = command
            .env(variable, &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
        MarkedRun {
            child,
            variable,
            marker,
            out_dir,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.out_dir.join("stderr")).unwrap_or_default()
    }

    /// Live processes of this run other than the program itself: (pid, command line).
    pub fn descendants(&self) -> Vec<(i32, String)> {
        let program = self.child.id() as i32;
        marked_processes(self.variable, &self.marker)
            .into_iter()
            .filter(|(pid, _)| *pid != program)
            .collect()
    }

    /// Waits until `ready` holds for the run's processes; panics, with `what` and the
    /// program's stderr, if the program exits first or after `within`.
    pub fn wait_until(
        &mut self,
        what: &str,
        within: Duration,
        ready: impl Fn(&[(i32, String)]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let descendants = self.descendants();
            if ready(&descendants) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the program exited ({status}) before {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what}; processes {descendants:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the program to exit, showing `watch` the run's processes meanwhile; panics
    /// after `within`.
    pub fn wait_exit(
        &mut self,
        within: Duration,
        mut watch: impl FnMut(&[(i32, String)]),
    ) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            watch(&self.descendants());
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What is left of the run after the program has exited.
    pub fn assert_nothing_left(&self) {
        let left = self.descendants();
        assert!(
            left.is_empty(),
            "processes started by the program outlived it: {left:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// Sends `signal` to the program, waits up to `within` for it to exit and checks that it
    /// handled the signal (stopped what it started, then exited with 128 + the signal's
    /// number) rather than being killed by it, leaving nothing behind.
    pub fn assert_stops_cleanly_on(&mut self, signal: Signal, within: Duration) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let status = self.wait_exit(within, |_| {});
        self.assert_nothing_left();
        let expected = 128 + signal as i32;
        assert_eq!(
            status.code(),
            Some(expected),
            "the program should exit with status {expected} after {signal} ({status}); stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for MarkedRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, _) in self.descendants() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // A local-stack stack dropped by a signal keeps its state and logs, and says where.
        let stderr = self.stderr();
        if let Some((_, rest)) = stderr.split_once("state and logs kept in ")
            && let Some(root) = rest.lines().next().map(str::trim)
            && Path::new(root).starts_with(std::env::temp_dir())
        {
            let _ = std::fs::remove_dir_all(root);
        }
        let _ = std::fs::remove_dir_all(&self.out_dir);
    }
}

/// Live (not zombie) processes whose environment holds `variable=marker`, with their command
/// lines.
pub fn marked_processes(variable: &str, marker: &str) -> Vec<(i32, String)> {
    let wanted = format!("{variable}={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            continue;
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
            });
        if matches!(state.as_deref(), None | Some("Z") | Some("X")) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        found.push((pid, cmdline));
    }
    found
}
