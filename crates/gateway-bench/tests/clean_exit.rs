//! No process `gateway-bench` starts outlives it: the reference gateway (uvicorn with worker
//! processes) is gone once the bench has exited, whether it finished or was stopped by
//! SIGTERM or SIGINT mid-run. Real processes throughout: the built `gateway-bench` binary in its
//! hidden `--reference-only-secs` mode starts the real reference gateway from the project's
//! venv (no stack: the reference only connects to its broker at its first event).
//!
//! Each run gets a unique marker in its environment, inherited by everything the bench starts
//! (uvicorn's master, its workers, multiprocessing's helpers), which tells this run's
//! processes apart from every other, whatever their command lines ([`e2e::marked`]).

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::Duration,
};

use e2e::marked::MarkedRun;
use nix::sys::signal::Signal;

const BENCH: &str = env!("CARGO_BIN_EXE_gateway-bench");
/// Two workers: a master and two worker processes, so a kill of the master alone shows.
const WORKERS: usize = 2;

/// The bench serving only the reference gateway for `reference_secs`.
fn start(name: &str, reference_secs: u64) -> MarkedRun {
    start_with_stderr(name, reference_secs, None)
}

fn start_with_stderr(name: &str, reference_secs: u64, stderr: Option<Stdio>) -> MarkedRun {
    MarkedRun::start_with_stderr("GATEWAY_BENCH_CLEAN_EXIT_MARKER", name, stderr, |out_dir| {
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

/// Stopped while nobody reads its stderr any more (its terminal gone, the reader of its pipe
/// killed): what the bench says on the way out fails, and must not cut the stopping short.
/// Found: `eprintln!` panicked on the closed pipe in the reference's drop, before it was
/// stopped, and its uvicorn workers kept running.
#[test]
fn the_reference_gateway_is_gone_after_sigterm_to_the_bench_whose_stderr_is_closed() {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut run = start_with_stderr("gwb-closed-stderr", 600, Some(writer.into()));
    // Read the bench's stderr until the reference serves, then close the pipe's only reader.
    let mut said = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&said).contains("reference gateway ready") {
        let read = reader.read(&mut chunk).unwrap();
        assert!(
            read > 0,
            "the bench closed its stderr before the reference served: {}",
            String::from_utf8_lossy(&said)
        );
        said.extend_from_slice(&chunk[..read]);
    }
    run.wait_until(
        "the reference gateway serves with its workers",
        Duration::from_secs(90),
        |processes| processes.len() > WORKERS,
    );
    drop(reader);
    run.assert_stops_cleanly_on(Signal::SIGTERM, Duration::from_secs(60));
}
