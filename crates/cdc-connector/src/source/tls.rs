//! TLS to PostgreSQL, with libpq's `sslmode` semantics, for both kinds of connection: the
//! ordinary SQL ones (tokio-postgres, through [`TlsSettings::make_tls_connect`]) and the
//! hand-written replication one ([`negotiate`], which sends the SSLRequest itself).
//!
//! | `sslmode`     | TLS                       | server certificate                            |
//! |---------------|---------------------------|-----------------------------------------------|
//! | `disable`     | never                     | -                                             |
//! | `prefer`      | when the server offers it | not checked (chain checked if `sslrootcert`)  |
//! | `require`     | always                    | not checked (chain checked if `sslrootcert`)  |
//! | `verify-ca`   | always                    | chains to `sslrootcert`                       |
//! | `verify-full` | always                    | chains to `sslrootcert`, host name matches    |
//!
//! As in libpq, `prefer` is the default, and `prefer`/`require` with an `sslrootcert` verify the
//! chain like `verify-ca`. Unlike libpq, `prefer` does not retry without TLS when the server
//! accepted TLS but the handshake then failed (that failure is reported), there is no default
//! `~/.postgresql/root.crt`, and `sslrootcert=system` is not supported. Only the ring crypto
//! provider is used.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    server::ParsedCertificate,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use crate::error::{ConnectorError, ErrorKind};

/// libpq's `sslmode` (without `allow`, which tries plain first and TLS second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const EXPECTED: &str = "disable, prefer, require, verify-ca or verify-full";

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether a server that refuses TLS is an error.
    fn requires_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

/// The TLS settings of a [`super::PgTarget`]: the mode, the CA file, and the rustls
/// configuration built from them at start-up (so a bad CA file is a configuration error, not a
/// connection failure).
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    client_config: Option<Arc<ClientConfig>>,
}

impl TlsSettings {
    /// Checks the combination and loads the CA file. The error is a one-line message naming the
    /// option (for a [`ErrorKind::Config`] error on `--pg-url`).
    pub fn new(mode: SslMode, root_cert: Option<PathBuf>) -> Result<Self, String> {
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "sslmode={} needs sslrootcert, the CA certificate file to verify the server \
                 against (…?sslmode={}&sslrootcert=/path/to/ca.pem)",
                mode.as_str(),
                mode.as_str()
            ));
        }
        let client_config = match (mode, &root_cert) {
            (SslMode::Disable, _) => None,
            (_, Some(path)) => {
                let roots = load_roots(path)?;
                Some(client_config(Verifier::new(
                    roots,
                    mode == SslMode::VerifyFull,
                )))
            }
            (_, None) => Some(client_config(Verifier::AcceptAny {
                algorithms: provider().signature_verification_algorithms,
            })),
        };
        Ok(Self {
            mode,
            root_cert,
            client_config,
        })
    }

    /// tokio-postgres's mode for the SSLRequest: it only knows disable, prefer and require; the
    /// verification is the rustls configuration's.
    pub fn tokio_postgres_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Mode;
        match self.mode {
            SslMode::Disable => Mode::Disable,
            SslMode::Prefer => Mode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Mode::Require,
        }
    }

    /// The connector tokio-postgres uses; None under `disable`.
    pub fn make_tls_connect(&self) -> Option<tokio_postgres_rustls::MakeRustlsConnect> {
        self.client_config.as_ref().map(|config| {
            tokio_postgres_rustls::MakeRustlsConnect::new(ClientConfig::clone(config))
        })
    }
}

/// The certificates of a PEM file, as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let expected = "expected a readable PEM file of CA certificates \
                    (-----BEGIN CERTIFICATE-----), e.g. sslrootcert=/path/to/ca.pem";
    let shown = path.display();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert {shown}: {}; {expected}", pem_error(&e)))?;
    if certificates.is_empty() {
        return Err(format!(
            "sslrootcert {shown}: no certificate in the file; {expected}"
        ));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|e| {
            format!("sslrootcert {shown}: not a valid CA certificate ({e}); {expected}")
        })?;
    }
    Ok(roots)
}

