//! cdc-connector: PostgreSQL logical replication (pgoutput) to Kafka `topic_cdc_changes`, as
//! Avro `CDCChange` records in the Confluent wire format. A WAL position is confirmed to
//! PostgreSQL only after Kafka acknowledged every record before it, so no change is ever lost.

mod changes;
mod incremental;
mod metadata;
mod privacy;
mod record;
mod session;
mod sink;
mod snapshot;
mod source;
mod state;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use platform::{avro::RegisteredSchema, kafka, registry::RegistryClient, telemetry, topics};

use crate::{
    session::{SessionConfig, SessionError},
    source::{PgTarget, SourceSettings},
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Stream PostgreSQL changes (pgoutput) to Kafka as Avro CDCChange records"
)]
struct Args {
    /// TOML file with defaults for any option below; keys are the long option names
    /// (e.g. `pg-url = "postgres://..."`). Flags and environment variables override it.
    #[arg(long, env = "CDC_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// PostgreSQL URL; the role needs the REPLICATION attribute (and CREATE on the database if
    /// the publication does not exist yet).
    #[arg(
        long,
        env = "CDC_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/travel"
    )]
    pg_url: String,
    /// Logical replication slot the connector owns; created if missing. Its confirmed position
    /// is where a restart resumes.
    #[arg(long, env = "CDC_SLOT_NAME", default_value = "cdc_connector")]
    slot_name: String,
    /// Publication to stream; created for --tables if missing.
    #[arg(long, env = "CDC_PUBLICATION_NAME", default_value = "cdc_publication")]
    publication_name: String,
    /// Tables (schema.table, comma-separated) for the publication when the connector creates it.
    #[arg(
        long,
        env = "CDC_TABLES",
        value_delimiter = ',',
        default_value = "public.users,public.bookings,public.payments"
    )]
    tables: Vec<String>,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "CDC_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// Base URL of the Confluent-compatible schema registry.
    #[arg(
        long,
        env = "CDC_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry_url: String,
    /// Logical decoding messages (pg_logical_emit_message) to publish to topic_cdc_messages, by
    /// prefix: `*` for all, `family*` for a family, or exact prefixes, comma-separated; empty
    /// publishes none. The connector's heartbeats are never published.
    #[arg(
        long,
        env = "CDC_MESSAGE_PREFIXES",
        value_delimiter = ',',
        default_value = "*"
    )]
    message_prefixes: Vec<String>,
    /// Directory where transactions streamed before their commit are staged (on disk, so a
    /// transaction of any size takes bounded memory) [default: the system temporary directory].
    #[arg(long, env = "CDC_SPILL_DIR")]
    spill_dir: Option<std::path::PathBuf>,
    /// Address of the HTTP server for /metrics (Prometheus) and /health.
    #[arg(long, env = "CDC_LISTEN", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Seconds between standby status updates to PostgreSQL (they confirm acknowledged positions).
    #[arg(long, env = "CDC_STATUS_INTERVAL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    status_interval_secs: u64,
    /// Seconds between heartbeat messages written to the source, so that an idle database does
    /// not pin WAL; 0 disables them.
    #[arg(long, env = "CDC_HEARTBEAT_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    heartbeat_interval_secs: u64,
    /// Prefix of the heartbeat logical-decoding messages (they are not published).
    #[arg(
        long,
        env = "CDC_HEARTBEAT_PREFIX",
        default_value = "cdc_connector.heartbeat"
    )]
    heartbeat_prefix: String,
    /// How long a record may wait for the broker before the session restarts from the last
    /// acknowledged position; 0 waits forever (the slot is not advanced meanwhile).
    #[arg(long, env = "CDC_KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=2_147_483_647))]
    kafka_message_timeout_ms: u64,
    /// Longest pause between retries after a retryable error (unreachable database or broker).
    #[arg(long, env = "CDC_MAX_RETRY_BACKOFF_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_retry_backoff_secs: u64,
    /// When to snapshot the published tables (as READ records) before streaming.
    #[arg(long, env = "CDC_SNAPSHOT_MODE", value_enum, default_value = "initial")]
    snapshot_mode: snapshot::SnapshotMode,
    /// Parallel readers of the snapshot, each with its own connection to PostgreSQL.
    #[arg(long, env = "CDC_SNAPSHOT_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    snapshot_workers: u64,
    /// Heap pages (8 KiB each) one snapshot reader fetches at a time; bounds its memory.
    #[arg(long, env = "CDC_SNAPSHOT_CHUNK_PAGES", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    snapshot_chunk_pages: u64,
    /// Rows per chunk of an ad-hoc re-snapshot, requested while streaming with
    /// `SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{"type": "execute-snapshot", "tables": ["public.bookings"]}')`.
    #[arg(long, env = "CDC_RESNAPSHOT_CHUNK_ROWS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    resnapshot_chunk_rows: u64,
    #[command(flatten)]
    filter: privacy::FilterOptions,
}

