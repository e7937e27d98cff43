//! The connector's options: flags, `CDC_*` environment variables and a TOML file (`--config`),
//! all explained by `--help`, and the session configuration built from them.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;

use crate::{
    error::{ConnectorError, ErrorKind},
    privacy::{self, ChangeFilter},
    session::SessionConfig,
    snapshot,
    source::{PgTarget, SourceSettings},
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Stream PostgreSQL changes (pgoutput) to Kafka as Avro CDCChange records"
)]
pub struct Options {
    /// TOML file with defaults for any option below; keys are the long option names
    /// (e.g. `pg-url = "postgres://..."`). Flags and environment variables override it.
    #[arg(long, env = "CDC_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// PostgreSQL URL; the role needs the REPLICATION attribute (and CREATE on the database if
    /// the publication does not exist yet; `sql/connector_role.sql` is the least-privilege role).
    /// TLS as libpq: `?sslmode=disable|prefer|require|verify-ca|verify-full` (default prefer)
    /// and `&sslrootcert=/path/ca.pem` (required by verify-ca and verify-full), for every
    /// connection, replication included.
    #[arg(
        long,
        env = "CDC_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/travel"
    )]
    pub pg_url: String,
    /// Logical replication slot the connector owns; created if missing. Its confirmed position
    /// is where a restart resumes.
    #[arg(long, env = "CDC_SLOT_NAME", default_value = platform::cdc::DEFAULT_SLOT)]
    pub slot_name: String,
    /// Publication to stream; created for --tables if missing.
    #[arg(long, env = "CDC_PUBLICATION_NAME", default_value = platform::cdc::DEFAULT_PUBLICATION)]
    pub publication_name: String,
    /// Tables (schema.table, comma-separated) for the publication when the connector creates it.
    #[arg(
        long,
        env = "CDC_TABLES",
        value_delimiter = ',',
        default_value = "public.users,public.bookings,public.payments"
    )]
    pub tables: Vec<String>,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "CDC_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Kafka TLS and SASL (see the `--kafka-security-protocol` options).
    #[command(flatten)]
    pub kafka_security: platform::kafka_security::KafkaSecurityArgs,
    /// Base URL of the Confluent-compatible schema registry.
    #[arg(
        long,
        env = "CDC_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,
    /// Logical decoding messages (pg_logical_emit_message) to publish to topic_cdc_messages, by
    /// prefix: `*` for all, `family*` for a family, or exact prefixes, comma-separated; empty
    /// publishes none. The connector's heartbeats are never published.
    #[arg(
        long,
        env = "CDC_MESSAGE_PREFIXES",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub message_prefixes: Vec<String>,
    /// Directory where transactions streamed before their commit are staged (on disk, so a
    /// transaction of any size takes bounded memory) [default: the system temporary directory].
    #[arg(long, env = "CDC_SPILL_DIR")]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Address of the HTTP server for /metrics (Prometheus) and /health.
    #[arg(long, env = "CDC_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Seconds between standby status updates to PostgreSQL (they confirm acknowledged positions).
    #[arg(long, env = "CDC_STATUS_INTERVAL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub status_interval_secs: u64,
    /// Seconds any wait on PostgreSQL may last before the connection is taken for lost and
    /// the session reconnects: connecting, a catalog query, a heartbeat, and silence on the
    /// replication stream (at half of it the server is asked for a keepalive, which a live
    /// server sends at once). It catches a network cut that drops packets silently. Keep it
    /// above --status-interval-secs.
    #[arg(long, env = "CDC_SOURCE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub source_timeout_secs: u64,
    /// Seconds between heartbeat messages written to the source, so that an idle database does
    /// not pin WAL; 0 disables them.
    #[arg(long, env = "CDC_HEARTBEAT_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub heartbeat_interval_secs: u64,
    /// Prefix of the heartbeat logical-decoding messages (they are not published).
    #[arg(
        long,
        env = "CDC_HEARTBEAT_PREFIX",
        default_value = "cdc_connector.heartbeat"
    )]
    pub heartbeat_prefix: String,
    /// How long a record may wait for the broker before the session restarts from the last
    /// acknowledged position; 0 waits forever (the slot is not advanced meanwhile).
    #[arg(long, env = "CDC_KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=2_147_483_647))]
    pub kafka_message_timeout_ms: u64,
    /// Milliseconds a change record may wait in the producer for others to share its request
    /// to the broker (librdkafka's linger.ms while streaming; a snapshot batches for 25 ms).
    /// Longer costs the connector and the broker less per change, which keeps the tail latency
    /// down on a busy machine; shorter lowers the median latency at low rates. On the 2-core
    /// bench machine (bench/cdc/NOTES.md), 20 ms gave a commit-to-consumer p99 of 31-40 ms at
    /// 10,000 changes/s and 45-124 ms at 30,000, where 5 ms gave 96-196 ms.
    #[arg(long, env = "CDC_KAFKA_LINGER_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub kafka_linger_ms: u64,
    /// Longest pause between retries after a retryable error (unreachable database or broker).
    #[arg(long, env = "CDC_MAX_RETRY_BACKOFF_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_retry_backoff_secs: u64,
    /// When to snapshot the published tables (as READ records) before streaming.
    #[arg(long, env = "CDC_SNAPSHOT_MODE", value_enum, default_value = "initial")]
    pub snapshot_mode: snapshot::SnapshotMode,
    /// Parallel readers of the snapshot, each with its own connection to PostgreSQL.
    #[arg(long, env = "CDC_SNAPSHOT_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub snapshot_workers: u64,
    /// Heap pages (8 KiB each) one snapshot reader fetches at a time; bounds its memory.
    #[arg(long, env = "CDC_SNAPSHOT_CHUNK_PAGES", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub snapshot_chunk_pages: u64,
    /// Rows per chunk of an ad-hoc re-snapshot, requested while streaming with
    /// `SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{"type": "execute-snapshot", "tables": ["public.bookings"]}')`.
    #[arg(long, env = "CDC_RESNAPSHOT_CHUNK_ROWS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub resnapshot_chunk_rows: u64,
    /// How numeric values are written: `text` (the `Numeric` record with the exact decimal
    /// text), `precise` (an Avro decimal: a `Decimal_p_s` fixed branch with the column's
    /// declared precision and scale, `VariableDecimal` where it declares none), `string` (the
    /// exact text as a plain string) or `double` (approximate). NaN and ±Infinity stay
    /// representable in every mode (as `Numeric` text in `text` and `precise`).
    #[arg(long, env = "CDC_DECIMAL_HANDLING", value_enum, default_value = "text")]
    pub decimal_handling: crate::record::decimal::DecimalHandling,
    #[command(flatten)]
    pub filter: privacy::FilterOptions,
}

