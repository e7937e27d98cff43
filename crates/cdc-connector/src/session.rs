//! One replication session: from START_REPLICATION until an error. Reads pgoutput, produces
//! records, and reports to PostgreSQL only positions Kafka has acknowledged.

use std::{sync::Arc, time::Duration};

use pgoutput::{
    copy::{Lsn, ReplicationMessage, decode_copy_data, encode_standby_status_update, format_lsn, unix_micros_to_pg_micros},
    message::decode_message,
};
use platform::{avro::RegisteredSchema, kafka::LoggingContext, telemetry::Health};
use rdkafka::producer::FutureProducer;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{
    changes::{ChangeAssembler, Output},
    record,
    sink::{OrderedSink, SendError},
    source::{
        PgTarget, SourceError, SourceSettings, emit_heartbeat,
        replication::{ReplicationConnection, ReplicationStream},
    },
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
    pub topic: String,
    pub status_interval: Duration,
    /// None disables heartbeats.
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_prefix: String,
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
        format!("publication_names {}", quote_literal(&quote_ident(publication))),
    ];
    if protocol >= 2 {
        options.push("messages 'true'".into());
        options.push("streaming 'on'".into());
    }
    format!("START_REPLICATION SLOT {} LOGICAL 0/0 ({})", quote_ident(slot), options.join(", "))
}

struct Session<'a> {
    config: &'a SessionConfig,
    stream: ReplicationStream,
    sink: OrderedSink,
    schema: &'a RegisteredSchema,
    assembler: ChangeAssembler,
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
    schema: &RegisteredSchema,
    health: &Health,
) -> Result<(), SessionError> {
    let prepared = crate::source::prepare(&config.target, &config.source).await?;
    let protocol = protocol_version(prepared.server_version_num);
    let start = prepared.confirmed_flush_lsn;
    let connection = ReplicationConnection::connect(&config.target).await?;
    let stream = connection
        .start_replication(&start_replication_command(&config.source.slot_name, &config.source.publication_name, protocol))
        .await?;
    tracing::info!(
        slot = config.source.slot_name,
        resume_from = format_lsn(start),
        protocol,
        created = prepared.slot_created,
        "streaming changes"
    );
    health.set(true, "streaming");
    let sink = OrderedSink::new(producer, &config.topic, start, health.clone());
    let heartbeat = spawn_heartbeat(config);
    let mut session = Session {
        config,
        stream,
        sink,
        schema,
        assembler: ChangeAssembler::default(),
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

    async fn handle(&mut self, payload: &[u8], outputs: &mut Vec<Output>) -> Result<(), SessionError> {
        let message = decode_copy_data(payload).map_err(|e| SessionError::Definite(format!("undecodable replication message: {e}")))?;
        match message {
            ReplicationMessage::XLogData { wal_start, wal_end, data, .. } => {
                self.received_lsn = self.received_lsn.max(wal_end).max(wal_start);
                metrics::gauge!("cdc_received_lsn").set(self.received_lsn as f64);
                let logical = decode_message(data, self.assembler.in_stream())
                    .map_err(|e| SessionError::Definite(format!("undecodable pgoutput message at {}: {e}", format_lsn(wal_start))))?;
                self.assembler
                    .apply(logical, wal_start, outputs)
                    .map_err(|e| SessionError::Definite(format!("at {}: {e}", format_lsn(wal_start))))?;
                for output in outputs.drain(..) {
                    self.publish(output).await?;
                }
                metrics::gauge!("cdc_staged_changes").set(self.assembler.staged_changes() as f64);
            }
            ReplicationMessage::PrimaryKeepalive { wal_end, reply_requested, .. } => {
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
        let acked = self.sink.acks().borrow().acked_lsn;
        metrics::gauge!("cdc_lag_bytes").set(self.received_lsn.saturating_sub(acked) as f64);
        metrics::gauge!("cdc_producer_queue_depth").set(f64::from(self.sink.in_flight()));
        Ok(())
    }

    async fn publish(&mut self, output: Output) -> Result<(), SessionError> {
        match output {
            Output::Checkpoint { lsn, commit_time_unix_micros } => {
                self.checkpointed_lsn = self.checkpointed_lsn.max(lsn);
                self.sink.checkpoint(lsn, commit_time_unix_micros);
            }
            Output::Change(change) => {
                let value = record::to_avro(
                    &change,
                    &self.config.target.database,
                    &self.config.source.slot_name,
                    crate::unix_micros_now() / 1000,
                );
                let payload = self
                    .schema
                    .encode(value)
                    .map_err(|e| SessionError::Definite(format!("cannot encode a change of {}: {e}", change.table)))?;
                let key = record::kafka_key(&change);
                loop {
                    match self.sink.try_send(&key, &payload, change.table.clone(), change.operation) {
                        Ok(()) => break,
                        Err(SendError::QueueFull) => {
                            // Kafka is behind: wait for deliveries, but keep PostgreSQL informed
                            // so it does not time the connection out meanwhile.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            if Instant::now() >= self.status_due {
                                self.send_status(false).await?;
                            }
                        }
                        Err(SendError::Failed(error)) => {
                            metrics::counter!("cdc_errors_total", "kind" => "kafka_produce").increment(1);
                            return Err(SessionError::Indefinite(format!("cannot hand a record to the Kafka producer: {error}")));
                        }
                    }
                }
            }
        }
        Ok(())
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
        self.status_due = Instant::now() + self.config.status_interval;
        Ok(())
    }
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
