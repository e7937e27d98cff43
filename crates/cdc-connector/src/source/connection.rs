//! The one way to connect to the source: where and as whom ([`PgTarget`]), and the session
//! settings every connection (replication, catalog, snapshot workers, re-snapshot, heartbeat)
//! shares, so every value arrives in the text form the decoders parse. TLS follows the URL's
//! `sslmode` and `sslrootcert`, as in libpq (see [`super::tls`]).

use std::{future::Future, path::PathBuf, str::FromStr, time::Duration};

use tokio_postgres::{Client, NoTls};

use super::tls::{SslMode, TlsSettings};
use crate::error::{ConnectorError, ErrorKind};

/// The output settings of every connection to the source (replication, catalog, snapshot
/// workers, re-snapshot): the decoders parse values in exactly these formats, so a connection
/// without them would turn values undecodable. `lc_monetary=C` fixes money's output format
/// (`$1,234.56`), whatever the server's locale; `standard_conforming_strings=on` makes the
/// quoted literals the connector writes (re-snapshot keys) immune to backslashes in the data.
pub const SESSION_SETTINGS: [(&str, &str); 7] = [
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("standard_conforming_strings", "on"),
];

/// [`SESSION_SETTINGS`] as the startup packet's `options` (`-c name=value ...`).
pub fn session_options() -> String {
    SESSION_SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where and as whom to connect, from a `postgres://` URL.
#[derive(Clone, Debug)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub application_name: String,
    /// The URL as given but without `sslmode` and `sslrootcert` (tokio-postgres knows neither
    /// `verify-*` nor `sslrootcert`; [`PgTarget::tls`] holds them), for the ordinary
    /// (non-replication) SQL connection.
    pub url: String,
    /// `sslmode` (default `prefer`, as in libpq) and `sslrootcert`, with the CA file loaded.
    pub tls: TlsSettings,
    /// How long any wait on the server may last (connecting, a catalog query, silence on the
    /// replication stream) before the connection is taken for lost (`--source-timeout-secs`).
    pub timeout: Duration,
}

/// [`PgTarget::timeout`] unless configured: PostgreSQL's own `wal_receiver_timeout`.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(60);

impl PgTarget {
    pub fn parse(url: &str, application_name: &str) -> Result<Self, ConnectorError> {
        let invalid = |message: String| ConnectorError::new(ErrorKind::Config, "--pg-url", message);
        let (url_without_tls, ssl_mode, root_cert) = split_tls_parameters(url).map_err(invalid)?;
        let config = tokio_postgres::Config::from_str(&url_without_tls)
            .map_err(|e| invalid(format!("not a valid PostgreSQL URL: {e}")))?;
        // A `key=value` connection string (not a URL) may still say sslmode=disable|prefer|
        // require, which tokio-postgres parsed.
        let ssl_mode = ssl_mode.unwrap_or(match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        });
        let tls = TlsSettings::new(ssl_mode, root_cert).map_err(invalid)?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(_) => {
                return Err(invalid(
                    "Unix-socket hosts are not supported; use a TCP host".into(),
                ));
            }
            None => "127.0.0.1".to_string(),
        };
        let user = config
            .get_user()
            .ok_or_else(|| invalid("the URL names no user (postgres://USER@host/db)".into()))?
            .to_string();
        Ok(Self {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: config.get_dbname().unwrap_or(&user).to_string(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            user,
            application_name: application_name.to_string(),
            url: url_without_tls,
            tls,
            timeout: DEFAULT_SOURCE_TIMEOUT,
        })
    }

    /// Runs `operation` against the server, giving up after [`PgTarget::timeout`]. A network
    /// cut that drops packets without FIN or RST leaves a socket waiting for hours; this turns
    /// it into a retryable error.
    pub async fn within<T>(
        &self,
        what: &str,
        operation: impl Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .unwrap_or_else(|_| Err(self.no_answer(what)))
    }

    /// The error of a wait that outlasted [`PgTarget::timeout`].
    pub fn no_answer(&self, what: &str) -> ConnectorError {
        ConnectorError::new(
            ErrorKind::SourceUnavailable,
            format!("{what} (PostgreSQL at {}:{})", self.host, self.port),
            format!(
                "no answer from the server for {} s (--source-timeout-secs); the connection is taken for lost",
                self.timeout.as_secs()
            ),
        )
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query string (percent-decoded, the last
/// occurrence winning, as in libpq): the URL without them, and their values. A string that is
/// not a `postgres://` URL is returned unchanged.
fn split_tls_parameters(url: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), String> {
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_string(), None, None));
    };
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root_cert = None;
    for parameter in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match key {
            "sslmode" => {
                let value = percent_decode(value)?;
                mode = Some(SslMode::parse(&value).ok_or_else(|| {
                    format!(
                        "unknown sslmode {value:?}; expected {} (…?sslmode=verify-full&sslrootcert=/path/to/ca.pem)",
                        SslMode::EXPECTED
                    )
                })?);
            }
            "sslrootcert" => {
                let value = percent_decode(value)?;
                if value.is_empty() {
                    return Err(
                        "sslrootcert is empty; expected the path of a PEM file of CA certificates (sslrootcert=/path/to/ca.pem)"
                            .into(),
                    );
                }
                root_cert = Some(PathBuf::from(value));
            }
            _ => kept.push(parameter),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode, root_cert))
}

