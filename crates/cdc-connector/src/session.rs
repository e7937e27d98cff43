//! One replication session: from START_REPLICATION until an error. Reads pgoutput, produces
//! records, and reports to PostgreSQL only positions Kafka has acknowledged.

use std::{sync::Arc, time::Duration};

use pgoutput::copy::{
    Lsn, ReplicationMessage, decode_copy_data, encode_standby_status_update, format_lsn,
    unix_micros_to_pg_micros,
};
use platform::{avro::RegisteredSchema, kafka::LoggingContext, telemetry::Health, topics};
use rdkafka::producer::FutureProducer;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{
    changes::{ChangeAssembler, ChangeEvent, MessageEvent, Output},
    incremental::{self, IncrementalSnapshot},
    metadata::{self, Schemas, TransactionTally},
    record,
    sink::{OrderedSink, SendError},
    snapshot::{self, SnapshotMode, SnapshotSettings},
    source::{
        PgTarget, SourceError, SourceSettings, emit_heartbeat,
        replication::{ReplicationConnection, ReplicationStream},
    },
    state::{self, SnapshotState, SnapshotStatus},
};

/// Why a session ended. As in Materialize's `ReplicationError`: `Indefinite` errors heal with a
/// retry (the next session resumes from the slot), `Definite` ones need an operator.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Indefinite(String),
    #[error("{0}")]
    Definite(String),
}

impl From<SourceError> for SessionError {
    fn from(error: SourceError) -> Self {
        if error.is_retryable() {
            Self::Indefinite(error.to_string())
        } else {
            Self::Definite(error.to_string())
        }
    }
}

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
    pub filter: crate::privacy::ChangeFilter,
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

struct Session<'a> {
    config: &'a SessionConfig,
    stream: ReplicationStream,
    sink: OrderedSink,
    schemas: &'a Schemas,
    assembler: ChangeAssembler,
    tally: TransactionTally,
    /// An ad-hoc re-snapshot in progress, requested by a signal.
    resnapshot: Option<IncrementalSnapshot>,
    /// An ordinary SQL connection for catalog lookups while streaming.
    catalog: tokio_postgres::Client,
    /// Highest WAL position received; reported as `write`.
    received_lsn: Lsn,
    /// Highest position marked for confirmation once Kafka catches up.
    checkpointed_lsn: Lsn,
    reported_flush: Lsn,
    status_due: Instant,
}

pub async fn run(
    config: &SessionConfig,
    producer: Arc<FutureProducer<LoggingContext>>,
    schemas: &Schemas,
    health: &Health,
) -> Result<(), SessionError> {
    let prepared = crate::source::prepare(&config.target, &config.source).await?;
    let protocol = protocol_version(prepared.server_version_num);
    let created = prepared.confirmed_flush_lsn.is_none();
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
    let sink = OrderedSink::new(producer, start, health.clone());
    let catalog = crate::source::connect(&config.target).await?;
    let heartbeat = spawn_heartbeat(config);
    let mut session = Session {
        config,
        stream,
        sink,
        schemas,
        assembler: ChangeAssembler::new(config.spill_directory.clone()),
        tally: TransactionTally::default(),
        resnapshot: None,
        catalog,
        received_lsn: start,
        checkpointed_lsn: start,
        reported_flush: start,
        status_due: Instant::now() + config.status_interval,
    };
    let result = session.stream_changes().await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    result
}

