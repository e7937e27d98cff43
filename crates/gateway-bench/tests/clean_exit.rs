//! No process `gateway-bench` starts outlives it: the reference gateway (uvicorn with worker
//! processes) is gone once the bench has exited, whether it finished or was stopped by
//! SIGTERM or SIGINT mid-run. Real processes throughout: the built `gateway-bench` binary in its
//! hidden `--reference-only-secs` mode starts the real reference gateway from the project's
//! venv (no stack: the reference only connects to its broker at its first event).
//!
//! Each run gets a unique marker in its environment, inherited by everything the bench starts
//! (uvicorn's master, its workers, multiprocessing's helpers), which tells this run's
//! processes apart from every other, whatever their command lines ([`e2e::marked`]).

use std::{process::Command, time::Duration};

use e2e::marked::MarkedRun;
use nix::sys::signal::Signal;

const BENCH: &str = env!("CARGO_BIN_EXE_gateway-bench");
/// Two workers: a master and two worker processes, so a kill of the master alone shows.
const WORKERS: usize = 2;

/// The bench serving only the reference gateway for `reference_secs`.
fn start(name: &str, reference_secs: u64) -> MarkedRun {
    MarkedRun::start("GATEWAY_BENCH_CLEAN_EXIT_MARKER", name, |out_dir| {
        let mut command = Command::new(BENCH);
        command
            .args(["--reference-only-secs", &reference_secs.to_string()])
            .args(["--reference-workers", &WORKERS.to_string()])
            .arg("--out-dir")
            .arg(out_dir);
        command
    })
}

#[test]
fn the_reference_gateway_is_gone_after_a_normal_exit() {
    let mut run = start("gwb-done", 3);
    let (mut most, mut saw_uvicorn) = (0, false);
    let status = run.wait_exit(Duration::from_secs(120), |processes| {
        most = most.max(processes.len());
        saw_uvicorn |= processes.iter().any(|(_, cmd)| cmd.contains("uvicorn"));
    });
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

fn stopped_by(signal: Signal) {
    let mut run = start(&format!("gwb-{signal}"), 600);
    // Serving, with all its processes (a master and its workers) running.
    let stderr_path = run.out_dir.join("stderr");
    run.wait_until(
        "the reference gateway serves with its workers",
        Duration::from_secs(90),
        |processes| {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            stderr.contains("reference gateway ready") && processes.len() > WORKERS
        },
    );
    run.assert_stops_cleanly_on(signal, Duration::from_secs(60));
}

#[test]
fn the_reference_gateway_is_gone_after_sigterm_to_the_bench() {
    stopped_by(Signal::SIGTERM);
}

#[test]
fn the_reference_gateway_is_gone_after_sigint_to_the_bench() {
    stopped_by(Signal::SIGINT);
}
