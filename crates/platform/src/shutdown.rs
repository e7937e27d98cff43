//! Graceful shutdown: every service stops on SIGINT (Ctrl-C) or SIGTERM (`docker stop`,
//! Kubernetes) the same way.

use std::io::Write as _;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Writes a line to stderr, ignoring a failed write, for code that stops processes: a closed
/// stderr (the terminal gone with its SIGHUP, the reader of a pipe killed) makes `eprintln!`
/// panic, and a panic there skips the stopping that follows it (found: a bench stopped with its
/// stderr's reader gone left the reference gateway's workers running).
pub fn note(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Resolves when the process receives SIGINT or SIGTERM.
///
/// If the handlers cannot be installed the error is logged and this never resolves: the
/// service keeps running and can only be stopped with SIGKILL.
pub async fn wait_for_signal() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

/// The signals that stop a command-line tool which must clean up before it exits (a
/// benchmark stopping the processes it started): SIGINT, SIGTERM and SIGHUP. Installed at
/// start, so a signal during start-up is caught too.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for one: its name, and the exit status that reports it (128 + its number).
    pub async fn recv(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.interrupt.recv() => ("SIGINT", 130),
            _ = self.terminate.recv() => ("SIGTERM", 143),
            _ = self.hangup.recv() => ("SIGHUP", 129),
        }
    }
}

#[cfg(test)]
#[allow(
    unsafe_code,
    reason = "the test raises a real signal in its own process"
)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn resolves_on_sigterm() {
        let waiting = tokio::spawn(wait_for_signal());
        // Give the task time to install its handlers before the signal is raised.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: raising a signal in this process, whose handler tokio installed above.
        let raised = unsafe { libc_raise(SIGTERM) };
        assert_eq!(raised, 0);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("resolved within 5 s")
            .unwrap();
    }

    const SIGTERM: i32 = 15;

    unsafe extern "C" {
        #[link_name = "raise"]
        fn libc_raise(signal: i32) -> i32;
    }
}