/// Where streaming starts: the slot's confirmed position, or a new slot's consistent point
/// after the initial snapshot the mode asks for. A slot whose snapshot never completed (the
/// connector died during it) is dropped and the snapshot redone, never taken for finished.
async fn establish_start(
    config: &SessionConfig,
    producer: &Arc<FutureProducer<LoggingContext>>,
    schemas: &Schemas,
    health: &Health,
    prepared: crate::source::setup::PreparedSource,
) -> Result<Lsn, SessionError> {
    let slot = &config.source.slot_name;
    let state_key = state::key(&config.target.database, slot);
    let mut confirmed = prepared.confirmed_flush_lsn;
    if confirmed.is_some() && config.snapshot_mode == SnapshotMode::Initial {
        let recorded = state::read(&config.kafka_brokers, producer, &state_key)
            .await
            .map_err(SessionError::Indefinite)?;
        if !matches!(
            recorded,
            Some(SnapshotState {
                status: SnapshotStatus::Complete,
                ..
            })
        ) {
            tracing::warn!(
                slot,
                ?recorded,
                "the slot has no completed snapshot (an earlier snapshot was interrupted, or the slot was made without one): dropping it and snapshotting again; READ records of an interrupted attempt carry its own consistent point in change_id"
            );
            metrics::counter!("cdc_snapshot_restarts_total").increment(1);
            crate::source::setup::drop_slot(&prepared.client, &config.target, slot).await?;
            confirmed = None;
        }
    }
    if let Some(lsn) = confirmed {
        return Ok(lsn);
    }
    let wants_snapshot = matches!(
        config.snapshot_mode,
        SnapshotMode::Initial | SnapshotMode::WhenNeeded
    );
    let created = crate::source::setup::create_slot(&config.target, slot, wants_snapshot).await?;
    if let Some((exporter, snapshot_name)) = created.exported_snapshot {
        let point = pgoutput::copy::format_lsn(created.consistent_point);
        let record = |status| SnapshotState {
            status,
            consistent_point: point.clone(),
        };
        state::write(producer, &state_key, &record(SnapshotStatus::Started))
            .await
            .map_err(SessionError::Indefinite)?;
        health.set(false, "snapshotting");
        publish_snapshot(
            config,
            producer.clone(),
            schemas,
            &prepared.client,
            &snapshot_name,
            created.consistent_point,
            health,
        )
        .await?;
        state::write(producer, &state_key, &record(SnapshotStatus::Complete))
            .await
            .map_err(SessionError::Indefinite)?;
        // Closing the exporting connection ends the exported snapshot; it is no longer needed.
        drop(exporter);
    }
    Ok(created.consistent_point)
}

/// Reads the published tables in `snapshot_name` and publishes every row as a READ change,
/// returning once Kafka acknowledged them all.
pub async fn publish_snapshot(
    config: &SessionConfig,
    producer: Arc<FutureProducer<LoggingContext>>,
    schemas: &Schemas,
    client: &tokio_postgres::Client,
    snapshot_name: &str,
    consistent_point: Lsn,
    health: &Health,
) -> Result<u64, SessionError> {
    let (tables, types) = snapshot::plan(
        client,
        &config.target,
        &config.source.publication_name,
        &config.filter,
    )
    .await?;
    let sink = OrderedSink::new(producer, consistent_point, health.clone());
    let (changes, mut received) = tokio::sync::mpsc::channel(1024);
    let reading = snapshot::read_tables(
        &config.target,
        snapshot_name,
        consistent_point,
        tables,
        types,
        config.snapshot,
        changes,
    );
    let publishing = async {
        let mut published = 0u64;
        while let Some(mut change) = received.recv().await {
            config.filter.apply(&mut change).map_err(|e| {
                SessionError::Definite(format!("cannot publish a row of {}: {e}", change.table))
            })?;
            let value = record::to_avro(
                &change,
                &config.target.database,
                &config.source.slot_name,
                crate::unix_micros_now() / 1000,
            );
            let payload = encode(
                &schemas.change,
                value,
                &format!("a row of {}", change.table),
            )?;
            let key = record::kafka_key(&change);
            loop {
                match sink.try_send(
                    topics::CDC_CHANGES.name,
                    &key,
                    &payload,
                    Some((change.table.clone(), change.operation)),
                ) {
                    Ok(()) => break,
                    Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(SendError::Failed(error)) => {
                        return Err(SessionError::Indefinite(format!(
                            "cannot hand a snapshot row to the Kafka producer: {error}"
                        )));
                    }
                }
            }
            published += 1;
        }
        Ok(published)
    };
    let (read, published) = tokio::join!(reading, publishing);
    let outcome = read?;
    let published = published?;
    sink.drained().await.map_err(SessionError::Indefinite)?;
    tracing::info!(
        rows = outcome.rows,
        published,
        seconds = outcome.elapsed.as_secs_f64(),
        "snapshot published and acknowledged"
    );
    Ok(published)
}

