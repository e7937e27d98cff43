//! The record producer that talks to Kafka: librdkafka's producer, with every error classified
//! by its code (a record too large or a topic the producer may not write is definite; an
//! unreachable broker transient). Each record carries its ledger sequence number as librdkafka's
//! delivery opaque, so the delivery callback answers the ledger without any allocation.

use std::{sync::Arc, time::Duration};

use platform::kafka::LoggingContext;
use rdkafka::{
    ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer},
};

use super::{RecordProducer, SendError, ledger::Ledger};
use crate::error::ConnectorError;

// Sequence numbers travel as librdkafka's pointer-sized opaque: no truncation on the way.
const _: () = assert!(usize::BITS == u64::BITS);

/// librdkafka's producer as the sink's [`RecordProducer`].
#[derive(Clone)]
pub struct KafkaProducer(Arc<ThreadedProducer<AnsweringContext>>);

impl KafkaProducer {
    /// The connector's producer: idempotent, `acks=all` ([`platform::kafka::producer_config`]),
    /// holding at most `max_queued_records` unanswered records.
    pub fn new(
        brokers: &str,
        message_timeout: Duration,
        max_queued_records: u32,
    ) -> Result<Self, KafkaError> {
        let context = AnsweringContext {
            logging: LoggingContext {
                service: "cdc-connector",
            },
            ledger: Arc::default(),
        };
        platform::kafka::producer_config(
            brokers,
            "cdc-connector",
            message_timeout,
            max_queued_records,
        )
        .create_with_context(context)
        .map(|producer| Self(Arc::new(producer)))
    }

    /// Waits up to `timeout` for the records handed over to be answered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.0.flush(timeout);
    }
}

/// Logs like every other client, and reports each delivery to the ledger.
pub struct AnsweringContext {
    logging: LoggingContext,
    ledger: Arc<Ledger>,
}

impl ClientContext for AnsweringContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.logging.error(error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.logging.log(level, facility, message);
    }
}

impl ProducerContext for AnsweringContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery: &DeliveryResult<'_>, sequence: usize) {
        let answer = match delivery {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(ConnectorError::kafka("Kafka refused a record", error)),
        };
        self.ledger.answered(sequence as u64, answer);
    }
}

impl RecordProducer for KafkaProducer {
    fn send(&self, topic: &str, key: &str, payload: &[u8], sequence: u64) -> Result<(), SendError> {
        let record = BaseRecord::with_opaque_to(topic, sequence as usize)
            .key(key)
            .payload(payload);
        match self.0.send(record) {
            Ok(()) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Failed(ConnectorError::kafka(
                format!("handing a record for {topic} to the Kafka producer"),
                &error,
            ))),
        }
    }

    fn ledger(&self) -> &Arc<Ledger> {
        &self.0.context().ledger
    }

    fn in_flight(&self) -> i32 {
        self.0.in_flight_count()
    }
}