/// `%XX` escapes of a URL query value, as UTF-8.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let byte = value
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("invalid percent-escape in {value:?}"))?;
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// An ordinary SQL connection (catalog look-ups, setup, snapshot readers, heartbeats), with the
/// shared session settings; connecting gives up after the target's timeout.
pub async fn connect(target: &PgTarget) -> Result<Client, ConnectorError> {
    target.within("connecting", connect_unbounded(target)).await
}

async fn connect_unbounded(target: &PgTarget) -> Result<Client, ConnectorError> {
    let mut config: tokio_postgres::Config =
        target.url.parse().map_err(|e: tokio_postgres::Error| {
            ConnectorError::new(ErrorKind::Config, "--pg-url", e.to_string())
        })?;
    config.options(session_options());
    config.ssl_mode(target.tls.tokio_postgres_mode());
    // Named like the replication connection, so pg_stat_activity shows all of the connector's.
    if config.get_application_name().is_none() {
        config.application_name(&target.application_name);
    }
    let address = format!("{}:{}", target.host, target.port);
    let failed = |e: tokio_postgres::Error| {
        if e.as_db_error().is_some() {
            return ConnectorError::postgres(format!("connecting to PostgreSQL at {address}"), &e);
        }
        super::tls::tokio_postgres_tls_error(&address, &target.tls, &e).unwrap_or_else(|| {
            ConnectorError::new(
                ErrorKind::SourceUnavailable,
                format!("PostgreSQL at {address} is unreachable"),
                platform::errors::chain(&e),
            )
        })
    };
    match target.tls.make_tls_connect() {
        Some(tls) => Ok(spawn_connection(config.connect(tls).await.map_err(failed)?)),
        None => Ok(spawn_connection(
            config.connect(NoTls).await.map_err(failed)?,
        )),
    }
}

