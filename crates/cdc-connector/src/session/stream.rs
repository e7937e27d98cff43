//! The session's loop: read the replication stream, decode, publish, and confirm positions as
//! Kafka acknowledges them. A streamed transaction that commits is replayed from its staging file
//! one change at a time, through a producer of its own that compresses its full batches.

use pgoutput::copy::{Lsn, ReplicationMessage, decode_copy_data, format_lsn};
use platform::telemetry::Health;
use tokio::time::Instant;

use super::SessionConfig;
use crate::{
    changes::{ChangeAssembler, Output, StagedTransaction},
    error::{ConnectorError, ErrorKind},
    incremental::IncrementalSnapshot,
    metadata::{ChangeSchema, Schemas, TransactionTally},
    sink::{OrderedSink, RecordProducer, acknowledgements_ended},
    source::{catalog::Catalog, replication::ReplicationStream},
};

pub struct Session<'a, S, P: RecordProducer, C> {
    pub(super) config: &'a SessionConfig,
    pub(super) stream: S,
    pub(super) sink: OrderedSink<P>,
    /// The producer committed streamed transactions are replayed through, made at the first.
    replay_producer: Option<P>,
    health: Health,
    pub(super) schemas: &'a Schemas,
    /// The change schema this session encodes with (it grows in precise decimal mode).
    pub(super) change_schema: std::sync::Arc<ChangeSchema>,
    pub(super) assembler: ChangeAssembler,
    pub(super) tally: TransactionTally,
    /// The record being encoded: one buffer for the session (librdkafka copies each payload).
    pub(super) record_buffer: Vec<u8>,
    /// The Kafka key of the record in `record_buffer`, reused the same way.
    pub(super) key_buffer: String,
    /// An ad-hoc re-snapshot in progress, requested by a signal.
    pub(super) resnapshot: Option<IncrementalSnapshot>,
    /// Catalog look-ups while streaming, over an ordinary SQL connection.
    pub(super) catalog: C,
    /// Highest WAL position received; reported as `write`.
    pub(super) received_lsn: Lsn,
    /// Highest position marked for confirmation once Kafka catches up.
    pub(super) checkpointed_lsn: Lsn,
    pub(super) reported_flush: Lsn,
    pub(super) status_due: Instant,
    /// Records sent since the clocks were last read while publishing.
    pub(super) sent_since_status_check: u32,
    /// The wall clock when the last read of the stream came in (refreshed while a replay
    /// publishes): the `timestamp` of the changes that read brought, when the connector
    /// handled them, without a clock read per change.
    pub(super) clock_unix_millis: i64,
    /// Since when the session has been waiting on the stream: when it last finished handling
    /// what a read brought. A stream silent for half the source timeout from there is asked for
    /// a reply, silent for all of it is taken for lost. Counted from the end of the handling,
    /// not from the read: replaying a large streamed transaction keeps the session from
    /// reading for minutes, and that is not the server's silence (found: a 10M-row
    /// transaction's replay of over a minute was followed at once by "no answer from the
    /// server for 60 s", the reply it had just asked for not yet read).
    pub(super) listening_since: Instant,
    pub(super) reply_requested: bool,
    /// Table-metadata records this session has published and Kafka acknowledged.
    pub(super) published_table_schemas: std::collections::HashSet<std::sync::Arc<str>>,
}

