//! The Kafka side: produce records in WAL order and learn, strictly in that order, which
//! positions Kafka has acknowledged. Like Vector's finalizers, a position is released only after
//! every record before it was delivered.

use std::{sync::Arc, time::Duration};

use pgoutput::copy::Lsn;
use platform::{kafka::LoggingContext, telemetry::Health};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer},
};
use tokio::sync::{mpsc, watch};

use crate::changes::Operation;

/// How far Kafka has acknowledged, and whether a delivery failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AckState {
    pub acked_lsn: Lsn,
    pub failure: Option<String>,
}

enum Pending {
    Delivery {
        future: DeliveryFuture,
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

pub enum SendError {
    /// librdkafka's queue is full: wait for deliveries, then try again.
    QueueFull,
    Failed(KafkaError),
}

/// One replication session's view of the producer: records and checkpoints in WAL order.
pub struct OrderedSink {
    producer: Arc<FutureProducer<LoggingContext>>,
    pending: mpsc::UnboundedSender<Pending>,
    acks: watch::Receiver<AckState>,
    tracker: tokio::task::JoinHandle<()>,
}

impl OrderedSink {
    pub fn new(
        producer: Arc<FutureProducer<LoggingContext>>,
        start_lsn: Lsn,
        health: Health,
    ) -> Self {
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
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match self.producer.send_result(record) {
            Ok(future) => {
                // The tracker only stops with the session, so a closed channel cannot lose anything.
                let _ = self.pending.send(Pending::Delivery { future, change });
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Failed(error)),
        }
    }

    /// Marks `lsn`: it is acknowledged once everything sent before it is.
    pub fn checkpoint(&self, lsn: Lsn, commit_time_unix_micros: Option<i64>) {
        let _ = self.pending.send(Pending::Checkpoint {
            lsn,
            commit_time_unix_micros,
        });
    }

    /// Waits until Kafka acknowledged everything sent so far; the failure if a delivery failed.
    pub async fn drained(&self) -> Result<(), String> {
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
            .unwrap_or_else(|| "the acknowledgement tracker stopped".into()))
    }

    pub fn acks(&self) -> watch::Receiver<AckState> {
        self.acks.clone()
    }

    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

impl Drop for OrderedSink {
    fn drop(&mut self) {
        self.tracker.abort();
    }
}

const SLOW_ACK_WARNING: Duration = Duration::from_secs(10);

async fn track_acknowledgements(
    mut queue: mpsc::UnboundedReceiver<Pending>,
    acks: watch::Sender<AckState>,
    health: Health,
) {
    while let Some(pending) = queue.recv().await {
        match pending {
            Pending::Delivery { mut future, change } => {
                let mut waited = Duration::ZERO;
                let delivery = loop {
                    match tokio::time::timeout(SLOW_ACK_WARNING, &mut future).await {
                        Ok(delivery) => break delivery,
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
                };
                if !waited.is_zero() {
                    health.set(true, "streaming");
                }
                let failure = match delivery {
                    Ok(Ok(_)) => None,
                    Ok(Err((error, _))) => Some(format!("Kafka refused a record: {error}")),
                    Err(_) => Some("the Kafka producer dropped a record".to_string()),
                };
                if let Some(failure) = failure {
                    metrics::counter!("cdc_errors_total", "kind" => "kafka_delivery").increment(1);
                    acks.send_modify(|state| state.failure = Some(failure));
                    return;
                }
                if let Some((table, operation)) = change {
                    metrics::counter!("cdc_events_total", "table" => table.to_string(), "operation" => operation.as_str()).increment(1);
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
