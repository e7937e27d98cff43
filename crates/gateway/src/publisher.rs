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
    error::{KafkaError, RDKafkaErrorCode},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, future_producer::Delivery},
    util::Timeout,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    dedup::{Attempt, Busy, Claim, Claimed, Dedup},
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
    Broker(KafkaError),
}

/// An event on its way to the broker: see [`Publisher::start`].
pub struct Pending<'a> {
    publisher: &'a Publisher,
    step: Step<'a>,
}

enum Step<'a> {
    Answered(Result<Claimed<Receipt>, PublishError>),
    /// In the producer's queue; `delivery` resolves with the broker's answer.
    Queued {
        attempt: Attempt<'a, Receipt>,
        topic: &'static str,
        delivery: DeliveryFuture,
        _in_flight: InFlight,
    },
    /// The producer's queue was full: it is handed over once there is room, within the
    /// produce timeout.
    QueueFull {
        attempt: Attempt<'a, Receipt>,
        record: Record,
        _in_flight: InFlight,
    },
    /// Another request is producing the same id: its outcome decides.
    Busy {
        busy: Busy,
        record: Record,
    },
}

/// A record kept for a step that waits before producing it.
struct Record {
    dedup_key: String,
    topic: &'static str,
    key: String,
    payload: Vec<u8>,
}

impl Record {
    fn new(dedup_key: &str, topic: &'static str, key: &str, payload: Vec<u8>) -> Self {
        Self {
            dedup_key: dedup_key.to_owned(),
            topic,
            key: key.to_owned(),
            payload,
        }
    }
}

