//! No process `bench cdc` starts outlives it when it is stopped mid-run by SIGTERM or SIGINT:
//! PostgreSQL, the broker and the registry it started are gone once it has exited (before,
//! a SIGTERM left PostgreSQL and the broker running). Real processes throughout: the built
//! `bench` binary, its stack from the workspace's debug binaries.
//!
//! Each run gets a unique marker in its environment, inherited by everything the bench starts
//! (`pg_ctl`'s postgres and its workers, the broker, the registry), which tells this run's
//! processes apart from every other ([`e2e::marked`]).

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");
const MARKER_VAR: &str = "BENCH_CDC_CLEAN_EXIT_MARKER";

/// One run of `bench cdc --quick`, with its marker and scratch directory; kills whatever it
/// left behind when dropped, so a failing test does not leave processes to the next one.
struct Run {
    child: Child,
    marker: String,
    out_dir: PathBuf,
}

impl Run {
    fn start(name: &str) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let marker = format!("{name}-{}-{nanos}", std::process::id());
        let out_dir = std::env::temp_dir().join(format!("bench-cdc-{marker}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let stderr = std::fs::File::create(out_dir.join("bench.stderr")).unwrap();
        let child = Command::new(BENCH)
            .args(["cdc", "--quick", "--no-profile", "--out"])
            .arg(&out_dir)
            .env("STACK_BIN_DIR", local_stack::test_bin_dir())
            .env(MARKER_VAR, &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting bench");
        Run {
            child,
            marker,
            out_dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.out_dir.join("bench.stderr")).unwrap_or_default()
    }

    /// Live processes of this run other than the bench itself: (pid, command line).
    fn descendants(&self) -> Vec<(i32, String)> {
        let bench = self.child.id() as i32;
        e2e::marked::marked_processes(MARKER_VAR, &self.marker)
            .into_iter()
            .filter(|(pid, _)| *pid != bench)
            .collect()
    }

    /// Waits until the stack's PostgreSQL and broker both run.
    fn wait_stack_running(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let descendants = self.descendants();
            let running = |name: &str| descendants.iter().any(|(_, cmd)| cmd.contains(name));
            // The postmaster and the broker themselves, not initdb or a wrapper naming them.
            if running("bin/postgres -D") && running("tansu broker") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "bench exited ({status}) before its stack ran:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not start within 120 s; processes {descendants:?}; bench stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "bench still running {within:?} after the signal; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, _) in self.descendants() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // A stack stopped by a signal keeps its state and logs, and says where.
        let stderr = self.stderr();
        if let Some((_, rest)) = stderr.split_once("state and logs kept in ")
            && let Some(root) = rest.lines().next()
            && root
                .trim()
                .starts_with(std::env::temp_dir().to_str().unwrap_or("/tmp"))
        {
            let _ = std::fs::remove_dir_all(root.trim());
        }
        let _ = std::fs::remove_dir_all(&self.out_dir);
    }
}

fn stopped_by(signal: Signal, expected_code: i32) {
    let mut run = Run::start(&format!("{signal}"));
    run.wait_stack_running();
    kill(Pid::from_raw(run.child.id() as i32), signal).unwrap();
    let status = run.wait_exit(Duration::from_secs(60));
    let left = run.descendants();
    assert!(
        left.is_empty(),
        "processes started by bench outlived it after {signal}: {left:?}; bench stderr:\n{}",
        run.stderr()
    );
    // It handled the signal (stopped its stack, then exited), rather than being killed by it.
    assert_eq!(
        status.code(),
        Some(expected_code),
        "bench should exit with status {expected_code} after {signal} ({status}); stderr:\n{}",
        run.stderr()
    );
}

#[test]
fn the_stack_is_gone_after_sigterm_to_the_bench() {
    stopped_by(Signal::SIGTERM, 143);
}

#[test]
fn the_stack_is_gone_after_sigint_to_the_bench() {
    stopped_by(Signal::SIGINT, 130);
}