impl<'a, S, P, C> Session<'a, S, P, C>
where
    S: ReplicationStream,
    P: RecordProducer,
    C: Catalog,
{
    pub fn new(
        config: &'a SessionConfig,
        stream: S,
        producer: P,
        catalog: C,
        schemas: &'a Schemas,
        start: Lsn,
        health: &Health,
    ) -> Self {
        Self {
            config,
            stream,
            sink: OrderedSink::new(producer, start, health.clone()),
            replay_producer: None,
            health: health.clone(),
            schemas,
            change_schema: schemas.change(),
            assembler: ChangeAssembler::new(config.spill_directory.clone()),
            tally: TransactionTally::default(),
            record_buffer: Vec::with_capacity(1024),
            key_buffer: String::with_capacity(128),
            resnapshot: None,
            catalog,
            received_lsn: start,
            checkpointed_lsn: start,
            reported_flush: start,
            status_due: Instant::now() + config.status_interval,
            sent_since_status_check: 0,
            clock_unix_millis: crate::unix_micros_now() / 1000,
            listening_since: Instant::now(),
            reply_requested: false,
            published_table_schemas: Default::default(),
        }
    }

    /// Streams until an error: the stream's, a failed delivery, or a change that cannot be
    /// published.
    pub async fn stream_changes(&mut self) -> Result<(), ConnectorError> {
        let mut acks = self.sink.acks();
        let mut outputs = Vec::new();
        loop {
            let silence_deadline = self.silence_deadline();
            tokio::select! {
                payload = self.stream.next_copy_data() => {
                    let payload = payload?;
                    self.clock_unix_millis = crate::unix_micros_now() / 1000;
                    self.reply_requested = false;
                    self.handle(&payload, &mut outputs).await?;
                    // The rest of what that read brought, before the timers are looked at
                    // again: one pass through the select per read, not per message.
                    while let Some(payload) = self.stream.buffered_copy_data()? {
                        self.handle(&payload, &mut outputs).await?;
                    }
                    self.listening_since = Instant::now();
                }
                _ = tokio::time::sleep_until(silence_deadline) => {
                    if self.reply_requested {
                        return Err(self.config.target.no_answer("reading the replication stream"));
                    }
                    // The server answers a status update that asks for a reply at once, so
                    // a live connection is never silent for the other half.
                    self.send_status(true).await?;
                    self.reply_requested = true;
                }
                changed = acks.changed() => {
                    if changed.is_err() {
                        return Err(acknowledgements_ended());
                    }
                    let state = acks.borrow_and_update().clone();
                    if let Some(failure) = state.failure {
                        return Err(failure);
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

    /// When silence on the stream calls for the next step: a reply request at half the source
    /// timeout, giving up at the whole.
    fn silence_deadline(&self) -> Instant {
        let timeout = self.config.target.timeout;
        let waited = if self.reply_requested {
            timeout
        } else {
            timeout / 2
        };
        self.listening_since + waited
    }

    async fn handle(
        &mut self,
        payload: &[u8],
        outputs: &mut Vec<Output>,
    ) -> Result<(), ConnectorError> {
        let message = decode_copy_data(payload).map_err(|e| {
            ConnectorError::new(
                ErrorKind::Undecodable,
                "reading the replication stream",
                e.to_string(),
            )
        })?;
        match message {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.received_lsn = self.received_lsn.max(wal_end).max(wal_start);
                if data.first() == Some(&b'R') {
                    self.describe_relation(data, wal_start).await?;
                }
                self.assembler
                    .apply(data, wal_start, outputs)
                    .map_err(|e| {
                        e.classify()
                            .within(&format!("at {}", format_lsn(wal_start)))
                    })?;
                for output in std::mem::take(outputs) {
                    match output {
                        Output::Replay(mut staged) => self.replay(&mut staged).await?,
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
                // Inside a transaction (or a streamed chunk) a later message still belongs to
                // what came before: only a keepalive between transactions may be confirmed.
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

    /// Publishes a committed streamed transaction, read back from disk one change at a time
    /// (each published before the next is decoded), through the replay producer. Records of
    /// one key must reach Kafka in WAL order, which two producers keep only one at a time:
    /// everything before the transaction is acknowledged before its first record goes to the
    /// replay producer, and all of its records before the streaming producer takes the next.
    /// Each wait is one batch's round trip, once per transaction of at least
    /// `logical_decoding_work_mem`.
    async fn replay(&mut self, staged: &mut StagedTransaction) -> Result<(), ConnectorError> {
        self.drain().await?;
        let producer = match self.replay_producer.take() {
            Some(producer) => producer,
            None => self.sink.producer().for_replay().await?,
        };
        let acked = self.sink.acks().borrow().acked_lsn;
        let replay_sink = OrderedSink::new(producer.clone(), acked, self.health.clone());
        let streaming_sink = std::mem::replace(&mut self.sink, replay_sink);
        let replayed = match self.publish_staged(staged).await {
            Ok(()) => self.drain().await,
            failed => failed,
        };
        // The replay's sink ends here (its ledger session with it), whatever happened.
        self.sink = streaming_sink;
        self.replay_producer = Some(producer);
        replayed?;
        // What the replay confirmed, now acknowledged, on the sink the session watches.
        self.sink.checkpoint(self.checkpointed_lsn, None);
        Ok(())
    }

    async fn publish_staged(
        &mut self,
        staged: &mut StagedTransaction,
    ) -> Result<(), ConnectorError> {
        let mut replayed = Vec::new();
        loop {
            let more = self
                .assembler
                .replay_next(staged, &mut replayed)
                .map_err(|e| e.classify().within("replaying a streamed transaction"))?;
            for output in replayed.drain(..) {
                self.publish(output).await?;
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Waits until Kafka acknowledged everything the sink was handed, sending status updates
    /// meanwhile so that PostgreSQL does not time the connection out.
    async fn drain(&mut self) -> Result<(), ConnectorError> {
        let mut reached = self.sink.barrier();
        loop {
            tokio::select! {
                answered = &mut reached => {
                    return answered.map_err(|_| self.sink.failure());
                }
                _ = tokio::time::sleep_until(self.status_due) => {
                    self.send_status(false).await?;
                }
            }
        }
    }

    /// What a Relation message (once per table and schema change, before its first row)
    /// needs beyond itself: the table's catalog description (enums and user ranges for the
    /// decoder, and its metadata record, acknowledged by Kafka before the first change that
    /// names it), in precise decimal mode the schema branches of its decimals, and for a
    /// REPLICA IDENTITY FULL table its primary key (pgoutput flags every column as key there).
    async fn describe_relation(&mut self, data: &[u8], at: Lsn) -> Result<(), ConnectorError> {
        let Ok(pgoutput::message::LogicalMessage::Relation(relation)) =
            pgoutput::message::decode_message(data, self.assembler.in_stream())
        else {
            return Ok(());
        };
        let table: std::sync::Arc<str> = format!("{}.{}", relation.namespace, relation.name).into();
        if !self.config.filter.includes_table(&table) {
            return Ok(());
        }
        let within = |e: ConnectorError| e.within(&format!("table {table}"));
        let catalog = self
            .catalog
            .describe_table(relation.id)
            .await
            .map_err(within)?;
        catalog.teach(self.assembler.types_mut());
        self.change_schema = self
            .schemas
            .for_relations([&relation], self.assembler.types())
            .await
            .map_err(within)?;
        let full_identity_key = if matches!(
            relation.replica_identity,
            pgoutput::message::ReplicaIdentity::Full
        ) {
            let columns = self
                .catalog
                .primary_key(relation.id)
                .await
                .map_err(within)?;
            self.assembler.set_primary_key(relation.id, columns.clone());
            Some(columns)
        } else {
            None
        };
        let schema = crate::table_schema::describe(
            &table,
            &relation,
            &catalog,
            self.assembler.types(),
            &self.config.filter,
            |name| match &full_identity_key {
                Some(key) => key.iter().any(|k| k == name),
                None => relation
                    .columns
                    .iter()
                    .any(|c| c.is_key && *c.name == *name),
            },
        )
        .map_err(|e| {
            ConnectorError::new(
                ErrorKind::Unpublishable,
                format!("the metadata of {table}"),
                e.to_string(),
            )
        })?;
        self.publish_table_schemas([&schema], at).await?;
        self.assembler.set_table_schema(relation.id, schema.id);
        Ok(())
    }

    /// Publishes the metadata records this session has not published yet, and waits until
    /// Kafka acknowledged them (and everything before them): a change is produced only after
    /// the metadata it names is stored. `at` is the WAL position they were read at.
    pub(super) async fn publish_table_schemas<'t>(
        &mut self,
        schemas: impl IntoIterator<Item = &'t crate::table_schema::TableSchema>,
        at: Lsn,
    ) -> Result<(), ConnectorError> {
        let mut sent = false;
        for schema in schemas {
            if self.published_table_schemas.contains(&schema.id) {
                continue;
            }
            let payload = self.schemas.encode_table_schema(schema, at)?;
            self.send(
                platform::topics::CDC_TABLE_SCHEMAS.name,
                &schema.id,
                &payload,
                None,
            )
            .await?;
            self.published_table_schemas.insert(schema.id.clone());
            sent = true;
        }
        if sent {
            self.drain().await?;
        }
        Ok(())
    }
}