fn pem_error(error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not valid PEM ({other:?})"),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(verifier: Verifier) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// The server certificate check of each mode. The handshake's signatures are always verified
/// (the server must hold the certificate's key); what differs is which certificates are trusted.
#[derive(Debug)]
enum Verifier {
    /// `prefer`/`require` without `sslrootcert`: any certificate (libpq does the same).
    AcceptAny {
        algorithms: WebPkiSupportedAlgorithms,
    },
    /// Chains to the CA file; with `check_name`, also valid for the host connected to.
    Chain {
        roots: Arc<RootCertStore>,
        check_name: bool,
        algorithms: WebPkiSupportedAlgorithms,
    },
}

impl Verifier {
    fn new(roots: RootCertStore, check_name: bool) -> Self {
        Self::Chain {
            roots: Arc::new(roots),
            check_name,
            algorithms: provider().signature_verification_algorithms,
        }
    }

    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        match self {
            Self::AcceptAny { algorithms } | Self::Chain { algorithms, .. } => algorithms,
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Self::Chain {
            roots,
            check_name,
            algorithms,
        } = self
        else {
            return Ok(ServerCertVerified::assertion());
        };
        let certificate = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            roots,
            intermediates,
            now,
            algorithms.all,
        )?;
        if *check_name {
            rustls::client::verify_server_name(&certificate, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

/// The replication connection's byte stream: plain TCP or TLS over it.
pub enum PgStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl PgStream {
    /// Sets how many bytes the socket must hold before it reports itself readable
    /// (`SO_RCVLOWAT`; 1 is the default). A read still takes whatever is there: only the
    /// wake-up waits. Counted in bytes on the wire, so under TLS in encrypted bytes.
    pub fn wake_when_holding(&self, bytes: usize) -> io::Result<()> {
        let socket = match self {
            Self::Plain(stream) => stream,
            Self::Tls(stream) => stream.get_ref().0,
        };
        set_receive_low_water_mark(std::os::fd::AsFd::as_fd(socket), bytes)
    }
}

#[allow(
    unsafe_code,
    reason = "SO_RCVLOWAT has no safe setter in the crates at hand (std, tokio, socket2, nix)"
)]
fn set_receive_low_water_mark(socket: std::os::fd::BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is borrowed from a live socket for the call; the option's value is
    // a c_int that outlives the call, passed with its size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Negotiates TLS on a fresh connection as `settings` say: under `disable` the stream stays
/// plain; otherwise sends the SSLRequest, and on the server's 'S' runs the handshake for
/// `host`; a server answering 'N' is refused unless the mode is `prefer`.
pub async fn negotiate(
    mut stream: TcpStream,
    settings: &TlsSettings,
    host: &str,
    address: &str,
) -> Result<PgStream, ConnectorError> {
    let Some(config) = &settings.client_config else {
        return Ok(PgStream::Plain(stream));
    };
    let unavailable = |e: io::Error| {
        ConnectorError::new(
            ErrorKind::SourceUnavailable,
            format!("PostgreSQL at {address}"),
            e.to_string(),
        )
    };
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    stream.write_all(&request).await.map_err(unavailable)?;
    // Exactly one byte: anything the server sent after it must go through the TLS layer.
    let answer = stream.read_u8().await.map_err(unavailable)?;
    match answer {
        b'S' => {}
        b'N' if settings.mode.requires_tls() => return Err(not_offered(address, settings.mode)),
        b'N' => return Ok(PgStream::Plain(stream)),
        other => {
            return Err(ConnectorError::new(
                ErrorKind::Protocol,
                format!("TLS with PostgreSQL at {address}"),
                format!("unexpected answer {:?} to the SSLRequest", other as char),
            ));
        }
    }
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| {
        ConnectorError::new(
            ErrorKind::Config,
            "--pg-url",
            format!("host {host:?} is not a valid TLS server name: {e}"),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let tls = connector
        .connect(server_name, stream)
        .await
        .map_err(|e| handshake_error(address, &e))?;
    Ok(PgStream::Tls(Box::new(tls)))
}

/// A failed handshake: definite when rustls refused (certificate, name, protocol), transient
/// when the connection broke.
pub fn handshake_error(address: &str, error: &io::Error) -> ConnectorError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(refusal) => refused(address, refusal),
        None => ConnectorError::new(
            ErrorKind::SourceUnavailable,
            format!("TLS with PostgreSQL at {address}"),
            format!("the handshake failed: {error}"),
        ),
    }
}

/// A handshake rustls refused, as a definite error that says why.
fn refused(address: &str, refusal: &rustls::Error) -> ConnectorError {
    use rustls::CertificateError as Certificate;
    let why = match refusal {
        rustls::Error::InvalidCertificate(Certificate::UnknownIssuer) => {
            "the server's certificate is not signed by a CA in sslrootcert \
             (invalid peer certificate: UnknownIssuer)"
                .to_string()
        }
        other => other.to_string(),
    };
    ConnectorError::new(
        ErrorKind::SourceRejected,
        format!("TLS with PostgreSQL at {address}"),
        format!("the handshake failed: {why}"),
    )
}

/// The TLS failure inside a tokio-postgres connection error, if it is one: a refused handshake
/// or a server that refuses TLS under `require`/`verify-*`.
pub fn tokio_postgres_tls_error(
    address: &str,
    settings: &TlsSettings,
    error: &tokio_postgres::Error,
) -> Option<ConnectorError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return Some(handshake_error(address, io));
        }
        if let Some(refusal) = cause.downcast_ref::<rustls::Error>() {
            return Some(refused(address, refusal));
        }
        source = cause.source();
    }
    let refuses_tls =
        std::iter::successors(std::error::Error::source(error), |cause| cause.source())
            .any(|cause| cause.to_string().contains("server does not support TLS"));
    refuses_tls.then(|| not_offered(address, settings.mode))
}

