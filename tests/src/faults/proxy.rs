//! A TCP proxy the fault suite controls, to cut the network silently. While cut it forwards
//! nothing in either direction and closes nothing, so neither side sees a FIN or an RST: what a
//! dropped route, a dead switch or a firewall that discards packets looks like to both ends.
//!
//! A connection open during a cut never forwards again (a partition long enough to matter
//! outlives every TCP retransmission), and is closed when the cut heals; connections opened
//! during a cut wait, then connect upstream once it heals.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::JoinHandle,
};

/// Whether the network is cut, and how many cuts there have been (a connection that saw one
/// stays dead).
#[derive(Debug, Clone, Copy, Default)]
struct Network {
    cut: bool,
    cuts: u64,
}

pub struct CutProxy {
    port: u16,
    network: watch::Sender<Network>,
    acceptor: JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        Self::serve(listener, upstream)
    }

    /// Forwards the connections `listener` accepts to `upstream`.
    pub fn serve(listener: TcpListener, upstream: SocketAddr) -> Result<Self> {
        let port = listener.local_addr()?.port();
        let (network, watcher) = watch::channel(Network::default());
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, upstream, watcher.clone()));
            }
        });
        Ok(Self {
            port,
            network,
            acceptor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops forwarding, silently.
    pub fn cut(&self) {
        self.network.send_modify(|n| {
            n.cut = true;
            n.cuts += 1;
        });
    }

    /// Forwards again, for new connections.
    pub fn heal(&self) {
        self.network.send_modify(|n| n.cut = false);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Waits until the network is not cut; the number of cuts so far.
async fn healed(watcher: &mut watch::Receiver<Network>) -> Option<u64> {
    watcher
        .wait_for(|n| !n.cut)
        .await
        .ok()
        .map(|network| network.cuts)
}

async fn forward(client: TcpStream, upstream: SocketAddr, mut watcher: watch::Receiver<Network>) {
    let Some(born) = healed(&mut watcher).await else {
        return;
    };
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // The client sees its connection closed, as if the server refused it.
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // The halves live here, not in the pumps: dropping a write half sends a FIN, which must
    // wait until the cut heals.
    let (mut client_reader, mut client_writer) = client.into_split();
    let (mut server_reader, mut server_writer) = server.into_split();
    let cut = tokio::select! {
        cut = pump(&mut client_reader, &mut server_writer, &watcher, born) => cut,
        cut = pump(&mut server_reader, &mut client_writer, &watcher, born) => cut,
    };
    if cut {
        let _ = healed(&mut watcher).await;
    }
}

/// Copies one direction until end of stream (false) or until a cut (true), after which nothing
/// more is written.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    watcher: &watch::Receiver<Network>,
    born: u64,
) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return false;
            }
            Ok(read) => read,
        };
        let network = *watcher.borrow();
        if network.cut || network.cuts != born {
            return true;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = socket.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut answer = [0u8; 4];
        tokio::time::timeout(within, stream.read_exact(&mut answer))
            .await
            .ok()?
            .ok()?;
        Some(answer.to_vec())
    }

    #[tokio::test]
    async fn a_cut_is_silent_and_a_healed_network_serves_new_connections_only() {
        let proxy = CutProxy::start(echo_server().await).await.unwrap();
        let address = format!("127.0.0.1:{}", proxy.port());
        let mut before = TcpStream::connect(&address).await.unwrap();
        assert_eq!(
            round_trip(&mut before, Duration::from_secs(5)).await,
            Some(b"ping".to_vec())
        );

        proxy.cut();
        // Silence, not an error: the write is accepted, no answer and no end of stream come.
        assert_eq!(
            round_trip(&mut before, Duration::from_millis(500)).await,
            None
        );
        let mut during = TcpStream::connect(&address).await.unwrap();
        assert_eq!(
            round_trip(&mut during, Duration::from_millis(500)).await,
            None
        );

        proxy.heal();
        let mut after = TcpStream::connect(&address).await.unwrap();
        assert_eq!(
            round_trip(&mut after, Duration::from_secs(5)).await,
            Some(b"ping".to_vec())
        );
        // The connection that lived through the cut is closed, never resumed.
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(5), before.read_to_end(&mut rest))
            .await
            .expect("the cut connection is closed once the cut heals");
        assert!(ended.is_err() || rest.is_empty(), "{rest:?}");
    }
}
