//! One replication session: from START_REPLICATION until an error. The session reads pgoutput,
//! publishes records, and reports to PostgreSQL only positions Kafka has acknowledged.
//!
//! - this file: configuration, start-up (where streaming begins, the initial snapshot) and the
//!   wiring of the real PostgreSQL and Kafka ends;
//! - [`stream`]: the loop over the replication stream, staged-transaction replay;
//! - [`publish`]: turning outputs into records, backpressure, standby status updates;
//! - [`resnapshot`]: ad-hoc re-snapshot windows requested by signals;
//! - [`heartbeat`]: heartbeat messages that keep an idle slot advancing;
//! - [`slot`]: resume, create, or refuse a lost slot.
//!
//! The session is generic over its three edges (replication stream, record producer, catalog),
//! so `tests.rs` checks its confirmation rules with fakes.

mod heartbeat;
pub(crate) mod publish;
mod resnapshot;
mod slot;
mod stream;
#[cfg(test)]
mod tests;

use std::time::Duration;

use pgoutput::copy::{Lsn, format_lsn};
use platform::telemetry::Health;

use self::slot::SlotPlan;
pub use self::stream::Session;
use crate::{
    error::{ConnectorError, ErrorKind},
    metadata::Schemas,
    privacy::ChangeFilter,
    sink::kafka::KafkaProducer,
    snapshot::{SnapshotMode, SnapshotSettings},
    snapshot_publish,
    source::{PgTarget, SourceSettings, replication::ReplicationConnection, setup::ExistingSlot},
    state::{self, SnapshotState, SnapshotStatus},
};

#[derive(Clone)]
pub struct SessionConfig {
    pub target: PgTarget,
    pub source: SourceSettings,
    /// Logical-message prefixes to publish (`*`, `family*` or exact); the heartbeat prefix never is.
    pub message_prefixes: Vec<String>,
    /// Where streamed transactions are staged until they commit.
    pub spill_directory: Option<std::path::PathBuf>,
    pub kafka_brokers: String,
    pub snapshot_mode: SnapshotMode,
    pub snapshot: SnapshotSettings,
    pub status_interval: Duration,
    /// None disables heartbeats.
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_prefix: String,
    /// Tables and columns to publish, masked and hashed values.
    pub filter: ChangeFilter,
}

/// The newest pgoutput protocol the server speaks: 2 brought streaming of in-progress
/// transactions (PG 14), 3 two-phase (PG 15), 4 parallel streaming (PG 16).
pub fn protocol_version(server_version_num: i32) -> u32 {
    match server_version_num {
        v if v >= 160_000 => 4,
        v if v >= 150_000 => 3,
        v if v >= 140_000 => 2,
        _ => 1,
    }
}

pub fn start_replication_command(slot: &str, publication: &str, protocol: u32) -> String {
    use crate::source::setup::{quote_ident, quote_literal};
    let mut options = vec![
        format!("proto_version '{protocol}'"),
        format!(
            "publication_names {}",
            quote_literal(&quote_ident(publication))
        ),
    ];
    if protocol >= 2 {
        options.push("messages 'true'".into());
        options.push("streaming 'on'".into());
    }
    format!(
        "START_REPLICATION SLOT {} LOGICAL 0/0 ({})",
        quote_ident(slot),
        options.join(", ")
    )
}

/// Runs one session against the real PostgreSQL and Kafka until it fails.
pub async fn run(
    config: &SessionConfig,
    producer: KafkaProducer,
    schemas: &Schemas,
    health: &Health,
) -> Result<(), ConnectorError> {
    let prepared = crate::source::prepare(&config.target, &config.source).await?;
    let protocol = protocol_version(prepared.server_version_num);
    let created = !matches!(prepared.slot, ExistingSlot::Usable(_));
    let start = establish_start(config, &producer, schemas, health, prepared).await?;
    let connection = ReplicationConnection::connect(&config.target).await?;
    let stream = connection
        .start_replication(&start_replication_command(
            &config.source.slot_name,
            &config.source.publication_name,
            protocol,
        ))
        .await?;
    tracing::info!(
        slot = config.source.slot_name,
        resume_from = format_lsn(start),
        protocol,
        created,
        "streaming changes"
    );
    health.set(true, "streaming");
    let catalog = crate::source::catalog::SqlCatalog::connect(&config.target).await?;
    let heartbeat = heartbeat::spawn(config);
    let mut session = Session::new(config, stream, producer, catalog, schemas, start, health);
    let result = session.stream_changes().await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    result
}

