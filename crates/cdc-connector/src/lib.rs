//! cdc-connector: PostgreSQL logical replication (pgoutput) to Kafka `topic_cdc_changes`, as
//! Avro `CDCChange` records in the Confluent wire format. A WAL position is confirmed to
//! PostgreSQL only after Kafka acknowledged every record before it, so no change is ever lost.
//!
//! The library is organised by job:
//! - [`options`]: flags, environment and config file; [`error`]: the one error type and its
//!   classification; [`retry`]: the retry policy;
//! - [`source`]: connections to PostgreSQL (replication and SQL), start-up checks, slot and
//!   publication, and the catalog seam;
//! - [`changes`]: pgoutput messages to row changes, transactions, staging of streamed ones;
//! - [`session`]: one replication session, generic over its edges (stream, producer, catalog);
//! - [`sink`]: produce in WAL order and release positions only as Kafka acknowledges;
//! - [`record`], [`metadata`]: the Avro records; [`table_schema`]: the tables' column metadata;
//!   [`privacy`]: table/column filters, masks, hashes;
//! - [`snapshot`], [`snapshot_publish`], [`incremental`]: initial and ad-hoc snapshots;
//! - [`state`]: the connector's durable state in Kafka.

pub mod changes;
pub mod error;
pub mod incremental;
pub mod metadata;
pub mod options;
pub mod privacy;
pub mod record;
pub mod retry;
pub mod session;
pub mod sink;
pub mod snapshot;
pub mod snapshot_publish;
pub mod source;
pub mod state;
pub mod table_schema;
#[cfg(test)]
pub mod test_wire;

use std::time::Duration;

use platform::{kafka, telemetry::Health, topics};

pub use crate::{
    error::{ConnectorError, ErrorKind},
    options::Options,
};
use crate::{
    retry::retry,
    sink::kafka::{Batching, KafkaProducer, ProducerSettings},
};

/// Records handed to the producer and not yet acknowledged: two full batches
/// (`batch.num.messages` 10,000) keep the broker busy, more would only cost memory.
const MAX_QUEUED_RECORDS: u32 = 20_000;

pub fn unix_micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Runs the connector until `shutdown` resolves or a definite error: registers the schemas,
/// creates the connector's topics, then snapshots and streams, retrying transient failures.
pub async fn run(
    options: &Options,
    health: &Health,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ConnectorError> {
    // An option that cannot be used is a configuration error: stop before touching anything.
    let config = options.session_config()?;
    let max_backoff = Duration::from_secs(options.max_retry_backoff_secs);
    // The schemas, the topics and the producer do not depend on each other: set up together,
    // start-up costs the slowest of them instead of their sum. The first definite error ends
    // all three.
    let registering = retry("registering the CDC schemas", max_backoff, health, || {
        metadata::register_schemas(&options.schema_registry_url, options.decimal_handling)
    });
    let provisioning = retry("provisioning Kafka topics", max_backoff, health, || async {
        kafka::provision_topics(&options.kafka_brokers, topics::CONNECTOR)
            .await
            .map_err(|e| {
                let kind = if e.is_retryable() {
                    ErrorKind::KafkaUnavailable
                } else {
                    ErrorKind::KafkaRejected
                };
                ConnectorError::new(kind, "creating the connector's topics", e.to_string())
            })
    });
    let batching = if config.snapshot_mode == snapshot::SnapshotMode::InitialOnly {
        Batching::Bulk
    } else {
        Batching::Streaming
    };
    let creating = retry(
        "creating the Kafka producer",
        max_backoff,
        health,
        || async {
            let settings = ProducerSettings {
                brokers: options.kafka_brokers.clone(),
                message_timeout: Duration::from_millis(options.kafka_message_timeout_ms),
                max_queued_records: MAX_QUEUED_RECORDS,
                streaming_linger: Duration::from_millis(options.kafka_linger_ms),
            };
            KafkaProducer::new(settings, batching)
                .await
                .map_err(|e| ConnectorError::kafka("creating the Kafka producer", &e))
        },
    );
    let (schemas, (), producer) = tokio::try_join!(registering, provisioning, creating)?;
    if config.snapshot_mode == snapshot::SnapshotMode::InitialOnly {
        let rows = retry("snapshotting", max_backoff, health, || {
            snapshot_publish::snapshot_only(&config, producer.clone(), &schemas, health)
        })
        .await?;
        tracing::info!(rows, "initial_only snapshot done; not streaming");
        return Ok(());
    }
    let streaming = retry("streaming changes", max_backoff, health, || {
        session::run(&config, producer.clone(), &schemas, health)
    });
    tokio::select! {
        result = streaming => result,
        () = shutdown => {
            // Records already handed to the producer get a chance to land; whatever does not is
            // replayed from the slot next time, since its position was never confirmed.
            tracing::info!("shutting down");
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
            .await
            .ok();
            Ok(())
        }
    }
}