/// A server that answered the SSLRequest with 'N' under `require` or `verify-*`.
fn not_offered(address: &str, mode: SslMode) -> ConnectorError {
    ConnectorError::new(
        ErrorKind::SourceRejected,
        format!("TLS with PostgreSQL at {address}"),
        format!(
            "the server does not accept TLS connections (sslmode={}); enable ssl on the server, \
             or connect with sslmode=prefer or disable",
            mode.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_libpq_spells_them() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("allow"), None);
    }

    #[test]
    fn verification_needs_a_ca_file() {
        let error = TlsSettings::new(SslMode::VerifyCa, None).unwrap_err();
        assert!(error.contains("sslrootcert"), "{error}");
        assert!(TlsSettings::new(SslMode::Require, None).is_ok());
        assert!(
            TlsSettings::new(SslMode::Disable, None)
                .unwrap()
                .make_tls_connect()
                .is_none()
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = TlsSettings::new(SslMode::VerifyFull, Some(path)).unwrap_err();
        assert!(error.contains("no certificate in the file"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = TlsSettings::new(SslMode::VerifyFull, Some(missing)).unwrap_err();
        assert!(
            error.contains("missing.pem") && error.contains("PEM"),
            "{error}"
        );
    }

    /// A fake server answering the SSLRequest with `answer`; returns what `negotiate` made of
    /// it under `mode`.
    async fn negotiate_against(answer: u8, mode: SslMode) -> Result<PgStream, ConnectorError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_all(&[answer]).await.unwrap();
            request
        });
        let stream = TcpStream::connect(&address).await.unwrap();
        let settings = TlsSettings::new(mode, None).unwrap();
        let result = negotiate(stream, &settings, "127.0.0.1", &address).await;
        let mut expected = BytesMut::new();
        frontend::ssl_request(&mut expected);
        assert_eq!(server.await.unwrap().as_slice(), &expected[..]);
        result
    }

    #[tokio::test]
    async fn a_server_refusing_tls_is_an_error_unless_tls_is_only_preferred() {
        let error = negotiate_against(b'N', SslMode::Require)
            .await
            .err()
            .expect("require needs TLS");
        assert_eq!(error.kind(), ErrorKind::SourceRejected);
        assert!(error.to_string().contains("does not accept TLS"), "{error}");
        let stream = negotiate_against(b'N', SslMode::Prefer).await.unwrap();
        assert!(matches!(stream, PgStream::Plain(_)));
        let error = negotiate_against(b'X', SslMode::Prefer)
            .await
            .err()
            .expect("not an answer");
        assert_eq!(error.kind(), ErrorKind::Protocol);
    }
}
