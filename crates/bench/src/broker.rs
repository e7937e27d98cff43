//! A fresh tansu broker for each connector run. tansu keeps every record in memory, so millions
//! of records from earlier runs would make it bigger and slower run after run; a new broker per
//! run gives each run the same, empty broker. The connector provisions its topics at start-up.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procstat::{Proc, Usage};

pub struct Broker {
    process: Proc,
    pub brokers: String,
}

impl Broker {
    pub async fn start(log: &Path) -> Result<Broker> {
        let port = free_port()?;
        let mut command = Command::new(local_stack::tansu_binary()?);
        command.args(local_stack::tansu_broker_args(port, port));
        let process = Proc::spawn("tansu broker", command, log)?;
        let broker = Broker {
            process,
            brokers: format!("127.0.0.1:{port}"),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = broker.process.try_wait()? {
                bail!(
                    "the tansu broker exited at start-up ({:?}); see {}",
                    exit.code,
                    log.display()
                );
            }
            if tokio::task::spawn_blocking(move || {
                local_stack::kafka_api_versions_probe(addr).is_ok()
            })
            .await?
            {
                return Ok(broker);
            }
            if Instant::now() > deadline {
                let _ = broker.process.terminate(Duration::from_secs(5)).await;
                bail!(
                    "the tansu broker was not ready after 30 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU time and memory of the broker so far.
    pub fn usage(&self) -> Option<Usage> {
        self.process.sample()
    }

    pub async fn stop(self) -> Result<()> {
        self.process
            .terminate(Duration::from_secs(15))
            .await
            .map(|_| ())
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port())
}
