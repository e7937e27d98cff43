//! Kafka clients configured the same way for every service (brokers and security from
//! [`client_config`]), and idempotent topic provisioning.

use std::time::Duration;

use rdkafka::{
    ClientConfig, ClientContext,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    config::RDKafkaLogLevel,
    consumer::{ConsumerContext, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, FutureProducer, Producer, ProducerContext},
};

use crate::topics::TopicSpec;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Settings(#[from] crate::topics::TopicConfigError),
    #[error("Kafka brokers {brokers} are unreachable: {source}")]
    Unreachable { brokers: String, source: KafkaError },
    #[error("cannot create topic {topic}: {code}")]
    CreateFailed {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

impl ProvisionError {
    /// Brokers come back; a topic the cluster refuses (bad config, no permission) does not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Logs librdkafka's client-level errors (a broker down, authentication failing) through
/// `tracing` and counts them, instead of letting them pass silently.
pub struct LoggingContext {
    pub service: &'static str,
}

impl ClientContext for LoggingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!("kafka_client_errors_total", "service" => self.service).increment(1);
        tracing::warn!(%error, "Kafka client: {reason}");
    }

    /// librdkafka's own log (a refused TLS handshake and why, a broker going away) through
    /// `tracing`, instead of the `log` crate nobody listens to.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }
}

impl ProducerContext for LoggingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ConsumerContext for LoggingContext {}

/// The configuration every Kafka client of the platform starts from: the brokers and the
/// process's security settings ([`crate::kafka_security`]: TLS, SASL).
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    crate::kafka_security::installed().apply(&mut config);
    config
}

/// How long a producer's records may wait and how many it holds: each service chooses its own,
/// starting from [`ProducerBounds::new`]'s defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBounds {
    /// How long one record may wait for the broker (`message.timeout.ms`); zero waits forever.
    pub message_timeout: Duration,
    /// Records not yet acknowledged, at most (`queue.buffering.max.messages`): each one costs
    /// memory in librdkafka and in the caller's acknowledgement tracking, so a service that
    /// produces small records fast keeps its memory bounded by this rather than by the bytes.
    pub max_queued_records: u32,
    /// Kilobytes of records not yet acknowledged, at most (`queue.buffering.max.kbytes`).
    pub max_queued_kbytes: u32,
    /// How long records gather into a batch before it is sent (`linger.ms`).
    pub linger: Duration,
}

impl ProducerBounds {
    /// 100,000 records and 32 MiB at most, a 5 ms linger: a short wait, as every caller that
    /// awaits an acknowledgement waits it out too. librdkafka would buffer up to 1 GiB by
    /// default; 32 MiB keeps the services small and still covers a broker hiccup of a few
    /// seconds at full speed.
    pub const fn new(message_timeout: Duration) -> Self {
        Self {
            message_timeout,
            max_queued_records: 100_000,
            max_queued_kbytes: 32 * 1024,
            linger: Duration::from_millis(5),
        }
    }
}

/// A producer that never loses or reorders an acknowledged record: idempotent, `acks=all`,
/// with [`ProducerBounds::new`]'s bounds.
///
/// `message_timeout` bounds how long one record may wait for the broker; zero waits forever.
pub fn producer(
    brokers: &str,
    service: &'static str,
    message_timeout: Duration,
) -> Result<FutureProducer<LoggingContext>, KafkaError> {
    bounded_producer(brokers, service, ProducerBounds::new(message_timeout))
}

/// [`producer`] with the caller's bounds.
pub fn bounded_producer(
    brokers: &str,
    service: &'static str,
    bounds: ProducerBounds,
) -> Result<FutureProducer<LoggingContext>, KafkaError> {
    producer_config(brokers, service, bounds).create_with_context(LoggingContext { service })
}

