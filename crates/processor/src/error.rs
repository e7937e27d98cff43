//! The processor's one error type, classified where it is made: what went wrong, whether
//! waiting can fix it, and what an operator should do.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("Kafka at {brokers}: {source}. Hint: {hint}")]
    Kafka {
        brokers: String,
        source: KafkaError,
        hint: &'static str,
    },
    #[error("topic provisioning failed: {0}")]
    Provision(#[from] platform::kafka::ProvisionError),
    #[error("schema registry: {0}. Hint: check that the registry at --schema-registry-url runs")]
    Registry(#[from] platform::registry::RegistryError),
    #[error(
        "topic {topic} does not exist or has no partitions. Hint: the processor provisions it at start-up; check the broker's permissions"
    )]
    MissingTopic { topic: String },
    #[error(
        "transaction failed and was aborted: {source}. Hint: {hint}; the processor starts its pipeline again and resumes from its last committed transaction with its state restored from the changelog"
    )]
    Transaction {
        source: KafkaError,
        hint: &'static str,
    },
    #[error(
        "{failures} records were not delivered, so their offsets were not committed. Hint: check the brokers; after a restart the processor repeats the uncommitted work"
    )]
    Undelivered { failures: u64 },
    #[error(
        "cannot encode a record for {topic}: {reason}. Hint: the processor and schemas/*.avsc disagree, a bug to report"
    )]
    Encode { topic: String, reason: String },
    #[error("state changelog of partition {partition} cannot be read: {reason}")]
    Restore { partition: i32, reason: String },
    #[error("{0}")]
    Startup(String),
}

impl ProcessorError {
    pub fn kafka(brokers: &str, source: KafkaError) -> Self {
        let hint = kafka_hint(&source);
        ProcessorError::Kafka {
            brokers: brokers.to_string(),
            source,
            hint,
        }
    }

    pub fn transaction(source: KafkaError) -> Self {
        let hint = kafka_hint(&source);
        ProcessorError::Transaction { source, hint }
    }

    /// Whether retrying the same thing later can succeed (a broker or registry coming back).
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessorError::Kafka { source, .. } | ProcessorError::Transaction { source, .. } => {
                kafka_transient(source)
            }
            ProcessorError::Provision(e) => e.is_retryable(),
            ProcessorError::Registry(e) => e.is_retryable(),
            ProcessorError::Restore { .. } | ProcessorError::Undelivered { .. } => true,
            ProcessorError::MissingTopic { .. }
            | ProcessorError::Encode { .. }
            | ProcessorError::Startup(_) => false,
        }
    }
}

fn code_of(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

fn kafka_transient(error: &KafkaError) -> bool {
    !matches!(
        code_of(error),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::InvalidConfig
        )
    )
}

/// What an operator should look at, by Kafka error code.
fn kafka_hint(error: &KafkaError) -> &'static str {
    match code_of(error) {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => {
            "the processor's principal lacks an ACL (topics, its consumer group, its transactional id)"
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
            "a record exceeds the broker's message.max.bytes; raise it for the processor's topics"
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            "a topic is missing; the processor provisions its topics at start-up, so check that nothing deleted it"
        }
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) => {
            "another instance with the same --instance-id took over; give every instance its own id"
        }
        _ => "check that the brokers are up and reachable; retrying helps once they are",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_are_classified_with_a_hint() {
        let denied = ProcessorError::kafka(
            "b:9092",
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert!(!denied.is_transient());
        assert!(denied.to_string().contains("ACL"), "{denied}");
        let transient = ProcessorError::kafka(
            "b:9092",
            KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert!(transient.is_transient());
        assert!(transient.to_string().contains("b:9092"));
        let too_large = ProcessorError::kafka(
            "b:9092",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(!too_large.is_transient());
        assert!(
            too_large.to_string().contains("message.max.bytes"),
            "{too_large}"
        );
    }
}
