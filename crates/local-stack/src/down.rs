//! `local-stack down` and the pid files behind it: the `local-stack up` process records itself
//! as the stack's owner, every service records its pid, and `down` (or the next start, which
//! refuses to run over them) finds what an earlier stack left running.

use crate::options::StackOptions;
use crate::postgres::{ShutdownMode, pg_ctl_status, pg_stop};
use crate::processes::{process_alive, process_matches};
use anyhow::{Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Every service a stack records a pid file for, in stop order, with the name its executable
/// has on its command line (so a recycled pid is not taken for it).
const SERVICES: &[(&str, &str)] = &[
    ("simulators", "workload"),
    ("gateway", "gateway"),
    ("processor", "processor"),
    ("connector", "cdc-connector"),
    ("registry", "schema-registry"),
    ("broker", "tansu"),
];

/// Stops a stack left running under `opts.root`: the `local-stack up` process first (it then
/// stops its services itself), then any service still recorded in a pid file, then
/// PostgreSQL. Returns what it did, one line per action.
pub async fn down(opts: &StackOptions) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for &(name, exe) in [("local-stack", "local-stack")].iter().chain(SERVICES) {
        let pf = opts.pid_file(name);
        let Ok(text) = std::fs::read_to_string(&pf) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            let _ = std::fs::remove_file(&pf);
            continue;
        };
        if pid as u32 == std::process::id() || !process_matches(pid, exe) {
            let _ = std::fs::remove_file(&pf);
            continue;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline =
            Instant::now() + Duration::from_secs(if name == "local-stack" { 60 } else { 15 });
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if process_alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            done.push(format!("killed {name} (pid {pid}) after SIGTERM timed out"));
        } else {
            done.push(format!("stopped {name} (pid {pid})"));
        }
        let _ = std::fs::remove_file(&pf);
    }
    if pg_ctl_status(opts).await {
        pg_stop(opts, ShutdownMode::Fast).await?;
        done.push(format!(
            "stopped PostgreSQL ({})",
            opts.pg_data_dir().display()
        ));
    }
    Ok(done)
}

/// Records the current process as the stack's owner so `down` can ask it to stop.
pub fn write_owner_pid(opts: &StackOptions) -> Result<()> {
    std::fs::create_dir_all(opts.run_dir())?;
    std::fs::write(
        opts.pid_file("local-stack"),
        format!("{}\n", std::process::id()),
    )?;
    Ok(())
}

pub fn remove_owner_pid(opts: &StackOptions) {
    let _ = std::fs::remove_file(opts.pid_file("local-stack"));
}

/// Pid of the `local-stack` process recorded under `opts.root`, if it is still running.
pub fn running_owner(opts: &StackOptions) -> Option<i32> {
    let pid = std::fs::read_to_string(opts.pid_file("local-stack"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid as u32 != std::process::id() && process_matches(pid, "local-stack")).then_some(pid)
}

/// Refuses to start over services recorded as running under `opts.root`.
pub(crate) fn check_no_leftovers(o: &StackOptions) -> Result<()> {
    for &(name, exe) in SERVICES {
        let pf = o.pid_file(name);
        let Ok(text) = std::fs::read_to_string(&pf) else {
            continue;
        };
        match text.trim().parse::<i32>() {
            Ok(pid) if process_matches(pid, exe) => bail!(
                "{name} from an earlier stack is still running (pid {pid}, {}): run `local-stack down`",
                pf.display()
            ),
            _ => {
                let _ = std::fs::remove_file(&pf);
            }
        }
    }
    Ok(())
}
