//! The Kafka-compatible broker: tansu, started from the project's venv with in-memory storage,
//! ready once it answers a Kafka ApiVersions request ([`kafka_api_versions_probe`], also used
//! by the benches' own brokers).

use crate::Stack;
use crate::options::tansu_binary;
use crate::probes::{check_port_free, wait_ready};
use crate::processes::kill_and_reap;
use anyhow::{Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tokio::process::Command;

/// Arguments of a tansu broker on 127.0.0.1:`port` with memory storage, telling clients to
/// connect to 127.0.0.1:`advertised_port` (its own port, or a proxy's in front of it).
pub fn tansu_broker_args(port: u16, advertised_port: u16) -> Vec<String> {
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised_port}");
    [
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &advertised,
        "--storage-engine",
        "memory://tansu/",
    ]
    .map(String::from)
    .to_vec()
}

impl Stack {
    pub(crate) async fn start_broker(&mut self) -> Result<()> {
        check_port_free(self.opts.ports.kafka, "kafka")?;
        let mut cmd = Command::new(tansu_binary()?);
        cmd.args(tansu_broker_args(
            self.opts.ports.kafka,
            self.opts
                .kafka_advertised_port
                .unwrap_or(self.opts.ports.kafka),
        ))
        // tansu logs every request span at `info`: gigabytes per minute under load. Its own
        // filter, not the caller's RUST_LOG, decides; BROKER_LOG overrides it.
        .env(
            "RUST_LOG",
            std::env::var("BROKER_LOG").unwrap_or_else(|_| "warn".into()),
        );
        let svc = self.spawn("broker", cmd)?;
        self.broker = Some(svc);
        let addr: SocketAddr = ([127, 0, 0, 1], self.opts.ports.kafka).into();
        let timeout = self.opts.ready_timeout;
        wait_ready(
            self.broker.as_mut().unwrap(),
            &self.opts,
            timeout,
            move || kafka_api_versions_probe(addr).is_ok(),
        )
        .await
    }

    /// Freezes the broker with SIGSTOP (`true`) or lets it go on with SIGCONT (`false`): its
    /// sockets stay open and silent, as with a broker stuck in a long GC pause or a hung disk,
    /// and unlike a killed one its in-memory data survives. Native back-end only.
    pub fn freeze_broker(&self, frozen: bool) -> Result<()> {
        use nix::sys::signal::{Signal, kill};
        let Some(pid) = self.broker.as_ref().and_then(|b| b.child.id()) else {
            bail!("no native broker process runs (container back-end, or killed)");
        };
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .map_err(|e| anyhow::anyhow!("sending {signal} to the broker (pid {pid}): {e}"))
    }

    /// SIGKILL the broker and reap it, or remove its container (simulates the broker going
    /// down; its data is lost).
    pub async fn kill_broker(&mut self) -> Result<()> {
        kill_and_reap(self.broker.take(), &self.opts);
        if let Some(containers) = self.containers.as_mut() {
            containers.remove_kafka().await?;
        }
        Ok(())
    }
}

/// Sends a Kafka ApiVersions v0 request and checks the broker answers it without error.
pub fn kafka_api_versions_probe(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    let client = b"local-stack";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    let mut req = (body.len() as i32).to_be_bytes().to_vec();
    req.extend_from_slice(&body);
    s.write_all(&req)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(6..=1 << 20).contains(&len) {
        bail!("unexpected ApiVersions response size {len}");
    }
    let mut resp = vec![0u8; len as usize];
    s.read_exact(&mut resp)?;
    let corr = i32::from_be_bytes(resp[0..4].try_into().unwrap());
    let err = i16::from_be_bytes(resp[4..6].try_into().unwrap());
    if corr != 7 || err != 0 {
        bail!("ApiVersions answered correlation id {corr}, error code {err}");
    }
    Ok(())
}
