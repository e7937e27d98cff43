//! Readiness and port checks: waiting for a service's probe while watching that it does not
//! exit, a minimal HTTP `GET` that needs no client library, and refusing a port in use.

use crate::options::StackOptions;
use crate::processes::{Service, tail_msg};
use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub(crate) async fn wait_ready(
    svc: &mut Service,
    opts: &StackOptions,
    timeout: Duration,
    probe: impl Fn() -> bool + Send + Clone + 'static,
) -> Result<()> {
    let log = opts.log_file(svc.name);
    let start = Instant::now();
    loop {
        if let Some(status) = svc.child.try_wait().context("waiting for child")? {
            bail!(
                "{} exited during start-up ({status}); {}",
                svc.name,
                tail_msg(&log)
            );
        }
        let p = probe.clone();
        if tokio::task::spawn_blocking(p).await.unwrap_or(false) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            bail!(
                "{} not ready after {}s; {}",
                svc.name,
                timeout.as_secs(),
                tail_msg(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Minimal `GET path` over HTTP/1.1; returns the status code.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {line:?}"))?;
    Ok(code)
}

pub(crate) fn check_port_free(port: u16, what: &str) -> Result<()> {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) => {
            bail!("port 127.0.0.1:{port} for {what} is not free ({e}); is another stack running?")
        }
    }
}
