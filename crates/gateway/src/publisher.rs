//! Encodes prepared events with their registered schemas and produces them, answering only once
//! the broker acknowledged (or within a bounded time, that it did not).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use platform::{
    events::{EncodeError, EventSchema},
    kafka::LoggingContext,
};
use rdkafka::{
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    dedup::{Claimed, Dedup},
    events::Prepared,
    stats::InFlight,
};

/// Where the broker stored an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Receipt {
    pub topic: &'static str,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the gateway is still starting (topics or schemas not ready)")]
    NotReady,
    /// A validated event that does not fit its schema: a gateway bug, never the client's input.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Not acknowledged: the broker refused it, or did not answer within the produce timeout.
    #[error("the broker did not acknowledge the event: {0}")]
    Broker(rdkafka::error::KafkaError),
}

pub struct Publisher {
    producer: FutureProducer<LoggingContext>,
    /// Registered schemas by topic name; empty until start-up registered them.
    schemas: RwLock<Arc<HashMap<&'static str, EventSchema>>>,
    dedup: Dedup<Receipt>,
    produce_timeout: Duration,
    produce_in_flight: metrics::Gauge,
}

impl Publisher {
    pub fn new(
        producer: FutureProducer<LoggingContext>,
        dedup: Dedup<Receipt>,
        produce_timeout: Duration,
    ) -> Self {
        Self {
            producer,
            schemas: RwLock::default(),
            dedup,
            produce_timeout,
            produce_in_flight: metrics::gauge!("gateway_produce_in_flight"),
        }
    }

    pub fn producer(&self) -> &FutureProducer<LoggingContext> {
        &self.producer
    }

    pub fn set_schemas(&self, schemas: HashMap<&'static str, EventSchema>) {
        *self.schemas.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(schemas);
    }

    pub fn is_ready(&self) -> bool {
        !self
            .schemas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Records the event once: a retry of an id acknowledged within the window is a duplicate.
    pub async fn publish(&self, event: Prepared) -> Result<Claimed<Receipt>, PublishError> {
        let schemas = self
            .schemas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let schema = schemas
            .get(event.topic.name)
            .ok_or(PublishError::NotReady)?;
        let payload = event.record.encode(schema, event.received_at_millis)?;
        let topic = event.topic.name;
        let dedup_key = format!("{topic}/{}", event.id);
        self.dedup
            .run(&dedup_key, || self.produce(topic, &event.key, &payload))
            .await
    }

    async fn produce(
        &self,
        topic: &'static str,
        key: &str,
        payload: &[u8],
    ) -> Result<Receipt, PublishError> {
        let in_flight = InFlight::enter(&self.produce_in_flight);
        let record = FutureRecord::to(topic).key(key).payload(payload);
        // librdkafka reports every record's delivery, failed at the latest after
        // message.timeout.ms (= produce_timeout) once queued; a full queue is retried for as long.
        // No timer of our own per event: it cost more than the produce call (NOTES.md).
        let sent = self
            .producer
            .send(record, Timeout::After(self.produce_timeout))
            .await;
        drop(in_flight);
        match sent {
            Ok(delivery) => Ok(Receipt {
                topic,
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((error, _)) => {
                metrics::counter!("gateway_produce_errors_total", "topic" => topic).increment(1);
                Err(PublishError::Broker(error))
            }
        }
    }

    /// Records the producer's queue (records handed to librdkafka, not yet acknowledged).
    pub fn record_queue_depth(&self) {
        metrics::gauge!("gateway_producer_queue_depth")
            .set(f64::from(self.producer.in_flight_count()));
    }

    /// Waits up to `timeout` for queued records to be acknowledged (at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.producer.flush(timeout)
    }
}