/// Where streaming starts: the slot's confirmed position, or a new slot's consistent point
/// after the initial snapshot the mode asks for ([`slot::plan_slot`] decides). A slot whose
/// snapshot never completed (the connector died during it) is dropped and the snapshot redone,
/// never taken for finished; a slot lost after streaming is never silently replaced.
async fn establish_start(
    config: &SessionConfig,
    producer: &KafkaProducer,
    schemas: &Schemas,
    health: &Health,
    prepared: crate::source::setup::PreparedSource,
) -> Result<Lsn, ConnectorError> {
    let slot = &config.source.slot_name;
    let state_key = &state::key(&config.target.database, slot);
    let state_unavailable = |detail: String| {
        ConnectorError::new(ErrorKind::KafkaUnavailable, "connector state", detail)
    };
    let record_state = |state: SnapshotState| async move {
        state::write(&config.kafka_brokers, state_key, &state)
            .await
            .map_err(state_unavailable)
    };
    let recorded = state::read(&config.kafka_brokers, state_key)
        .await
        .map_err(state_unavailable)?;
    let drop_first = match slot::plan_slot(prepared.slot, recorded.as_ref(), config.snapshot_mode) {
        SlotPlan::Resume(lsn) => return Ok(lsn),
        SlotPlan::Lost(why) => {
            metrics::counter!("cdc_slot_lost_total", "action" => "stopped").increment(1);
            return Err(ConnectorError::new(
                ErrorKind::SlotLost,
                format!("replication slot {slot}"),
                why,
            ));
        }
        SlotPlan::Create {
            drop_first,
            lost: Some(why),
        } => {
            tracing::warn!(
                slot,
                why,
                "the slot is lost: creating a new one and taking a new snapshot (--snapshot-mode when_needed); changes between its last confirmed position and the new snapshot arrive as READ records of the rows' current state"
            );
            metrics::counter!("cdc_slot_lost_total", "action" => "resnapshot").increment(1);
            drop_first
        }
        SlotPlan::Create {
            drop_first,
            lost: None,
        } => {
            if drop_first {
                tracing::warn!(
                    slot,
                    ?recorded,
                    "the slot has no completed snapshot (an earlier snapshot was interrupted, or the slot was made without one): dropping it and snapshotting again; READ records of an interrupted attempt carry its own consistent point in change_id"
                );
                metrics::counter!("cdc_snapshot_restarts_total").increment(1);
            }
            drop_first
        }
    };
    if drop_first {
        crate::source::setup::drop_slot(&prepared.client, slot).await?;
    }
    let wants_snapshot = matches!(
        config.snapshot_mode,
        SnapshotMode::Initial | SnapshotMode::WhenNeeded
    );
    let created = crate::source::setup::create_slot(&config.target, slot, wants_snapshot).await?;
    if let Some((exporter, snapshot_name)) = created.exported_snapshot {
        let point = format_lsn(created.consistent_point);
        let record = |status| SnapshotState {
            status,
            consistent_point: point.clone(),
        };
        record_state(record(SnapshotStatus::Started)).await?;
        health.set(false, "snapshotting");
        // The snapshot's records go through a producer of their own that batches for
        // throughput; it is drained and dropped before streaming starts.
        let bulk = producer
            .for_bulk()
            .await
            .map_err(|e| ConnectorError::kafka("creating the snapshot's Kafka producer", &e))?;
        snapshot_publish::publish_snapshot(
            config,
            bulk,
            schemas,
            &prepared.client,
            &snapshot_name,
            created.consistent_point,
            health,
        )
        .await?;
        record_state(record(SnapshotStatus::Complete)).await?;
        // Closing the exporting connection ends the exported snapshot; it is no longer needed.
        drop(exporter);
    } else if config.snapshot_mode == SnapshotMode::NoData {
        let skipped = SnapshotState {
            status: SnapshotStatus::Skipped,
            consistent_point: format_lsn(created.consistent_point),
        };
        record_state(skipped).await?;
    }
    Ok(created.consistent_point)
}

#[cfg(test)]
mod command_tests {
    use super::*;

    #[test]
    fn newest_protocol_per_server_version() {
        assert_eq!(protocol_version(130_011), 1);
        assert_eq!(protocol_version(140_000), 2);
        assert_eq!(protocol_version(150_018), 3);
        assert_eq!(protocol_version(170_002), 4);
    }

    #[test]
    fn start_command_quotes_names_and_enables_streaming() {
        assert_eq!(
            start_replication_command("my slot", "pub\"x", 3),
            "START_REPLICATION SLOT \"my slot\" LOGICAL 0/0 (proto_version '3', publication_names '\"pub\"\"x\"', messages 'true', streaming 'on')"
        );
        assert_eq!(
            start_replication_command("s", "p", 1),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/0 (proto_version '1', publication_names '\"p\"')"
        );
    }
}
