//! The continuous OLTP load under which every fault runs: `workload oltp` (the project's own
//! driver: users sign up, book, pay, cancel) at a fixed rate, straight to PostgreSQL. It goes
//! on through a PostgreSQL restart (failed operations are counted and skipped by the driver),
//! and what it did is judged by the ground-truth slot, not by its own account.

use std::process::Stdio;

use anyhow::{Context, Result, bail};
use local_stack::Stack;
use tokio::process::{Child, Command};

pub struct Load {
    child: Child,
}

impl Load {
    pub fn start(stack: &Stack, rate: u32, seed: u64) -> Result<Self> {
        let binary = stack.connector_binary().with_file_name("workload");
        let log = std::fs::File::create(stack.options().log_file("load"))
            .context("creating the load's log")?;
        let child = Command::new(&binary)
            .args(["oltp", "--duration-secs", "86400", "--concurrency", "4"])
            .args(["--rate", &rate.to_string(), "--seed", &seed.to_string()])
            .args(["--pg-url", &stack.pg_url()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { child })
    }

    /// Stops the load (SIGKILL: a transaction it had open aborts, which the ground truth does
    /// not list). An earlier exit of its own is an error: the load was not continuous.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the load stopped by itself during the fault ({status})");
        }
        self.child.kill().await.context("stopping the load")
    }
}
