//! A TLS terminator in front of a plaintext server: it accepts TLS with a certificate the test
//! made, and forwards the decrypted bytes. The broker here (tansu) speaks only plaintext, so
//! this is how the services' Kafka TLS settings are tested against a real handshake: the broker
//! advertises the terminator's address, and every client must come through TLS.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

pub struct TlsTerminator {
    port: u16,
    handshakes: Arc<AtomicU64>,
    acceptor: JoinHandle<()>,
}

impl TlsTerminator {
    /// Listens on a free port of 127.0.0.1 with the PEM certificate chain and key, forwarding
    /// to `upstream`.
    pub async fn start(certificate: &Path, key: &Path, upstream: SocketAddr) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(certificate)
            .context("reading the certificate")?
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the certificate")?;
        let key = PrivateKeyDer::from_pem_file(key).context("reading the key")?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        let tls = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = handshakes.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let tls = tls.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut client) = tls.accept(client).await else {
                        return; // A failed handshake: the client sees it.
                    };
                    counted.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            handshakes,
            acceptor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Completed TLS handshakes so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}
