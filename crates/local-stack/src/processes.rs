//! Child processes: spawning a service with its output in `<root>/logs/<name>.log` and its pid
//! in `<root>/run/<name>.pid`, stopping it (SIGTERM, then SIGKILL), reaping it, and looking at
//! processes through `/proc`. [`stop_services`] is the one stop sequence for the services,
//! used by [`Stack::shutdown`](crate::Stack::shutdown), the `stop_*` methods and the `Drop` of
//! a stack alike.

use crate::Stack;
use crate::options::StackOptions;
use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A child process the stack started, by service name.
pub(crate) struct Service {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
}

impl Stack {
    pub fn log_file(&self, service: &str) -> PathBuf {
        self.opts.log_file(service)
    }

    /// Last `lines` lines of a service's log (`postgres`, `broker`, `registry`, `connector`).
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        log_tail(&self.opts.log_file(service), lines)
    }

    pub(crate) fn spawn(&self, name: &'static str, mut cmd: Command) -> Result<Service> {
        let log = self.opts.log_file(name);
        {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            let _ = writeln!(f, "---- local-stack: starting {name} ----");
        }
        cmd.stdin(Stdio::null())
            .stdout(log_stdio(&log)?)
            .stderr(log_stdio(&log)?)
            // Own process group: a Ctrl-C in the terminal reaches only local-stack, which
            // then stops the services in order.
            .process_group(0)
            // Plain-text logs (tracing-subscriber and most CLIs honour NO_COLOR).
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let prog = format!("{:?}", cmd.as_std().get_program());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({prog})"))?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(self.opts.pid_file(name), format!("{pid}\n"));
        }
        Ok(Service { name, child })
    }

    /// Waits until one of the stack's child processes exits; returns its name and status.
    /// Never returns if no child runs.
    pub async fn wait_for_exit(&mut self) -> (&'static str, std::io::Result<ExitStatus>) {
        async fn wait_opt(s: &mut Option<Service>) -> (&'static str, std::io::Result<ExitStatus>) {
            match s.as_mut() {
                Some(s) => (s.name, s.child.wait().await),
                None => std::future::pending().await,
            }
        }
        let (name, status) = tokio::select! {
            r = wait_opt(&mut self.broker) => r,
            r = wait_opt(&mut self.registry) => r,
            r = wait_opt(&mut self.connector) => r,
            r = wait_opt(&mut self.gateway) => r,
            r = wait_opt(&mut self.processor) => r,
            r = wait_opt(&mut self.simulators) => r,
        };
        match name {
            "broker" => self.broker = None,
            "registry" => self.registry = None,
            "gateway" => self.gateway = None,
            "processor" => self.processor = None,
            "simulators" => self.simulators = None,
            _ => self.connector = None,
        }
        let _ = std::fs::remove_file(self.opts.pid_file(name));
        (name, status)
    }
}

pub(crate) fn log_stdio(path: &Path) -> Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))?;
    Ok(Stdio::from(f))
}

/// Last `lines` lines of a file ("" if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn tail_msg(log: &Path) -> String {
    format!("last lines of {}:\n{}", log.display(), log_tail(log, 40))
}

/// SIGKILL a service, reap it and forget its pid file.
pub(crate) fn kill_and_reap(service: Option<Service>, opts: &StackOptions) {
    if let Some(mut s) = service {
        let _ = s.child.start_kill();
        reap_blocking(&mut s.child, Duration::from_secs(10));
        let _ = std::fs::remove_file(opts.pid_file(s.name));
    }
}

/// Stops one service with [`stop_services`] off the async threads; its exit status, or an
/// error when it ignored SIGTERM for `grace` and was killed.
pub(crate) async fn terminate(
    s: Service,
    opts: &StackOptions,
    grace: Duration,
) -> Result<ExitStatus> {
    let opts = opts.clone();
    let name = s.name;
    tokio::task::spawn_blocking(move || stop_services(vec![s], &opts, grace))
        .await
        .with_context(|| format!("stopping {name}"))?
        .pop()
        .map(|(_, outcome)| outcome)
        .unwrap_or_else(|| bail!("stopping {name}: no outcome"))
}

/// The one stop sequence of the stack's services: forgets their pid files, sends SIGTERM to
/// all of them, gives them `grace` to exit, then SIGKILLs and reaps (up to 10 s) the rest.
/// Returns each service's exit status, or an error when it had to be killed. Blocking (it polls
/// the children), so a `Drop` can use it as well as async code.
pub(crate) fn stop_services(
    services: Vec<Service>,
    opts: &StackOptions,
    grace: Duration,
) -> Vec<(&'static str, Result<ExitStatus>)> {
    let mut outcomes = Vec::with_capacity(services.len());
    let mut running: Vec<Service> = Vec::with_capacity(services.len());
    for mut s in services {
        let _ = std::fs::remove_file(opts.pid_file(s.name));
        match s.child.try_wait() {
            Ok(Some(status)) => outcomes.push((s.name, Ok(status))),
            _ => {
                if let Some(pid) = s.child.id() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
                running.push(s);
            }
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut still = Vec::with_capacity(running.len());
        for mut s in running {
            match s.child.try_wait() {
                Ok(Some(status)) => outcomes.push((s.name, Ok(status))),
                Ok(None) => still.push(s),
                Err(e) => outcomes.push((
                    s.name,
                    Err(anyhow::Error::new(e).context(format!("waiting for {}", s.name))),
                )),
            }
        }
        running = still;
        if running.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut s in running {
        let _ = s.child.start_kill();
        reap_blocking(&mut s.child, Duration::from_secs(10));
        outcomes.push((
            s.name,
            Err(anyhow!(
                "{} ignored SIGTERM for {}s and was killed",
                s.name,
                grace.as_secs()
            )),
        ));
    }
    outcomes
}

pub(crate) fn reap_blocking(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the first field after the ")" closing the command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

pub(crate) fn process_matches(pid: i32, exe: &str) -> bool {
    process_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(exe))
            .unwrap_or(false)
}

/// Live child processes of the current process (to check nothing was left behind).
pub fn live_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    let mut it = rest.split_whitespace();
                    let state = it.next()?;
                    let ppid: i32 = it.next()?.parse().ok()?;
                    Some(ppid == me && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}
