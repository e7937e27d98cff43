//! The one producer every record goes out through: its configuration (idempotent, and
//! transactional under exactly-once), the delivery failures that an at-least-once commit must
//! refuse to commit past, and sending with back-pressure when its queue is full.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use crate::{
    config::{Args, Guarantee},
    decode::Out,
    error::ProcessorError,
    routed::partition_for,
};
use platform::topics;
use rdkafka::{
    ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer},
};

use super::Core;

/// Counts delivery failures, so the at-least-once commit can refuse to commit offsets past
/// a record the broker did not take (transactions fail by themselves).
#[derive(Default)]
pub struct DeliveryContext {
    pub(super) failures: AtomicU64,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!("kafka_client_errors_total", "service" => "processor").increment(1);
        tracing::warn!(%error, "Kafka client: {reason}");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "a record was not delivered");
        }
    }
}

/// How long an open transaction may last before the broker aborts it.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn producer(args: &Args) -> Result<ThreadedProducer<DeliveryContext>, ProcessorError> {
    let exactly_once = args.processing_guarantee == Guarantee::ExactlyOnce;
    let bounds = platform::kafka::ProducerBounds {
        max_queued_records: 200_000,
        max_queued_kbytes: 64 * 1024,
        // A transaction's records must be answered within its timeout; at least once, a record
        // waits as long as librdkafka's default lets it.
        ..platform::kafka::ProducerBounds::new(if exactly_once {
            TRANSACTION_TIMEOUT
        } else {
            Duration::from_secs(300)
        })
    };
    let mut config = platform::kafka::producer_config(&args.kafka_brokers, "processor", bounds);
    config.set("compression.type", "none");
    if exactly_once {
        let instance = args
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        config
            .set("transactional.id", format!("{}-{instance}", args.group))
            .set(
                "transaction.timeout.ms",
                TRANSACTION_TIMEOUT.as_millis().to_string(),
            );
    }
    config
        .create_with_context(DeliveryContext::default())
        .map_err(|e| ProcessorError::kafka(&args.kafka_brokers, e))
}

impl Core {
    pub(super) fn exactly_once(&self) -> bool {
        self.args.processing_guarantee == Guarantee::ExactlyOnce
    }

    pub(super) fn ensure_transaction(&mut self) -> Result<(), ProcessorError> {
        if self.exactly_once() && !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(ProcessorError::transaction)?;
            self.in_transaction = true;
        }
        Ok(())
    }

    pub(super) fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), ProcessorError> {
        self.ensure_transaction()?;
        let mut record = BaseRecord::to(topic).key(key);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    return Err(ProcessorError::kafka(&self.args.kafka_brokers, error));
                }
            }
        }
    }

    pub(super) fn send_routed(&mut self, out: &Out) -> Result<(), ProcessorError> {
        let bytes = out.routed.encode();
        if out.broadcast {
            for q in 0..self.repartition_partitions {
                self.send(
                    topics::PROCESSOR_REPARTITION.name,
                    Some(q),
                    out.key.as_bytes(),
                    Some(&bytes),
                )?;
            }
            Ok(())
        } else {
            let q = partition_for(&out.key, self.repartition_partitions);
            self.send(
                topics::PROCESSOR_REPARTITION.name,
                Some(q),
                out.key.as_bytes(),
                Some(&bytes),
            )
        }
    }
}