/// PostgreSQL's longest identifier (NAMEDATALEN - 1 bytes).
const MAX_IDENTIFIER_BYTES: usize = 63;

fn invalid(option: &str, message: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::Config, format!("--{option}"), message)
}

/// An identifier the connector quotes into SQL: never empty, at most 63 bytes, no NUL (which
/// no quoting can carry). Anything else, quotes and semicolons included, is quoted safely.
fn check_identifier(option: &str, what: &str, name: &str) -> Result<(), ConnectorError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES || name.contains('\0') {
        return Err(invalid(
            option,
            format!("{what} {name:?} must be 1 to 63 bytes without NUL characters"),
        ));
    }
    Ok(())
}

impl Options {
    /// Names that end up in SQL: the slot by PostgreSQL's own rule for slot names, the
    /// publication and tables as quotable identifiers, prefixes as text without NUL.
    fn check_identifiers(&self) -> Result<(), ConnectorError> {
        let slot = &self.slot_name;
        if slot.is_empty()
            || slot.len() > MAX_IDENTIFIER_BYTES
            || !slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(invalid(
                "slot-name",
                format!(
                    "{slot:?} is not a replication slot name: 1 to 63 lower-case letters, digits \
                     or underscores"
                ),
            ));
        }
        check_identifier(
            "publication-name",
            "the publication",
            &self.publication_name,
        )?;
        for table in &self.tables {
            let (schema, name) = table.split_once('.').unwrap_or(("public", table));
            if name.contains('.') {
                return Err(invalid(
                    "tables",
                    format!("{table:?} is not schema.table (names with a dot are not supported)"),
                ));
            }
            check_identifier("tables", "the schema of", schema)?;
            check_identifier("tables", "the table", name)?;
        }
        for (option, prefix) in self
            .message_prefixes
            .iter()
            .map(|p| ("message-prefixes", p))
            .chain([("heartbeat-prefix", &self.heartbeat_prefix)])
        {
            if prefix.contains('\0') {
                return Err(invalid(
                    option,
                    format!("{prefix:?} contains a NUL character"),
                ));
            }
        }
        Ok(())
    }

    /// The session configuration; an option that cannot be used is a configuration error naming it.
    pub fn session_config(&self) -> Result<SessionConfig, ConnectorError> {
        self.check_identifiers()?;
        let filter = ChangeFilter::new(&self.filter).map_err(|e| {
            ConnectorError::new(ErrorKind::Config, "the change filter", e.to_string())
        })?;
        Ok(SessionConfig {
            target: PgTarget {
                timeout: Duration::from_secs(self.source_timeout_secs),
                ..PgTarget::parse(&self.pg_url, "cdc-connector")?
            },
            source: SourceSettings {
                slot_name: self.slot_name.clone(),
                publication_name: self.publication_name.clone(),
                tables: self.tables.clone(),
            },
            message_prefixes: self
                .message_prefixes
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect(),
            spill_directory: self.spill_dir.clone(),
            kafka_brokers: self.kafka_brokers.clone(),
            snapshot_mode: self.snapshot_mode,
            snapshot: snapshot::SnapshotSettings {
                workers: usize::try_from(self.snapshot_workers).unwrap_or(1),
                chunk_pages: self.snapshot_chunk_pages,
                resnapshot_chunk_rows: usize::try_from(self.resnapshot_chunk_rows).unwrap_or(1024),
            },
            status_interval: Duration::from_secs(self.status_interval_secs),
            heartbeat_interval: (self.heartbeat_interval_secs > 0)
                .then(|| Duration::from_secs(self.heartbeat_interval_secs)),
            heartbeat_prefix: self.heartbeat_prefix.clone(),
            filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(args: &[&str]) -> String {
        let mut all = vec!["cdc-connector"];
        all.extend_from_slice(args);
        let Err(error) = Options::parse_from(all).session_config() else {
            panic!("{args:?} was accepted");
        };
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        error.to_string()
    }

    #[test]
    fn hostile_names_are_quotable_or_refused_with_the_option_named() {
        // Quotes, semicolons and spaces are quoted into SQL, never refused.
        let options = Options::parse_from([
            "cdc-connector",
            "--publication-name",
            "pub\"; DROP TABLE users; --",
            "--tables",
            "public.Trip; DROP TABLE users; --",
        ]);
        assert!(options.session_config().is_ok());
        for (args, named) in [
            (&["--slot-name", "Slot"][..], "--slot-name"),
            (&["--slot-name", "slot; DROP"][..], "--slot-name"),
            (&["--slot-name", ""][..], "--slot-name"),
            (&["--slot-name", &"s".repeat(64)][..], "--slot-name"),
            (&["--publication-name", "a\0b"][..], "--publication-name"),
            (
                &["--publication-name", &"p".repeat(64)][..],
                "--publication-name",
            ),
            (&["--tables", "public."][..], "--tables"),
            (&["--tables", "a.b.c"][..], "--tables"),
            (&["--heartbeat-prefix", "x\0"][..], "--heartbeat-prefix"),
        ] {
            let message = config_error(args);
            assert!(message.contains(named), "{args:?}: {message}");
        }
    }
}
