//! Where a process's CPU goes, for the benchmarks' reports: `perf record` with the software
//! `cpu-clock` event (which works in virtual machines without hardware counters), summarised by
//! symbol with `perf report`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

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

/// `perf record` sampling one process (all its threads) at 999 Hz, until [`Recording::finish`].
/// Killed if dropped unfinished (its data is then incomplete), so a benchmark stopped early
/// leaves no sampler behind.
pub struct Recording {
    perf: tokio::process::Child,
}

impl Recording {
    /// Starts sampling `pid` into `data`; perf's own output goes to `log`.
    pub fn start(pid: u32, data: &Path, log: &Path) -> Result<Self> {
        let output =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let perf = tokio::process::Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(data)
            .stdin(std::process::Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .context("starting perf record")?;
        Ok(Self { perf })
    }

    /// Stops sampling: perf writes its data file when interrupted.
    pub async fn finish(mut self) -> Result<()> {
        if let Some(pid) = self.perf.id() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), self.perf.wait())
            .await
            .context("perf record did not stop within 60 s of SIGINT")??;
        // perf exits with SIGINT's status once it has written its data.
        if !status.success() && status.code().is_some() {
            bail!("perf record failed ({status})");
        }
        Ok(())
    }
}
