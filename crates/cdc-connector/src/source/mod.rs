//! The PostgreSQL side: connection settings, error classification, start-up checks and setup
//! (publication, slot), and the replication connection.

pub mod replication;
pub mod setup;

pub use setup::{SourceSettings, connect, emit_heartbeat, prepare};

/// The output settings of every connection to the source (replication, catalog, snapshot
/// workers, re-snapshot): the decoders parse values in exactly these formats, so a connection
/// without them would turn values undecodable.
pub const SESSION_SETTINGS: [(&str, &str); 5] = [
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

/// [`SESSION_SETTINGS`] as the startup packet's `options` (`-c name=value ...`).
pub fn session_options() -> String {
    SESSION_SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

use std::str::FromStr;

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
    pub fn parse(url: &str, application_name: &str) -> Result<Self, SourceError> {
        let invalid = |message: String| SourceError::Definite {
            context: "--pg-url".into(),
            message,
        };
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

/// Errors of the source, classified as in Materialize's replication errors: retryable ones
/// (the network, a restarting server, a slot still held by a dying process) versus definite
/// ones (configuration, privileges, a dropped slot) that no retry fixes.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("PostgreSQL at {target} is unreachable: {source}")]
    Unreachable {
        target: String,
        source: std::io::Error,
    },
    #[error("{context}: {message} (SQLSTATE {code})")]
    Retryable {
        context: String,
        code: String,
        message: String,
    },
    #[error("{context}: {message}")]
    Definite { context: String, message: String },
    #[error(
        "replication slot {slot} is in use by another process (PID {pid}); stop the other consumer or choose another --slot-name"
    )]
    SlotInUse { slot: String, pid: i32 },
    #[error("protocol error talking to PostgreSQL at {target}: {message}")]
    Protocol { target: String, message: String },
}

impl SourceError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Retryable { .. } | Self::SlotInUse { .. }
        )
    }

    /// Classifies a server error by its SQLSTATE class.
    pub fn from_sqlstate(context: &str, code: &str, message: String) -> Self {
        let retryable = code.starts_with("08") // connection exception
            || code.starts_with("53") // insufficient resources
            || code.starts_with("57P") // server shutting down or starting
            || code == "55006" // object in use: a slot still held by a dying walsender
            || code == "40001"
            || code == "40P01";
        if retryable {
            Self::Retryable {
                context: context.to_string(),
                code: code.to_string(),
                message,
            }
        } else {
            Self::Definite {
                context: context.to_string(),
                message: format!("{message} (SQLSTATE {code})"),
            }
        }
    }

    fn from_postgres(context: &str, target: &PgTarget, error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self::from_sqlstate(context, db.code().code(), db.message().to_string()),
            None => Self::Unreachable {
                target: format!("{}:{}", target.host, target.port),
                source: std::io::Error::other(error.to_string()),
            },
        }
    }
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
    fn a_url_without_user_is_a_definite_error() {
        let error = PgTarget::parse("postgres://db.local/travel", "app").unwrap_err();
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("no user"), "{error}");
    }

    #[test]
    fn sqlstates_are_classified() {
        assert!(SourceError::from_sqlstate("x", "57P01", "terminating".into()).is_retryable());
        assert!(SourceError::from_sqlstate("x", "55006", "slot active".into()).is_retryable());
        assert!(
            !SourceError::from_sqlstate("x", "42501", "permission denied".into()).is_retryable()
        );
        assert!(
            !SourceError::from_sqlstate("x", "42704", "slot does not exist".into()).is_retryable()
        );
    }
}
