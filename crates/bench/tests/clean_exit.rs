//! No process `bench cdc` starts outlives it when it is stopped mid-run by SIGTERM or SIGINT:
//! PostgreSQL, the broker and the registry it started are gone once it has exited (before,
//! a SIGTERM left PostgreSQL and the broker running). Real processes throughout: the built
//! `bench` binary, its stack from the workspace's debug binaries. The run's processes are told
//! apart from every other by a marker in their environment ([`e2e::marked`]).

use std::{process::Command, time::Duration};

use e2e::marked::MarkedRun;
use nix::sys::signal::Signal;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn stopped_by(signal: Signal) {
    let mut run = MarkedRun::start("BENCH_CDC_CLEAN_EXIT_MARKER", "bench-cdc", |out_dir| {
        let mut command = Command::new(BENCH);
        command
            .args(["cdc", "--quick", "--no-profile", "--out"])
            .arg(out_dir)
            .env("STACK_BIN_DIR", local_stack::test_bin_dir());
        command
    });
    // The postmaster and the broker themselves, not initdb or a wrapper naming them.
    run.wait_until(
        "the stack's PostgreSQL and broker run",
        Duration::from_secs(120),
        |processes| {
            let running = |name: &str| processes.iter().any(|(_, cmd)| cmd.contains(name));
            running("bin/postgres -D") && running("tansu broker")
        },
    );
    run.assert_stops_cleanly_on(signal, Duration::from_secs(60));
}

#[test]
fn the_stack_is_gone_after_sigterm_to_the_bench() {
    stopped_by(Signal::SIGTERM);
}

#[test]
fn the_stack_is_gone_after_sigint_to_the_bench() {
    stopped_by(Signal::SIGINT);
}
