//! Where the connector's CPU goes: `perf record` (software cpu-clock event, which works in VMs
//! without hardware counters) on one extra, uncounted connector run, summarised by symbol.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::procstat::Proc;

/// Whether `perf record` works here (installed, and allowed to sample).
pub fn available(scratch: &Path) -> bool {
    Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-o"])
        .arg(scratch)
        .args(["--", "true"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

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

/// The hottest symbols (self time), as `percent  library  symbol` lines.
pub fn top_symbols(data: &Path, limit: usize) -> Result<Vec<String>> {
    report_lines(
        data,
        limit,
        &[
            "--no-children",
            "--sort",
            "dso,sym",
            "--percent-limit",
            "0.5",
        ],
        false,
    )
}

/// The first `limit` entries of `perf report --stdio <options>`, as `percent ... symbol`
/// lines; `call_chains`: the data were recorded with them (`-g`), which are then not printed.
pub fn report_lines(
    data: &Path,
    limit: usize,
    options: &[&str],
    call_chains: bool,
) -> Result<Vec<String>> {
    let mut command = Command::new("perf");
    command.args(["report", "--stdio"]).args(options);
    if call_chains {
        command.args(["-g", "none"]);
    }
    let output = command
        .arg("-i")
        .arg(data)
        .output()
        .context("running perf report")?;
    if !output.status.success() {
        bail!(
            "perf report failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.ends_with('%'))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .take(limit)
        .collect())
}
