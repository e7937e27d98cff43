//! The record producer that talks to Kafka: librdkafka's producer, with every error classified
//! by its code (a record too large or a topic the producer may not write is definite; an
//! unreachable broker transient).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use platform::kafka::LoggingContext;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer},
};

use super::{RecordProducer, SendError};
use crate::error::{ConnectorError, ErrorKind};

/// librdkafka's producer as the sink's [`RecordProducer`].
#[derive(Clone)]
pub struct KafkaProducer(pub Arc<FutureProducer<LoggingContext>>);

/// Kafka's answer for one record.
pub struct KafkaDelivery(DeliveryFuture);

impl Future for KafkaDelivery {
    type Output = Result<(), ConnectorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|delivery| match delivery {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(ConnectorError::kafka("Kafka refused a record", &error)),
                Err(_) => Err(ConnectorError::new(
                    ErrorKind::KafkaUnavailable,
                    "delivering a record",
                    "the Kafka producer dropped it",
                )),
            })
    }
}

impl RecordProducer for KafkaProducer {
    type Delivery = KafkaDelivery;

    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<KafkaDelivery, SendError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match self.0.send_result(record) {
            Ok(future) => Ok(KafkaDelivery(future)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Failed(ConnectorError::kafka(
                format!("handing a record for {topic} to the Kafka producer"),
                &error,
            ))),
        }
    }

    fn in_flight(&self) -> i32 {
        self.0.in_flight_count()
    }
}