pub fn unix_micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let args: Args = platform::config::load("CDC_CONFIG")?;
    // A filter that cannot be built is a configuration error: stop before touching anything.
    let filter = privacy::ChangeFilter::new(&args.filter)?;
    let health = telemetry::Health::default();
    health.set(false, "starting");
    let prometheus = telemetry::install_prometheus()?;
    telemetry::serve(args.listen, telemetry::router(prometheus, health.clone()))
        .await
        .context("--listen")?;

    let target = PgTarget::parse(&args.pg_url, "cdc-connector")?;
    let max_backoff = Duration::from_secs(args.max_retry_backoff_secs);
    let schemas = retry("registering the CDC schemas", max_backoff, &health, || {
        register_schemas(&args)
    })
    .await?;
    retry(
        "provisioning Kafka topics",
        max_backoff,
        &health,
        || async {
            kafka::provision_topics(&args.kafka_brokers, topics::ALL)
                .await
                .map_err(|e| {
                    if e.is_retryable() {
                        SessionError::Indefinite(e.to_string())
                    } else {
                        SessionError::Definite(e.to_string())
                    }
                })
        },
    )
    .await?;
    let producer = Arc::new(
        kafka::producer(
            &args.kafka_brokers,
            "cdc-connector",
            Duration::from_millis(args.kafka_message_timeout_ms),
        )
        .context("cannot create the Kafka producer")?,
    );
    let config = SessionConfig {
        target,
        source: SourceSettings {
            slot_name: args.slot_name.clone(),
            publication_name: args.publication_name.clone(),
            tables: args.tables.clone(),
        },
        message_prefixes: args
            .message_prefixes
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect(),
        spill_directory: args.spill_dir.clone(),
        kafka_brokers: args.kafka_brokers.clone(),
        snapshot_mode: args.snapshot_mode,
        snapshot: snapshot::SnapshotSettings {
            workers: usize::try_from(args.snapshot_workers).unwrap_or(1),
            chunk_pages: args.snapshot_chunk_pages,
            resnapshot_chunk_rows: usize::try_from(args.resnapshot_chunk_rows).unwrap_or(1024),
        },
        status_interval: Duration::from_secs(args.status_interval_secs),
        heartbeat_interval: (args.heartbeat_interval_secs > 0)
            .then(|| Duration::from_secs(args.heartbeat_interval_secs)),
        heartbeat_prefix: args.heartbeat_prefix.clone(),
        filter,
    };
    if args.snapshot_mode == snapshot::SnapshotMode::InitialOnly {
        let rows = retry("snapshotting", max_backoff, &health, || {
            snapshot_only(&config, producer.clone(), &schemas, &health)
        })
        .await?;
        tracing::info!(rows, "initial_only snapshot done; not streaming");
        return Ok(());
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let streaming = retry("streaming changes", max_backoff, &health, || {
        session::run(&config, producer.clone(), &schemas, &health)
    });
    tokio::select! {
        result = streaming => result.map_err(anyhow::Error::from),
        () = &mut shutdown => {
            // Records already handed to the producer get a chance to land; whatever does not is
            // replayed from the slot next time, since its position was never confirmed.
            tracing::info!("shutting down");
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&*producer, Duration::from_secs(10))).await.ok();
            Ok(())
        }
    }
}

/// `initial_only`: a consistent snapshot without a slot (nothing will stream after it), taken
/// in a repeatable-read transaction that exports its snapshot to the parallel readers.
async fn snapshot_only(
    config: &SessionConfig,
    producer: Arc<rdkafka::producer::FutureProducer<kafka::LoggingContext>>,
    schemas: &metadata::Schemas,
    health: &telemetry::Health,
) -> Result<u64, SessionError> {
    let indefinite =
        |e: tokio_postgres::Error| SessionError::Indefinite(format!("exporting a snapshot: {e}"));
    let client = source::connect(&config.target).await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(indefinite)?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .map_err(indefinite)?;
    let (snapshot_name, position): (String, String) = (row.get(0), row.get(1));
    let position =
        pgoutput::copy::parse_lsn(&position).map_err(|e| SessionError::Definite(e.to_string()))?;
    health.set(false, "snapshotting");
    let rows = session::publish_snapshot(
        config,
        producer,
        schemas,
        &client,
        &snapshot_name,
        position,
        health,
    )
    .await?;
    client.batch_execute("COMMIT").await.map_err(indefinite)?;
    Ok(rows)
}

async fn register_schemas(args: &Args) -> Result<metadata::Schemas, SessionError> {
    let registry = RegistryClient::new(&args.schema_registry_url);
    let register = |topic: &'static topics::TopicSpec, text: &'static str| {
        let registry = registry.clone();
        async move {
            let schema = platform::schemas::parse(text).map_err(|e| {
                SessionError::Definite(format!(
                    "the schema of {} is not valid Avro: {e}",
                    topic.name
                ))
            })?;
            let subject = platform::registry::value_subject(topic.name);
            match registry.register(&subject, text).await {
                Ok(id) => {
                    tracing::info!(subject, id, "registered schema");
                    Ok(RegisteredSchema { id, schema })
                }
                Err(e) if e.is_retryable() => Err(SessionError::Indefinite(e.to_string())),
                Err(e) => Err(SessionError::Definite(e.to_string())),
            }
        }
    };
    Ok(metadata::Schemas {
        change: register(&topics::CDC_CHANGES, platform::schemas::CDC_CHANGE).await?,
        transaction: register(
            &topics::CDC_TRANSACTIONS,
            platform::schemas::CDC_TRANSACTION,
        )
        .await?,
        message: register(&topics::CDC_MESSAGES, platform::schemas::CDC_MESSAGE).await?,
    })
}

/// Retries `attempt` with exponential backoff while it fails indefinitely; a definite error ends
/// the process with that error.
async fn retry<T, F, Fut>(
    what: &str,
    max_backoff: Duration,
    health: &telemetry::Health,
    mut attempt: F,
) -> Result<T, SessionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SessionError>>,
{
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = tokio::time::Instant::now();
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(SessionError::Definite(message)) => {
                tracing::error!("{what} failed and retrying cannot help: {message}");
                health.set(false, format!("stopped: {message}"));
                return Err(SessionError::Definite(format!("{what}: {message}")));
            }
            Err(SessionError::Indefinite(message)) => {
                metrics::counter!("cdc_errors_total", "kind" => "retryable").increment(1);
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(250);
                }
                tracing::warn!("{what} failed, retrying in {backoff:?}: {message}");
                health.set(false, format!("retrying: {message}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
