//! The one way to connect to the source: where and as whom ([`PgTarget`]), and the session
//! settings every connection (replication, catalog, snapshot workers, re-snapshot, heartbeat)
//! shares, so every value arrives in the text form the decoders parse.

use std::str::FromStr;

use tokio_postgres::{Client, NoTls};

use crate::error::{ConnectorError, ErrorKind};

/// The output settings of every connection to the source (replication, catalog, snapshot
/// workers, re-snapshot): the decoders parse values in exactly these formats, so a connection
/// without them would turn values undecodable. `lc_monetary=C` fixes money's output format
/// (`$1,234.56`), whatever the server's locale.
pub const SESSION_SETTINGS: [(&str, &str); 6] = [
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
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
    /// The URL as given, for the ordinary (non-replication) SQL connection.
    pub url: String,
}

impl PgTarget {
    pub fn parse(url: &str, application_name: &str) -> Result<Self, ConnectorError> {
        let invalid = |message: String| ConnectorError::new(ErrorKind::Config, "--pg-url", message);
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| invalid(format!("not a valid PostgreSQL URL: {e}")))?;
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
            url: url.to_string(),
        })
    }
}

/// An ordinary SQL connection (catalog look-ups, setup, snapshot readers, heartbeats), with the
/// shared session settings.
pub async fn connect(target: &PgTarget) -> Result<Client, ConnectorError> {
    let mut config: tokio_postgres::Config =
        target.url.parse().map_err(|e: tokio_postgres::Error| {
            ConnectorError::new(ErrorKind::Config, "--pg-url", e.to_string())
        })?;
    config.options(session_options());
    let address = format!("{}:{}", target.host, target.port);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(_) => {
                ConnectorError::postgres(format!("connecting to PostgreSQL at {address}"), &e)
            }
            None => ConnectorError::new(
                ErrorKind::SourceUnavailable,
                format!("PostgreSQL at {address} is unreachable"),
                e.to_string(),
            ),
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "SQL connection closed");
        }
    });
    Ok(client)
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
}