/// Drives a connection in the background; returns its client.
fn spawn_connection<S, T>(
    (client, connection): (Client, tokio_postgres::Connection<S, T>),
) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "SQL connection closed");
        }
    });
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_fields_are_taken_apart() {
        let target = PgTarget::parse("postgres://cdc:secret@db.local:6543/travel", "app").unwrap();
        assert_eq!(
            (
                target.host.as_str(),
                target.port,
                target.user.as_str(),
                target.password.as_deref(),
                target.database.as_str()
            ),
            ("db.local", 6543, "cdc", Some("secret"), "travel")
        );
    }

    #[test]
    fn a_url_without_user_is_a_configuration_error() {
        let error = PgTarget::parse("postgres://db.local/travel", "app").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("no user"), "{error}");
    }

    #[test]
    fn tls_settings_are_read_from_the_query_string_and_taken_out_of_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("root ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        let encoded = ca.display().to_string().replace(' ', "%20");
        let url = format!(
            "postgres://cdc@db.local:6543/travel?connect_timeout=5&sslmode=verify-full&sslrootcert={encoded}"
        );
        let target = PgTarget::parse(&url, "app").unwrap();
        assert_eq!(target.tls.mode, SslMode::VerifyFull);
        assert_eq!(target.tls.root_cert.as_deref(), Some(ca.as_path()));
        assert_eq!(
            target.url,
            "postgres://cdc@db.local:6543/travel?connect_timeout=5"
        );
        assert!(target.tls.make_tls_connect().is_some());

        let target =
            PgTarget::parse("postgres://cdc@db.local/travel?sslmode=require", "app").unwrap();
        assert_eq!(target.tls.mode, SslMode::Require);
        assert_eq!(target.tls.root_cert, None);
        assert_eq!(target.url, "postgres://cdc@db.local/travel");
    }

    #[test]
    fn without_sslmode_tls_is_preferred_as_in_libpq() {
        let target = PgTarget::parse("postgres://cdc@db.local/travel", "app").unwrap();
        assert_eq!(target.tls.mode, SslMode::Prefer);
        let target =
            PgTarget::parse("postgres://cdc@db.local/travel?sslmode=disable", "app").unwrap();
        assert_eq!(target.tls.mode, SslMode::Disable);
        assert!(target.tls.make_tls_connect().is_none());
        let target = PgTarget::parse("host=db.local user=cdc sslmode=require", "app").unwrap();
        assert_eq!(target.tls.mode, SslMode::Require);
    }

    #[test]
    fn bad_tls_settings_are_configuration_errors_naming_the_option() {
        let cases = [
            ("postgres://cdc@h/db?sslmode=verify_full", "unknown sslmode"),
            (
                "postgres://cdc@h/db?sslmode=verify-full",
                "needs sslrootcert",
            ),
            ("postgres://cdc@h/db?sslmode=verify-ca", "needs sslrootcert"),
            (
                "postgres://cdc@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert /nonexistent/ca.pem",
            ),
            (
                "postgres://cdc@h/db?sslmode=require&sslrootcert=",
                "sslrootcert is empty",
            ),
        ];
        for (url, needle) in cases {
            let error = PgTarget::parse(url, "app").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{url}");
            let text = error.to_string();
            assert!(text.starts_with("--pg-url: "), "{text}");
            assert!(text.contains(needle), "{url}: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("ca.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let url = format!(
            "postgres://cdc@h/db?sslmode=verify-ca&sslrootcert={}",
            garbage.display()
        );
        let error = PgTarget::parse(&url, "app").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.to_string().contains("not a valid CA certificate"),
            "{error}"
        );
    }

    /// A self-signed CA certificate (`openssl req -x509 -newkey ec -pkeyopt
    /// ec_paramgen_curve:P-256 -subj /CN=test-ca -days 36500`).
    const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBjDCCATGgAwIBAgIUSt3KnxKWigoHlXWDlOjFQk6fruAwCgYIKoZIzj0EAwIw\n\
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjEyMDEwMDAxMjlaGA8yMTI2MTEwNzAw\n\
MDEyOVowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
A0IABGm7qex9KZ+y+w0ntBWBcHddp9iiY1A4DfA8tcYT5W0EqQ86axso7sCH8vUV\n\
4lTq4uBLmrZ1y7PHigHhxsd+PnijYzBhMB0GA1UdDgQWBBTrgT9rxAsEZLw9EMap\n\
Hp26LqFEqzAfBgNVHSMEGDAWgBTrgT9rxAsEZLw9EMapHp26LqFEqzAPBgNVHRMB\n\
Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNJADBGAiEAkR0o\n\
L0xUQt94CyFGoN90pUg4bGhgbKAL1tZe9yLTMg8CIQDyVy/nRHcJpa+mPaiItJKO\n\
a6QtIkpWsjAeyPd4iVjrEw==\n\
-----END CERTIFICATE-----\n\
";
}