impl Pending<'_> {
    /// The broker's answer (or the duplicate's receipt).
    pub async fn finish(self) -> Result<Claimed<Receipt>, PublishError> {
        let Pending {
            publisher,
            mut step,
        } = self;
        loop {
            step = match step {
                Step::Answered(answer) => return answer,
                Step::Queued {
                    attempt,
                    topic,
                    delivery,
                    _in_flight,
                } => {
                    let delivery = match delivery.await {
                        Ok(answer) => answer.map_err(|(error, _)| error),
                        // Only when the producer is gone, which outlives every request.
                        Err(_) => Err(KafkaError::Canceled),
                    };
                    return publisher.delivered(attempt, topic, delivery);
                }
                Step::QueueFull {
                    attempt,
                    record,
                    _in_flight,
                } => {
                    let delivery = publisher
                        .producer
                        .send(
                            FutureRecord::to(record.topic)
                                .key(&record.key)
                                .payload(&record.payload),
                            Timeout::After(publisher.produce_timeout),
                        )
                        .await
                        .map_err(|(error, _)| error);
                    return publisher.delivered(attempt, record.topic, delivery);
                }
                Step::Busy { busy, record } => {
                    busy.ended().await;
                    publisher.produce(&record.dedup_key, record.topic, &record.key, record.payload)
                }
            };
        }
    }
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

    /// Starts publishing `event` without waiting: the id claimed in the idempotency window
    /// (a retry of an id acknowledged within it is a duplicate), the record encoded and handed
    /// to the producer. The answer comes from [`Pending::finish`]. A batch starts every event
    /// before finishing any, so its records share the broker's requests.
    pub fn start(&self, event: &Prepared) -> Pending<'_> {
        let step = match self.encode(event) {
            Ok(payload) => {
                let topic = event.topic.name;
                let mut dedup_key = String::with_capacity(topic.len() + 1 + event.id.len());
                for part in [topic, "/", &event.id] {
                    dedup_key.push_str(part);
                }
                self.produce(&dedup_key, topic, &event.key, payload)
            }
            Err(error) => Step::Answered(Err(error)),
        };
        Pending {
            publisher: self,
            step,
        }
    }

    fn encode(&self, event: &Prepared) -> Result<Vec<u8>, PublishError> {
        let schemas = self.schemas.read().unwrap_or_else(|p| p.into_inner());
        let schema = schemas
            .get(event.topic.name)
            .ok_or(PublishError::NotReady)?;
        Ok(event.record.encode(schema, event.received_at_millis)?)
    }

    /// Claims `dedup_key` and, if it is this call's, hands the record to the producer.
    fn produce(
        &self,
        dedup_key: &str,
        topic: &'static str,
        key: &str,
        payload: Vec<u8>,
    ) -> Step<'_> {
        let attempt = match self.dedup.claim(dedup_key) {
            Claim::Duplicate(receipt) => return Step::Answered(Ok(Claimed::Duplicate(receipt))),
            Claim::Busy(busy) => {
                return Step::Busy {
                    busy,
                    record: Record::new(dedup_key, topic, key, payload),
                };
            }
            Claim::Mine(attempt) => attempt,
        };
        let in_flight = InFlight::enter(&self.produce_in_flight);
        // librdkafka reports every queued record's delivery, failed at the latest after
        // message.timeout.ms (= produce_timeout). No timer of our own per event: it cost more
        // than the produce call (NOTES.md).
        let queued = self
            .producer
            .send_result(FutureRecord::to(topic).key(key).payload(&payload))
            .map_err(|(error, _)| error);
        match queued {
            Ok(delivery) => Step::Queued {
                attempt,
                topic,
                delivery,
                _in_flight: in_flight,
            },
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => Step::QueueFull {
                attempt,
                record: Record::new(dedup_key, topic, key, payload),
                _in_flight: in_flight,
            },
            Err(error) => Step::Answered(Err(self.failed(topic, error))),
        }
    }

    /// Records the broker's answer for an attempt.
    fn delivered(
        &self,
        attempt: Attempt<'_, Receipt>,
        topic: &'static str,
        delivery: Result<Delivery, KafkaError>,
    ) -> Result<Claimed<Receipt>, PublishError> {
        match delivery {
            Ok(delivery) => {
                let receipt = Receipt {
                    topic,
                    partition: delivery.partition,
                    offset: delivery.offset,
                };
                attempt.acknowledged(receipt.clone());
                Ok(Claimed::Fresh(receipt))
            }
            Err(error) => Err(self.failed(topic, error)),
        }
    }

    fn failed(&self, topic: &'static str, error: KafkaError) -> PublishError {
        metrics::counter!("gateway_produce_errors_total", "topic" => topic).increment(1);
        PublishError::Broker(error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, UserEvent};
    use platform::{avro::RegisteredSchema, schemas, topics};

    fn user_event(id: &str) -> Prepared {
        let event: UserEvent = serde_json::from_value(serde_json::json!({
            "event_id": id, "event_type": "search", "session_id": "s", "app_type": "web",
            "timestamp": 1_780_000_000_000i64
        }))
        .unwrap();
        event.prepare(1_780_000_000_000)
    }

    /// Without a broker every attempt fails, none hangs and no id stays claimed: a record
    /// queued (then timed out), a record that found the queue full (then waited for room up to
    /// the timeout), and a second attempt at an id in flight (which waits for the first, then
    /// tries itself).
    #[tokio::test]
    async fn every_way_of_not_being_acknowledged_fails_and_releases_the_id() {
        let timeout = Duration::from_millis(300);
        // Nothing listens on port 1; the queue holds one record.
        let producer = platform::kafka::bounded_producer(
            "127.0.0.1:1",
            "gateway-test",
            platform::kafka::ProducerBounds {
                max_queued_records: 1,
                ..platform::kafka::ProducerBounds::new(timeout)
            },
        )
        .unwrap();
        let publisher = Publisher::new(producer, Dedup::new(Duration::from_secs(60), 10), timeout);
        let not_ready = publisher.start(&user_event("a")).finish().await;
        assert!(
            matches!(not_ready, Err(PublishError::NotReady)),
            "{not_ready:?}"
        );
        let registered = RegisteredSchema {
            id: 1,
            schema: schemas::parse(schemas::APP_EVENT).unwrap(),
        };
        publisher.set_schemas(HashMap::from([(
            topics::APP_EVENTS.name,
            EventSchema::new(&registered),
        )]));

        let (first, again, other) = (user_event("a"), user_event("a"), user_event("b"));
        let first = publisher.start(&first);
        assert!(matches!(first.step, Step::Queued { .. }));
        let again = publisher.start(&again);
        assert!(matches!(again.step, Step::Busy { .. }));
        let other = publisher.start(&other);
        assert!(matches!(other.step, Step::QueueFull { .. }));

        let (first, again, other) = tokio::join!(first.finish(), again.finish(), other.finish());
        for answer in [first, again, other] {
            assert!(matches!(answer, Err(PublishError::Broker(_))), "{answer:?}");
        }
        assert!(publisher.dedup.is_empty());
        assert!(matches!(
            publisher.dedup.claim("topic_app_events/a"),
            Claim::Mine(_)
        ));
    }
}
