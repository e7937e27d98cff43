//! Where the connector's CPU goes: `perf record` (software cpu-clock event, which works in VMs
//! without hardware counters) on one extra, uncounted connector run, summarised by symbol.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::procstat::Proc;

pub use local_stack::perf::{available, report_lines, top_symbols};

/// Starts sampling process `pid` (all its threads) at 999 Hz.
pub fn record(pid: i32, data: &Path, log: &Path) -> Result<Proc> {
    record_with(pid, data, log, &[])
}

/// `record` with extra `perf record` options (e.g. `-g` for call chains).
pub fn record_with(pid: i32, data: &Path, log: &Path, extra: &[&str]) -> Result<Proc> {
    let mut command = Command::new("perf");
    command
        .args(["record", "-q", "-e", "cpu-clock", "-F", "999"])
        .args(extra)
        .args(["-p", &pid.to_string(), "-o"])
        .arg(data);
    Proc::spawn("perf record", command, log)
}

/// perf writes its data file when interrupted.
pub async fn stop(perf: Proc) -> Result<()> {
    let _ = kill(Pid::from_raw(perf.pid), Signal::SIGINT);
    perf.wait(Duration::from_secs(60)).await.map(|_| ())
}
