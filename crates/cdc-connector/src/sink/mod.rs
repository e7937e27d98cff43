//! The Kafka side: produce records in WAL order and learn, strictly in that order, which
//! positions Kafka has acknowledged. Like Vector's finalizers, a position is released only after
//! every record before it was delivered.
//!
//! The producer is a seam ([`RecordProducer`]): [`kafka::KafkaProducer`] in production, a fake
//! in the unit tests below that acknowledge records out of order, fail one, and check that no
//! position is ever released early.

pub mod kafka;

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use pgoutput::copy::Lsn;
use platform::telemetry::Health;
use tokio::sync::{mpsc, watch};

use crate::{changes::Operation, error::ConnectorError};

/// Hands records to Kafka; each send returns a future that resolves with Kafka's answer.
pub trait RecordProducer: Send + Sync + 'static {
    type Delivery: Future<Output = Result<(), ConnectorError>> + Send + Unpin + 'static;

    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<Self::Delivery, SendError>;

    /// Records handed over and not yet answered.
    fn in_flight(&self) -> i32;
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

enum Pending<D> {
    Delivery {
        delivery: D,
        /// Row changes are counted by table and operation once delivered.
        change: Option<(Arc<str>, Operation)>,
    },
    Checkpoint {
        lsn: Lsn,
        commit_time_unix_micros: Option<i64>,
    },
    /// Answered once everything sent before it was delivered.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// One replication session's view of the producer: records and checkpoints in WAL order.
pub struct OrderedSink<P: RecordProducer> {
    producer: P,
    pending: mpsc::UnboundedSender<Pending<P::Delivery>>,
    acks: watch::Receiver<AckState>,
    tracker: tokio::task::JoinHandle<()>,
}

impl<P: RecordProducer> OrderedSink<P> {
    pub fn new(producer: P, start_lsn: Lsn, health: Health) -> Self {
        let (pending, queue) = mpsc::unbounded_channel();
        let (ack_sender, acks) = watch::channel(AckState {
            acked_lsn: start_lsn,
            failure: None,
        });
        let tracker = tokio::spawn(track_acknowledgements(queue, ack_sender, health));
        Self {
            producer,
            pending,
            acks,
            tracker,
        }
    }

    pub fn try_send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        change: Option<(Arc<str>, Operation)>,
    ) -> Result<(), SendError> {
        let delivery = self.producer.send(topic, key, payload)?;
        // The tracker only stops with the session, so a closed channel cannot lose anything.
        let _ = self.pending.send(Pending::Delivery { delivery, change });
        Ok(())
    }

    /// Marks `lsn`: it is acknowledged once everything sent before it is.
    pub fn checkpoint(&self, lsn: Lsn, commit_time_unix_micros: Option<i64>) {
        let _ = self.pending.send(Pending::Checkpoint {
            lsn,
            commit_time_unix_micros,
        });
    }

    /// Waits until Kafka acknowledged everything sent so far; the failure if a delivery failed.
    pub async fn drained(&self) -> Result<(), ConnectorError> {
        let (reached, wait) = tokio::sync::oneshot::channel();
        let _ = self.pending.send(Pending::Barrier(reached));
        if wait.await.is_ok() {
            return Ok(());
        }
        Err(self
            .acks
            .borrow()
            .failure
            .clone()
            .unwrap_or_else(tracker_stopped))
    }

    pub fn acks(&self) -> watch::Receiver<AckState> {
        self.acks.clone()
    }

    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight()
    }
}

pub fn tracker_stopped() -> ConnectorError {
    ConnectorError::new(
        crate::error::ErrorKind::KafkaUnavailable,
        "tracking acknowledgements",
        "the acknowledgement tracker stopped",
    )
}

impl<P: RecordProducer> Drop for OrderedSink<P> {
    fn drop(&mut self) {
        self.tracker.abort();
    }
}

const SLOW_ACK_WARNING: Duration = Duration::from_secs(10);

async fn track_acknowledgements<D>(
    mut queue: mpsc::UnboundedReceiver<Pending<D>>,
    acks: watch::Sender<AckState>,
    health: Health,
) where
    D: Future<Output = Result<(), ConnectorError>> + Unpin,
{
    // One counter handle per (table, operation), looked up once: a registry look-up with label
    // allocation per record would cost more than producing it.
    let mut delivered: HashMap<(Arc<str>, Operation), metrics::Counter> = HashMap::new();
    while let Some(pending) = queue.recv().await {
        match pending {
            Pending::Delivery {
                mut delivery,
                change,
            } => {
                // Behind a backlog the answer is usually in already: no timer for it then.
                let answer = match futures::FutureExt::now_or_never(&mut delivery) {
                    Some(answer) => answer,
                    None => answer_or_warn(&mut delivery, &health).await,
                };
                if let Err(failure) = answer {
                    acks.send_modify(|state| state.failure = Some(failure));
                    return;
                }
                if let Some(change) = change {
                    delivered
                        .entry(change)
                        .or_insert_with_key(|(table, operation)| {
                            metrics::counter!("cdc_events_total", "table" => table.to_string(), "operation" => operation.as_str())
                        })
                        .increment(1);
                }
            }
            Pending::Barrier(reached) => {
                let _ = reached.send(());
            }
            Pending::Checkpoint {
                lsn,
                commit_time_unix_micros,
            } => {
                acks.send_modify(|state| state.acked_lsn = state.acked_lsn.max(lsn));
                metrics::gauge!("cdc_acked_lsn").set(lsn as f64);
                let lag_ms = commit_time_unix_micros
                    .map(|commit| (crate::unix_micros_now() - commit).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("cdc_lag_milliseconds").set(lag_ms);
            }
        }
    }
}

/// Waits for a delivery's answer, saying on `/health` while it takes longer than
/// [`SLOW_ACK_WARNING`] (and that streaming goes on once it came).
async fn answer_or_warn<D>(delivery: &mut D, health: &Health) -> Result<(), ConnectorError>
where
    D: Future<Output = Result<(), ConnectorError>> + Unpin,
{
    let mut waited = Duration::ZERO;
    loop {
        match tokio::time::timeout(SLOW_ACK_WARNING, &mut *delivery).await {
            Ok(answer) => {
                if !waited.is_zero() {
                    health.set(true, "streaming");
                }
                return answer;
            }
            Err(_) => {
                waited += SLOW_ACK_WARNING;
                let status = format!(
                    "Kafka has not acknowledged a record for {}s (broker unreachable?); the slot is not advanced meanwhile",
                    waited.as_secs()
                );
                tracing::warn!("{status}");
                health.set(false, status);
            }
        }
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests;
