//! Processes the bench starts and measures, with the kernel's own accounting: CPU time
//! (utime + stime) and peak resident memory (VmHWM, or ru_maxrss once reaped).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// CPU seconds and peak RSS of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_secs: f64,
    pub peak_rss_kib: u64,
}

impl Usage {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The exit code, or None when a signal ended it.
    pub code: Option<i32>,
    pub usage: Usage,
}

/// A child process waited for with `wait4`, which reports its CPU time and peak RSS exactly,
/// including its last moments (a process reaped by `std::process::Child::wait` loses them).
pub struct Proc {
    pub pid: i32,
    pub name: String,
    /// Set once wait4 reaped it: from then on the pid may belong to another process.
    reaped: AtomicBool,
}

impl Proc {
    /// Starts `command` with stdin closed and stdout/stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("opening {}", log.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(open()?))
            .stderr(Stdio::from(open()?))
            .env("NO_COLOR", "1");
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // Reaped with wait4 below, never through `child`, which is dropped without killing.
        drop(child);
        Ok(Proc {
            pid,
            name: name.to_string(),
            reaped: AtomicBool::new(false),
        })
    }

    /// The exit and usage if the process has ended (reaping it), None while it runs.
    pub fn try_wait(&self) -> Result<Option<Exit>> {
        let exit =
            wait4(self.pid, libc::WNOHANG).with_context(|| format!("waiting for {}", self.name))?;
        if exit.is_some() {
            self.reaped.store(true, Ordering::SeqCst);
        }
        Ok(exit)
    }

    /// Waits for the process to end, up to `timeout`; then kills it and fails.
    pub async fn wait(&self, timeout: Duration) -> Result<Exit> {
        let pid = self.pid;
        let mut handle = tokio::task::spawn_blocking(move || wait4(pid, 0));
        let waited = match tokio::time::timeout(timeout, &mut handle).await {
            Ok(joined) => joined.context("waiting thread")?,
            Err(_) => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = handle.await;
                self.reaped.store(true, Ordering::SeqCst);
                bail!(
                    "{} did not finish within {}s and was killed",
                    self.name,
                    timeout.as_secs()
                )
            }
        };
        self.reaped.store(true, Ordering::SeqCst);
        waited?.context("wait4 returned no status")
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`.
    pub async fn terminate(&self, grace: Duration) -> Result<Exit> {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        self.wait(grace).await
    }

    /// Polls `GET /health` on `addr` until it answers 200. Fails, naming the log's tail, when
    /// the process exits first or is not healthy within `timeout` (it is then terminated).
    pub async fn wait_healthy(
        &self,
        addr: std::net::SocketAddr,
        log: &Path,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait()? {
                bail!(
                    "{} exited at start-up ({:?}): {}",
                    self.name,
                    exit.code,
                    crate::consumers::log_summary(log)
                );
            }
            let healthy = tokio::task::spawn_blocking(move || {
                local_stack::http_get_status(addr, "/health")
                    .map(|s| s == 200)
                    .unwrap_or(false)
            })
            .await?;
            if healthy {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let _ = self.terminate(Duration::from_secs(10)).await;
                bail!(
                    "{} was not healthy after {} s: {}",
                    self.name,
                    timeout.as_secs(),
                    crate::consumers::log_summary(log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU seconds and peak RSS so far (the process must still run).
    pub fn sample(&self) -> Option<Usage> {
        sample(self.pid)
    }
}

/// A bench that fails half-way leaves no process behind.
impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped.load(Ordering::SeqCst) {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = wait4(self.pid, 0);
        }
    }
}

#[allow(
    unsafe_code,
    reason = "wait4(2) is the only way to get a child's rusage; pointers are to locals"
)]
fn wait4(pid: i32, flags: i32) -> Result<Option<Exit>> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in; status and rusage outlive the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to the two locals above.
        let reaped = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if reaped == pid {
            break;
        }
        if reaped == 0 {
            return Ok(None);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error.into());
        }
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Some(Exit {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        usage: Usage {
            cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // Linux reports ru_maxrss in KiB.
            peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        },
    }))
}

/// CPU seconds (utime + stime from /proc/PID/stat) and VmHWM of any live process.
pub fn sample(pid: i32) -> Option<Usage> {
    Some(Usage {
        cpu_secs: cpu_secs(pid)?,
        peak_rss_kib: peak_rss_kib(pid).unwrap_or(0),
    })
}

fn cpu_secs(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[allow(unsafe_code, reason = "sysconf(3) has no safe wrapper in libc")]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU time the hypervisor gave to others while this machine's cores wanted it (the `steal`
/// column of /proc/stat), summed over the cores, in seconds; `None` where the kernel does not
/// count it. Every process here stalls at once when it grows, so the report gives it beside
/// the latency figures.
pub fn stolen_cpu_secs() -> Option<f64> {
    Some(platform::machine::CpuTicks::now()?.stolen as f64 / clock_ticks())
}

/// The steal time since `start` (an earlier [`stolen_cpu_secs`]).
pub fn stolen_since(start: Option<f64>) -> Option<f64> {
    stolen_cpu_secs().zip(start).map(|(now, start)| now - start)
}

/// One thread's scheduler accounting: CPU time, and time runnable but waiting for a CPU
/// (`run_delay`), from /proc/PID/task/TID/schedstat.
#[derive(Debug, Clone, Default)]
pub struct ThreadTimes {
    pub name: String,
    pub cpu_secs: f64,
    pub wait_secs: f64,
}

/// Every thread of a live process, by thread id.
pub fn thread_times(pid: i32) -> std::collections::BTreeMap<i32, ThreadTimes> {
    let mut threads = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        let path = task.path();
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(path.join("schedstat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        let fields: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [cpu_ns, wait_ns, ..] = fields[..] {
            threads.insert(
                tid,
                ThreadTimes {
                    name: name.trim().to_string(),
                    cpu_secs: cpu_ns as f64 / 1e9,
                    wait_secs: wait_ns as f64 / 1e9,
                },
            );
        }
    }
    threads
}
