//! The Kafka side: produce records in WAL order and learn, strictly in that order, which
//! positions Kafka has acknowledged. Like Vector's finalizers, a position is released only after
//! every record before it was delivered.
//!
//! The producer is a seam ([`RecordProducer`]): [`kafka::KafkaProducer`] in production, a fake
//! in the unit tests below that acknowledge records out of order, fail one, and check that no
//! position is ever released early. Answers are kept in a [`ledger::Ledger`], a watermark over
//! record sequence numbers that the producer's delivery callback moves: no future, channel
//! message or task wake-up per record.

pub mod kafka;
pub mod ledger;

use std::{collections::HashMap, sync::Arc, time::Duration};

use pgoutput::copy::Lsn;
use platform::telemetry::Health;
use tokio::sync::watch;

use self::ledger::{Ledger, Mark};
use crate::{changes::Operation, error::ConnectorError};

/// Hands records to Kafka and reports each answer to its [`Ledger`]. A clone is the same
/// producer.
pub trait RecordProducer: Clone + Send + Sync + 'static {
    /// Hands one record over, stamped `timestamp_unix_millis` (its Kafka timestamp); Kafka's
    /// answer goes to [`RecordProducer::ledger`] as `ledger.answered(sequence, ..)`, from any
    /// thread, in any order.
    fn send(&self, record: Outgoing<'_>, sequence: u64) -> Result<(), SendError>;

    /// Where this producer reports its answers.
    fn ledger(&self) -> &Arc<Ledger>;

    /// A producer of its own (its own ledger) for replaying committed streamed transactions,
    /// batching for throughput. Records of one key stay in order across the two only if one
    /// is drained before the other takes the next record: the session does so.
    fn for_replay(&self) -> impl Future<Output = Result<Self, ConnectorError>> + Send;
}

/// One record for Kafka.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    /// Its Kafka timestamp (`CreateTime`): when the connector made it, the `timestamp` a
    /// change or message record carries, so a consumer's time index and the record agree,
    /// and librdkafka reads no clock for it.
    pub timestamp_unix_millis: i64,
}

pub enum SendError {
    /// The producer's queue is full: wait for deliveries, then try again.
    QueueFull,
    Failed(ConnectorError),
}

/// How far Kafka has acknowledged, and whether a delivery failed.
#[derive(Debug, Clone, Default)]
pub struct AckState {
    pub acked_lsn: Lsn,
    pub failure: Option<ConnectorError>,
}

/// One replication session's view of the producer: records and checkpoints in WAL order.
pub struct OrderedSink<P: RecordProducer> {
    producer: P,
    session: u64,
    acks: watch::Receiver<AckState>,
    delivered: std::sync::Mutex<DeliveredCounters>,
    stall_watch: tokio::task::JoinHandle<()>,
}

impl<P: RecordProducer> OrderedSink<P> {
    pub fn new(producer: P, start_lsn: Lsn, health: Health) -> Self {
        let (session, acks) = producer.ledger().open(start_lsn);
        let stall_watch = tokio::spawn(warn_while_stalled(producer.ledger().clone(), health));
        Self {
            producer,
            session,
            acks,
            delivered: Default::default(),
            stall_watch,
        }
    }

    pub fn try_send(
        &self,
        record: Outgoing<'_>,
        change: Option<(Arc<str>, Operation)>,
    ) -> Result<(), SendError> {
        let counter = change.map(|change| {
            self.delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .counter(change)
        });
        let ledger = self.producer.ledger();
        let sequence = ledger.register(counter);
        let sent = self.producer.send(record, sequence);
        if sent.is_err() {
            ledger.unregister_last();
        }
        sent
    }

    /// Marks `lsn`: it is acknowledged once everything sent before it is.
    pub fn checkpoint(&self, lsn: Lsn, commit_time_unix_micros: Option<i64>) {
        self.producer.ledger().mark(Mark::Checkpoint {
            lsn,
            commit_time_unix_micros,
        });
    }

    /// Waits until Kafka acknowledged everything sent so far; the failure if a delivery failed.
    pub async fn drained(&self) -> Result<(), ConnectorError> {
        if self.barrier().await.is_ok() {
            return Ok(());
        }
        Err(self.failure())
    }

    /// Answered once Kafka acknowledged everything sent so far; dropped unanswered when a
    /// delivery failed ([`Self::failure`] says which).
    pub fn barrier(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (reached, wait) = tokio::sync::oneshot::channel();
        self.producer.ledger().mark(Mark::Barrier(reached));
        wait
    }

    /// Why a [`Self::barrier`] was dropped unanswered.
    pub fn failure(&self) -> ConnectorError {
        self.acks
            .borrow()
            .failure
            .clone()
            .unwrap_or_else(acknowledgements_ended)
    }

    /// The producer records go to.
    pub fn producer(&self) -> &P {
        &self.producer
    }

    pub fn acks(&self) -> watch::Receiver<AckState> {
        self.acks.clone()
    }

    /// Records handed over whose position is not released yet (the ledger's count).
    pub fn in_flight(&self) -> usize {
        self.producer.ledger().unanswered()
    }
}

/// One counter handle per (table, operation), created once: a registry look-up with label
/// allocation per record would cost more than producing it.
#[derive(Default)]
struct DeliveredCounters {
    /// Per table, its counters by operation, each created on first use. Looked up for every
    /// record, hence foldhash rather than SipHash.
    by_table: HashMap<Arc<str>, [Option<metrics::Counter>; 5], foldhash::fast::RandomState>,
}

impl DeliveredCounters {
    fn counter(&mut self, (table, operation): (Arc<str>, Operation)) -> metrics::Counter {
        let known = self
            .by_table
            .get(&*table)
            .and_then(|by_operation| by_operation[operation as usize].clone());
        if let Some(counter) = known {
            return counter;
        }
        let counter = metrics::counter!(
            "cdc_events_total",
            "table" => table.to_string(),
            "operation" => operation.as_str()
        );
        self.by_table.entry(table).or_default()[operation as usize] = Some(counter.clone());
        counter
    }
}

pub fn acknowledgements_ended() -> ConnectorError {
    ConnectorError::new(
        crate::error::ErrorKind::KafkaUnavailable,
        "tracking acknowledgements",
        "this sink's ledger session was closed or replaced",
    )
}

impl<P: RecordProducer> Drop for OrderedSink<P> {
    fn drop(&mut self) {
        self.stall_watch.abort();
        self.producer.ledger().close(self.session);
    }
}

const SLOW_ACK_WARNING: Duration = Duration::from_secs(10);

/// Says on `/health` while Kafka has answered nothing for [`SLOW_ACK_WARNING`] with records in
/// flight (and that streaming goes on once answers come again). Checked once a second: the
/// delivery path itself keeps no timer.
async fn warn_while_stalled(ledger: Arc<Ledger>, health: Health) {
    let mut clock = ledger::StallClock::default();
    let mut warned_at = Duration::ZERO;
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = every_second.tick().await.into_std();
        match clock.observe(ledger.progress(), now) {
            Some(waited) if waited >= warned_at + SLOW_ACK_WARNING => {
                warned_at = Duration::from_secs(waited.as_secs() / 10 * 10);
                let status = format!(
                    "Kafka has not acknowledged a record for {}s (broker unreachable?); the slot is not advanced meanwhile",
                    warned_at.as_secs()
                );
                tracing::warn!("{status}");
                health.set(false, status);
            }
            Some(waited) if waited >= SLOW_ACK_WARNING => {}
            _ if !warned_at.is_zero() => {
                warned_at = Duration::ZERO;
                health.set(true, "streaming");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests;