/// Heartbeats keep the slot advancing while the captured tables are idle but the server writes
/// WAL elsewhere (other databases, unpublished tables), so an idle source never pins WAL.
fn spawn_heartbeat(config: &SessionConfig) -> Option<tokio::task::JoinHandle<()>> {
    let target = config.target.clone();
    let prefix = config.heartbeat_prefix.clone();
    let period = config.heartbeat_interval?;
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut client = None;
        loop {
            ticker.tick().await;
            if client.is_none() {
                client = crate::source::connect(&target).await.ok();
            }
            if let Some(sql) = &client
                && let Err(error) = emit_heartbeat(sql, &prefix).await
            {
                tracing::warn!(%error, "heartbeat failed");
                client = None;
            }
        }
    }))
}

impl Session<'_> {
    async fn stream_changes(&mut self) -> Result<(), SessionError> {
        let mut acks = self.sink.acks();
        let mut outputs = Vec::new();
        loop {
            tokio::select! {
                payload = self.stream.next_copy_data() => {
                    let payload = payload?;
                    self.handle(&payload, &mut outputs).await?;
                }
                changed = acks.changed() => {
                    if changed.is_err() {
                        return Err(SessionError::Indefinite("the acknowledgement tracker stopped".into()));
                    }
                    let state = acks.borrow_and_update().clone();
                    if let Some(failure) = state.failure {
                        return Err(SessionError::Indefinite(failure));
                    }
                    if state.acked_lsn > self.reported_flush {
                        self.send_status(false).await?;
                    }
                }
                _ = tokio::time::sleep_until(self.status_due) => {
                    self.send_status(false).await?;
                }
            }
        }
    }

    async fn handle(
        &mut self,
        payload: &[u8],
        outputs: &mut Vec<Output>,
    ) -> Result<(), SessionError> {
        let message = decode_copy_data(payload)
            .map_err(|e| SessionError::Definite(format!("undecodable replication message: {e}")))?;
        match message {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.received_lsn = self.received_lsn.max(wal_end).max(wal_start);
                if data.first() == Some(&b'R') {
                    self.learn_primary_key(data).await?;
                }
                self.assembler
                    .apply(data, wal_start, outputs)
                    .map_err(|e| {
                        SessionError::Definite(format!("at {}: {e}", format_lsn(wal_start)))
                    })?;
                for output in std::mem::take(outputs) {
                    match output {
                        Output::Replay(mut staged) => {
                            // A committed streamed transaction is read back from disk one change
                            // at a time, each published before the next is decoded.
                            let mut replayed = Vec::new();
                            loop {
                                let more = self
                                    .assembler
                                    .replay_next(&mut staged, &mut replayed)
                                    .map_err(|e| {
                                    SessionError::Definite(format!(
                                        "replaying a streamed transaction: {e}"
                                    ))
                                })?;
                                for output in replayed.drain(..) {
                                    self.publish(output).await?;
                                }
                                if !more {
                                    break;
                                }
                            }
                        }
                        other => self.publish(other).await?,
                    }
                }
            }
            ReplicationMessage::PrimaryKeepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                self.received_lsn = self.received_lsn.max(wal_end);
                if self.assembler.between_transactions() && wal_end > self.checkpointed_lsn {
                    self.checkpointed_lsn = wal_end;
                    self.sink.checkpoint(wal_end, None);
                }
                if reply_requested {
                    self.send_status(false).await?;
                }
            }
        }
        Ok(())
    }

    async fn publish(&mut self, output: Output) -> Result<(), SessionError> {
        let database = &self.config.target.database;
        let now_millis = crate::unix_micros_now() / 1000;
        match output {
            Output::Checkpoint { lsn } => {
                self.checkpointed_lsn = self.checkpointed_lsn.max(lsn);
                self.sink.checkpoint(lsn, None);
            }
            Output::TransactionEnd(end) => {
                if self.tally.event_count() > 0 {
                    let record =
                        self.tally
                            .take_record(&end, database, &self.config.source.slot_name);
                    let payload =
                        encode(&self.schemas.transaction, record, "a transaction boundary")?;
                    self.send(
                        topics::CDC_TRANSACTIONS.name,
                        &end.xid.to_string(),
                        &payload,
                        None,
                    )
                    .await?;
                }
                self.checkpointed_lsn = self.checkpointed_lsn.max(end.end_lsn);
                self.sink
                    .checkpoint(end.end_lsn, Some(end.commit_time_unix_micros));
            }
            Output::Message(message) => {
                if message.prefix == incremental::SIGNAL_PREFIX {
                    return self.on_signal(&message).await;
                }
                if message.prefix == incremental::WATERMARK_PREFIX {
                    return self.on_watermark(&message).await;
                }
                if message.prefix == self.config.heartbeat_prefix
                    || !metadata::prefix_selected(&self.config.message_prefixes, &message.prefix)
                {
                    return Ok(());
                }
                if message.position.is_some() {
                    self.tally.count_message();
                }
                let payload = encode(
                    &self.schemas.message,
                    metadata::message_to_avro(&message, database, now_millis),
                    "a logical message",
                )?;
                self.send(topics::CDC_MESSAGES.name, &message.prefix, &payload, None)
                    .await?;
            }
            Output::Change(change) => {
                if let Some(resnapshot) = &mut self.resnapshot {
                    resnapshot.note_change(&change);
                }
                self.publish_row(change, true).await?;
            }
            Output::Replay(_) => {
                return Err(SessionError::Definite(
                    "a streamed transaction replayed out of place".into(),
                ));
            }
        }
        Ok(())
    }

    /// Filters, encodes and sends one row change; `in_transaction` counts it for the
    /// transaction's boundary record (re-snapshot rows belong to no transaction).
    async fn publish_row(
        &mut self,
        mut change: ChangeEvent,
        in_transaction: bool,
    ) -> Result<(), SessionError> {
        // A skipped change needs no acknowledgement: the checkpoints that follow it advance the
        // slot past it.
        if !self.config.filter.includes_table(&change.table) {
            return Ok(());
        }
        self.config.filter.apply(&mut change).map_err(|e| {
            SessionError::Definite(format!("cannot publish a change of {}: {e}", change.table))
        })?;
        let value = record::to_avro(
            &change,
            &self.config.target.database,
            &self.config.source.slot_name,
            crate::unix_micros_now() / 1000,
        );
        let payload = encode(
            &self.schemas.change,
            value,
            &format!("a change of {}", change.table),
        )?;
        if in_transaction {
            self.tally.count_change(&change.table);
        }
        let key = record::kafka_key(&change);
        self.send(
            topics::CDC_CHANGES.name,
            &key,
            &payload,
            Some((change.table.clone(), change.operation)),
        )
        .await
    }

    /// An `execute-snapshot` signal: re-snapshot the named tables while streaming continues. A
    /// malformed signal is logged and ignored; it must not stop the stream.
    async fn on_signal(&mut self, message: &MessageEvent) -> Result<(), SessionError> {
        let requested = match incremental::parse_signal(&message.content) {
            Ok(tables) => tables,
            Err(error) => {
                tracing::warn!(%error, "ignoring a signal");
                return Ok(());
            }
        };
        let (tables, types) = snapshot::plan(
            &self.catalog,
            &self.config.target,
            &self.config.source.publication_name,
            &self.config.filter,
        )
        .await?;
        let tables: Vec<_> = tables
            .into_iter()
            .filter(|t| requested.iter().any(|r| **r == *t.qualified_name))
            .collect();
        tracing::info!(?requested, found = tables.len(), "re-snapshot requested");
        match &mut self.resnapshot {
            Some(running) => running.add_tables(tables),
            None => {
                let mut resnapshot = IncrementalSnapshot::new(
                    tables,
                    types,
                    self.config.snapshot.resnapshot_chunk_rows,
                );
                if self.open_window(&mut resnapshot).await? {
                    self.resnapshot = Some(resnapshot);
                }
            }
        }
        Ok(())
    }

    async fn on_watermark(&mut self, message: &MessageEvent) -> Result<(), SessionError> {
        let Some(mut resnapshot) = self.resnapshot.take() else {
            return Ok(());
        };
        match resnapshot.on_watermark(&message.content) {
            Some(rows) => {
                metrics::counter!("cdc_resnapshot_rows_total").increment(rows.len() as u64);
                for row in rows {
                    self.publish_row(row, false).await?;
                }
                if self.open_window(&mut resnapshot).await? {
                    self.resnapshot = Some(resnapshot);
                } else {
                    tracing::info!("re-snapshot done");
                }
            }
            None => self.resnapshot = Some(resnapshot),
        }
        Ok(())
    }

    async fn open_window(
        &mut self,
        resnapshot: &mut IncrementalSnapshot,
    ) -> Result<bool, SessionError> {
        resnapshot
            .open_window(&self.catalog)
            .await
            .map_err(|e| match e {
                crate::incremental::ResnapshotError::Query(_) => {
                    SessionError::Indefinite(e.to_string())
                }
                crate::incremental::ResnapshotError::Undecodable { .. } => {
                    SessionError::Definite(e.to_string())
                }
            })
    }

    /// For a REPLICA IDENTITY FULL table, looks its primary key up in the catalog (pgoutput
    /// flags every column as key there). Relation messages are rare: once per table and
    /// schema change.
    async fn learn_primary_key(&mut self, data: &[u8]) -> Result<(), SessionError> {
        let Ok(pgoutput::message::LogicalMessage::Relation(relation)) =
            pgoutput::message::decode_message(data, self.assembler.in_stream())
        else {
            return Ok(());
        };
        if !matches!(
            relation.replica_identity,
            pgoutput::message::ReplicaIdentity::Full
        ) {
            return Ok(());
        }
        let rows = self
            .catalog
            .query(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = $1::oid AND i.indisprimary",
                &[&relation.id],
            )
            .await
            .map_err(|e| SessionError::Indefinite(format!("looking up the primary key of {}.{}: {e}", relation.namespace, relation.name)))?;
        self.assembler
            .set_primary_key(relation.id, rows.iter().map(|row| row.get(0)).collect());
        Ok(())
    }

    async fn send(
        &mut self,
        topic: &str,
        key: &str,
        payload: &[u8],
        change: Option<(Arc<str>, crate::changes::Operation)>,
    ) -> Result<(), SessionError> {
        loop {
            match self.sink.try_send(topic, key, payload, change.clone()) {
                Ok(()) => {
                    // Replaying a large streamed transaction publishes for minutes without
                    // reading the stream: PostgreSQL must still hear from us, or its
                    // wal_sender_timeout ends the connection.
                    if Instant::now() >= self.status_due {
                        self.send_status(false).await?;
                    }
                    return Ok(());
                }
                Err(SendError::QueueFull) => {
                    // Kafka is behind: wait for deliveries, but keep PostgreSQL informed so it
                    // does not time the connection out meanwhile.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if Instant::now() >= self.status_due {
                        self.send_status(false).await?;
                    }
                }
                Err(SendError::Failed(error)) => {
                    metrics::counter!("cdc_errors_total", "kind" => "kafka_produce").increment(1);
                    return Err(SessionError::Indefinite(format!(
                        "cannot hand a record to the Kafka producer: {error}"
                    )));
                }
            }
        }
    }

    /// Standby status update: `write` is what was received, `flush` and `apply` what Kafka has
    /// acknowledged — the only position PostgreSQL may release WAL up to.
    async fn send_status(&mut self, reply_requested: bool) -> Result<(), SessionError> {
        let acked = self.sink.acks().borrow().acked_lsn;
        let update = encode_standby_status_update(
            self.received_lsn.max(acked),
            acked,
            acked,
            unix_micros_to_pg_micros(crate::unix_micros_now()),
            reply_requested,
        );
        self.stream.send_copy_data(&update).await?;
        self.reported_flush = acked;
        // Gauges follow the status updates (every acknowledgement or status interval) rather
        // than every message, which would put registry look-ups on the hot path.
        metrics::gauge!("cdc_received_lsn").set(self.received_lsn as f64);
        metrics::gauge!("cdc_lag_bytes").set(self.received_lsn.saturating_sub(acked) as f64);
        metrics::gauge!("cdc_producer_queue_depth").set(f64::from(self.sink.in_flight()));
        metrics::gauge!("cdc_staged_messages").set(self.assembler.staged_messages() as f64);
        self.status_due = Instant::now() + self.config.status_interval;
        Ok(())
    }
}

fn encode(
    schema: &RegisteredSchema,
    value: apache_avro::types::Value,
    what: &str,
) -> Result<Vec<u8>, SessionError> {
    schema
        .encode(value)
        .map_err(|e| SessionError::Definite(format!("cannot encode {what}: {e}")))
}

#[cfg(test)]
mod tests {
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
