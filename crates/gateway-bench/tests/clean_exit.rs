//! No process `gateway-bench` starts outlives it: the reference gateway (uvicorn with worker
//! processes) is gone once the bench has exited, whether it finished or was stopped by
//! SIGTERM or SIGINT mid-run. Real processes throughout: the built `gateway-bench` binary in its
//! hidden `--reference-only-secs` mode starts the real reference gateway from the project's
//! venv (no stack: the reference only connects to its broker at its first event).
//!
//! Each run gets a unique marker in its environment, inherited by everything the bench starts
//! (uvicorn's master, its workers, multiprocessing's helpers); `/proc/<pid>/environ` then
//! tells which live processes came from this run, whatever their command lines.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

const BENCH: &str = env!("CARGO_BIN_EXE_gateway-bench");
const MARKER_VAR: &str = "GATEWAY_BENCH_CLEAN_EXIT_MARKER";
/// Two workers: a master and two worker processes, so a kill of the master alone shows.
const WORKERS: usize = 2;

/// One run of the bench, with its marker and scratch directory; kills whatever it left
/// behind when dropped, so a failing test does not leave processes to the next one.
struct Run {
    child: Child,
    marker: String,
    out_dir: PathBuf,
}

impl Run {
    fn start(name: &str, reference_secs: u64) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let marker = format!("{name}-{}-{nanos}", std::process::id());
        let out_dir = std::env::temp_dir().join(format!("gwb-{marker}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let stderr = std::fs::File::create(out_dir.join("bench.stderr")).unwrap();
        let child = Command::new(BENCH)
            .args(["--reference-only-secs", &reference_secs.to_string()])
            .args(["--reference-workers", &WORKERS.to_string()])
            .arg("--out-dir")
            .arg(&out_dir)
            .env(MARKER_VAR, &marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting gateway-bench");
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
        marked(&self.marker)
            .into_iter()
            .filter(|(pid, _)| *pid != bench)
            .collect()
    }

    /// Waits until the reference gateway serves and all its processes run.
    fn wait_reference_running(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let descendants = self.descendants();
            if self.stderr().contains("reference gateway ready") && descendants.len() > WORKERS {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "gateway-bench exited ({status}) before the reference ran:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the reference gateway did not start within 90 s; processes {descendants:?}; bench stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the bench to exit, meanwhile recording the most processes seen and whether
    /// one was uvicorn; panics after `within`.
    fn wait_exit(&mut self, within: Duration) -> (ExitStatus, usize, bool) {
        let deadline = Instant::now() + within;
        let (mut most, mut saw_uvicorn) = (0, false);
        loop {
            let descendants = self.descendants();
            most = most.max(descendants.len());
            saw_uvicorn |= descendants.iter().any(|(_, cmd)| cmd.contains("uvicorn"));
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, most, saw_uvicorn);
            }
            assert!(
                Instant::now() < deadline,
                "gateway-bench still running after {within:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What is left of the run after the bench has exited.
    fn assert_nothing_left(&self) {
        let left = self.descendants();
        assert!(
            left.is_empty(),
            "processes started by gateway-bench outlived it: {left:?}; bench stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, _) in marked(&self.marker) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.out_dir);
    }
}

fn marked(marker: &str) -> Vec<(i32, String)> {
    e2e::marked::marked_processes(MARKER_VAR, marker)
}

#[test]
fn the_reference_gateway_is_gone_after_a_normal_exit() {
    let mut run = Run::start("done", 3);
    let (status, most, saw_uvicorn) = run.wait_exit(Duration::from_secs(120));
    assert!(
        status.success(),
        "gateway-bench failed ({status}):\n{}",
        run.stderr()
    );
    // Not a vacuous pass: the reference did run, with its workers.
    assert!(
        saw_uvicorn && most > WORKERS,
        "the reference gateway never ran (at most {most} processes seen); stderr:\n{}",
        run.stderr()
    );
    run.assert_nothing_left();
}

fn stopped_by(signal: Signal, expected_code: i32) {
    let mut run = Run::start(&format!("{signal}"), 600);
    run.wait_reference_running();
    kill(Pid::from_raw(run.child.id() as i32), signal).unwrap();
    let (status, _, _) = run.wait_exit(Duration::from_secs(60));
    run.assert_nothing_left();
    // It handled the signal (cleaned up, then exited), rather than being killed by it.
    assert_eq!(
        status.code(),
        Some(expected_code),
        "gateway-bench should exit with status {expected_code} after {signal} ({status}); stderr:\n{}",
        run.stderr()
    );
}

#[test]
fn the_reference_gateway_is_gone_after_sigterm_to_the_bench() {
    stopped_by(Signal::SIGTERM, 143);
}

#[test]
fn the_reference_gateway_is_gone_after_sigint_to_the_bench() {
    stopped_by(Signal::SIGINT, 130);
}
