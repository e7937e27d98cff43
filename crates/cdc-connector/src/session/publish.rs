//! From outputs to records: filter, encode, hand to the producer with backpressure, and keep
//! PostgreSQL informed with standby status updates that confirm only what Kafka acknowledged.

use std::{sync::Arc, time::Duration};

use pgoutput::copy::{encode_standby_status_update, unix_micros_to_pg_micros};
use platform::{avro::RegisteredSchema, topics};
use tokio::time::Instant;

use super::stream::Session;
use crate::{
    changes::{ChangeEvent, Operation, Output},
    error::{ConnectorError, ErrorKind},
    incremental,
    metadata::{self, ChangeSchema},
    record,
    sink::{Outgoing, RecordProducer, SendError},
    source::{catalog::Catalog, replication::ReplicationStream},
};

/// Records sent between two looks at the clock for a due status update.
const STATUS_CHECK_EVERY: u32 = 128;

impl<S, P, C> Session<'_, S, P, C>
where
    S: ReplicationStream,
    P: RecordProducer,
    C: Catalog,
{
    pub(super) async fn publish(&mut self, output: Output) -> Result<(), ConnectorError> {
        let database = &self.config.target.database;
        match output {
            Output::Checkpoint { lsn } => {
                self.checkpointed_lsn = self.checkpointed_lsn.max(lsn);
                self.sink.checkpoint(lsn, None);
            }
            Output::TransactionEnd(end) => {
                if self.tally.event_count() > 0 {
                    self.record_buffer.clear();
                    self.tally.write_record(
                        &self.schemas.transaction,
                        &end,
                        database,
                        &self.config.source.slot_name,
                        &mut self.record_buffer,
                    );
                    self.key_buffer.clear();
                    self.key_buffer
                        .push_str(itoa::Buffer::new().format(end.xid));
                    self.send_record_buffer(topics::CDC_TRANSACTIONS.name, None)
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
                    metadata::message_to_avro(&message, database, self.clock_unix_millis),
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
                return Err(ConnectorError::new(
                    ErrorKind::Protocol,
                    "replaying a streamed transaction",
                    "a replay was requested out of place",
                ));
            }
        }
        Ok(())
    }

    /// Filters, encodes and sends one row change; `in_transaction` counts it for the
    /// transaction's boundary record (re-snapshot rows belong to no transaction).
    pub(super) async fn publish_row(
        &mut self,
        mut change: ChangeEvent,
        in_transaction: bool,
    ) -> Result<(), ConnectorError> {
        // A change of a table the filter excludes needs no acknowledgement: the checkpoints
        // that follow it advance the slot past it.
        if !self.config.filter.includes_table(&change.table) {
            self.assembler.recycle(change);
            return Ok(());
        }
        self.record_buffer.clear();
        self.key_buffer.clear();
        encode_change(
            self.config,
            &self.change_schema,
            &mut change,
            "a change",
            self.clock_unix_millis,
            &mut self.key_buffer,
            &mut self.record_buffer,
        )?;
        if in_transaction {
            self.tally.count_change(&change.table);
        }
        self.send_record_buffer(
            topics::CDC_CHANGES.name,
            Some((change.table.clone(), change.operation)),
        )
        .await?;
        self.assembler.recycle(change);
        Ok(())
    }

    /// [`Self::send`] of the record encoded in `record_buffer` with the key in `key_buffer`,
    /// both lent out meanwhile (`send` needs the whole session) and kept for the next record.
    async fn send_record_buffer(
        &mut self,
        topic: &str,
        change: Option<(Arc<str>, Operation)>,
    ) -> Result<(), ConnectorError> {
        let payload = std::mem::take(&mut self.record_buffer);
        let key = std::mem::take(&mut self.key_buffer);
        let sent = self.send(topic, &key, &payload, change).await;
        self.record_buffer = payload;
        self.key_buffer = key;
        sent
    }

    pub(super) async fn send(
        &mut self,
        topic: &str,
        key: &str,
        payload: &[u8],
        change: Option<(Arc<str>, Operation)>,
    ) -> Result<(), ConnectorError> {
        let record = Outgoing {
            topic,
            key,
            payload,
            // The clock the record was encoded with: its `timestamp` field.
            timestamp_unix_millis: self.clock_unix_millis,
        };
        loop {
            match self.sink.try_send(record, change.clone()) {
                Ok(()) => {
                    // Replaying a large streamed transaction publishes for minutes without
                    // reading the stream: PostgreSQL must still hear from us, or its
                    // wal_sender_timeout ends the connection. The clocks are read every
                    // STATUS_CHECK_EVERY records, a few milliseconds apart at full speed.
                    self.sent_since_status_check += 1;
                    if self.sent_since_status_check >= STATUS_CHECK_EVERY {
                        self.sent_since_status_check = 0;
                        self.clock_unix_millis = crate::unix_micros_now() / 1000;
                        if Instant::now() >= self.status_due {
                            self.send_status(false).await?;
                        }
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
                Err(SendError::Failed(error)) => return Err(error),
            }
        }
    }

    /// Standby status update: `write` is what was received, `flush` and `apply` what Kafka has
    /// acknowledged — the only position PostgreSQL may release WAL up to.
    pub(super) async fn send_status(
        &mut self,
        reply_requested: bool,
    ) -> Result<(), ConnectorError> {
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
        metrics::gauge!("cdc_producer_queue_depth").set(self.sink.in_flight() as f64);
        metrics::gauge!("cdc_staged_messages").set(self.assembler.staged_messages() as f64);
        self.status_due = Instant::now() + self.config.status_interval;
        Ok(())
    }
}

/// Filters a row change and encodes it: appends its Kafka key to `key` and its
/// Confluent-framed Avro value to `payload` (partial ones where it fails). `now_unix_millis`
/// is its `timestamp`, when the connector handled it.
pub fn encode_change(
    config: &super::SessionConfig,
    schema: &ChangeSchema,
    change: &mut ChangeEvent,
    what: &str,
    now_unix_millis: i64,
    key: &mut String,
    payload: &mut Vec<u8>,
) -> Result<(), ConnectorError> {
    config.filter.apply(change).map_err(|e| {
        ConnectorError::new(
            ErrorKind::Unpublishable,
            format!("{what} of {}", change.table),
            e.to_string(),
        )
    })?;
    let key_start = key.len();
    record::write_kafka_key(change, key);
    let key = &key[key_start..];
    // Straight into Avro binary (record::binary), checked against apache-avro by a property test.
    record::encode_change(
        change,
        key,
        &schema.layout,
        schema.id,
        &config.target.database,
        &config.source.slot_name,
        now_unix_millis,
        payload,
    )
    .map_err(|e| {
        ConnectorError::new(
            ErrorKind::Unpublishable,
            format!("{what} of {} with key {key}", change.table),
            e,
        )
    })
}

pub fn encode(
    schema: &RegisteredSchema,
    value: apache_avro::types::Value,
    what: &str,
) -> Result<Vec<u8>, ConnectorError> {
    schema.encode(value).map_err(|e| {
        ConnectorError::new(
            ErrorKind::Unpublishable,
            format!("encoding {what}"),
            e.to_string(),
        )
    })
}