/// The settings of [`bounded_producer`], for a service that needs its own producer context
/// (e.g. delivery callbacks instead of futures).
pub fn producer_config(
    brokers: &str,
    service: &'static str,
    bounds: ProducerBounds,
) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("client.id", service)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", bounds.linger.as_millis().to_string())
        .set("batch.num.messages", "10000")
        .set(
            "queue.buffering.max.messages",
            bounds.max_queued_records.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            bounds.max_queued_kbytes.to_string(),
        )
        .set(
            "message.timeout.ms",
            bounds.message_timeout.as_millis().to_string(),
        );
    config
}

/// A consumer in `group`; `from_beginning` reads a new group's partitions from the earliest offset.
pub fn consumer(
    brokers: &str,
    group: &str,
    service: &'static str,
    from_beginning: bool,
) -> Result<StreamConsumer<LoggingContext>, KafkaError> {
    crate::kafka::client_config(brokers)
        .set("group.id", group)
        .set("client.id", service)
        .set("enable.auto.commit", "true")
        .set("session.timeout.ms", "6000")
        .set(
            "auto.offset.reset",
            if from_beginning { "earliest" } else { "latest" },
        )
        .create_with_context(LoggingContext { service })
}

/// Creates the topics that are missing, with the replication factor capped at the cluster's
/// broker count (a one-broker development cluster cannot hold three replicas). Existing topics
/// are left as they are. The overrides file named by `TOPICS_CONFIG` applies (see
/// [`crate::topics::with_env_overrides`]).
pub async fn provision_topics(brokers: &str, topics: &[TopicSpec]) -> Result<(), ProvisionError> {
    let topics = &crate::topics::with_env_overrides(topics)?;
    let unreachable = |source| ProvisionError::Unreachable {
        brokers: brokers.to_string(),
        source,
    };
    let broker_count = {
        // The metadata probe is a producer, whose main queue can be served: librdkafka's log of
        // why the brokers are unreachable (a TLS handshake refused and why, authentication
        // failing) reaches the service's log, which the error below only summarises as a
        // transport failure.
        let probe: BaseProducer<LoggingContext> = client_config(brokers)
            .create_with_context(LoggingContext {
                service: "provisioning",
            })
            .map_err(unreachable)?;
        // On the blocking pool, which every runtime flavour has (`block_in_place` would need a
        // multi-threaded one).
        let brokers_found = tokio::task::spawn_blocking(move || {
            let metadata = probe.client().fetch_metadata(None, Duration::from_secs(10));
            if metadata.is_err() {
                probe.poll(Duration::from_millis(100));
            }
            metadata.map(|metadata| metadata.brokers().len())
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))
        .map_err(unreachable)?;
        i32::try_from(brokers_found).unwrap_or(i32::MAX).max(1)
    };
    let admin: AdminClient<LoggingContext> = client_config(brokers)
        .create_with_context(LoggingContext {
            service: "provisioning",
        })
        .map_err(unreachable)?;
    let retention: Vec<String> = topics.iter().map(|t| t.retention_ms.to_string()).collect();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&retention)
        .map(|(spec, retention_ms)| {
            NewTopic::new(
                spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor.min(broker_count)),
            )
            .set("retention.ms", retention_ms)
            .set("cleanup.policy", spec.cleanup_policy)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(unreachable)?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ProvisionError::CreateFailed { topic, code }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer's batching wait and bounds are the caller's, none of them a default set in
    /// their place.
    #[test]
    fn a_producers_wait_and_bounds_are_the_callers() {
        let config = producer_config(
            "127.0.0.1:1",
            "test",
            ProducerBounds {
                max_queued_records: 42,
                max_queued_kbytes: 64,
                linger: Duration::from_millis(7),
                ..ProducerBounds::new(Duration::from_secs(3))
            },
        );
        assert_eq!(config.get("linger.ms"), Some("7"));
        assert_eq!(config.get("queue.buffering.max.messages"), Some("42"));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("64"));
        assert_eq!(config.get("message.timeout.ms"), Some("3000"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }
}
