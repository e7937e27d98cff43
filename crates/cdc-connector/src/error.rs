//! The connector's one error type. Every failure is classified here, once, by where it came
//! from (a PostgreSQL SQLSTATE, a Kafka error code, an I/O error of the spill directory, the
//! decoder) into an [`ErrorKind`] that says whether retrying can help and what an operator should
//! do. As in Materialize's replication errors: a transient error ends the session and the next
//! one resumes from the slot's confirmed position (nothing is lost, since nothing unacknowledged
//! was ever confirmed); a definite error stops the connector with its cause, because retrying
//! would fail the same way or, worse, skip data.

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    types::RDKafkaErrorCode as Code,
};

/// What went wrong, coarse enough to decide the reaction and to label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// PostgreSQL is unreachable, restarting, shutting down or short of resources.
    SourceUnavailable,
    /// PostgreSQL refused the request for a reason that stays (privileges, a missing slot or
    /// publication, an unsupported setting).
    SourceRejected,
    /// The replication slot is held by another process.
    SlotInUse,
    /// The slot the connector streamed from is gone (dropped, or invalidated by the server),
    /// and with it the changes after its last confirmed position.
    SlotLost,
    /// The replication protocol was violated (a message the connector does not expect there).
    Protocol,
    /// Kafka is unreachable, or a record was not acknowledged in time.
    KafkaUnavailable,
    /// Kafka refused a record for a reason no retry fixes (too large, not authorized, no such
    /// topic).
    KafkaRejected,
    /// The schema registry is unreachable or answered with a server error.
    RegistryUnavailable,
    /// The schema registry refused the schema (incompatible, invalid).
    RegistryRejected,
    /// The spill directory has no room (or quota) left for a streamed transaction.
    SpillFull,
    /// The spill directory cannot be used at all (missing, not writable).
    SpillUnusable,
    /// A replication message or a value of a row cannot be decoded.
    Undecodable,
    /// A change cannot be filtered or encoded into its Avro record.
    Unpublishable,
    /// An option is invalid.
    Config,
}

impl ErrorKind {
    /// Whether the same work can succeed later without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::SourceUnavailable
                | Self::SlotInUse
                | Self::KafkaUnavailable
                | Self::RegistryUnavailable
                | Self::SpillFull
        )
    }

    /// A `snake_case` name for logs and the `kind` label of `cdc_errors_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceUnavailable => "source_unavailable",
            Self::SourceRejected => "source_rejected",
            Self::SlotInUse => "slot_in_use",
            Self::SlotLost => "slot_lost",
            Self::Protocol => "protocol",
            Self::KafkaUnavailable => "kafka_unavailable",
            Self::KafkaRejected => "kafka_rejected",
            Self::RegistryUnavailable => "registry_unavailable",
            Self::RegistryRejected => "registry_rejected",
            Self::SpillFull => "spill_full",
            Self::SpillUnusable => "spill_unusable",
            Self::Undecodable => "undecodable",
            Self::Unpublishable => "unpublishable",
            Self::Config => "config",
        }
    }

    /// What an operator can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Self::SourceUnavailable => {
                "the connector retries with backoff; check that PostgreSQL is up and reachable"
            }
            Self::SourceRejected => {
                "fix the role's privileges, the slot or publication, or the server settings named above, then restart"
            }
            Self::SlotInUse => {
                "another process streams from this slot; the connector retries until it is free, or choose another --slot-name"
            }
            Self::SlotLost => {
                "changes after the slot's last confirmed position cannot be streamed any more: restart with --snapshot-mode when_needed to take a new snapshot (READ records of every row) and stream from there"
            }
            Self::Protocol => "report this with the log: the server sent something unexpected",
            Self::KafkaUnavailable => {
                "the connector retries from the last acknowledged position; check the brokers in --kafka-brokers"
            }
            Self::KafkaRejected => {
                "the broker refuses this record for good: raise the topic's max.message.bytes, grant the ACL or create the topic, then restart"
            }
            Self::RegistryUnavailable => "the connector retries; check --schema-registry-url",
            Self::RegistryRejected => {
                "the registry refuses the schema: check the subject's compatibility setting"
            }
            Self::SpillFull => {
                "free space in --spill-dir (or point it at a larger disk); the connector retries from the slot meanwhile"
            }
            Self::SpillUnusable => "make --spill-dir an existing directory the connector may write",
            Self::Undecodable => {
                "the named value cannot be represented; nothing after it is confirmed, so fixing the connector and restarting loses nothing"
            }
            Self::Unpublishable => {
                "the named change cannot be published with the current filter or schema; nothing after it is confirmed"
            }
            Self::Config => "fix the option named above",
        }
    }
}

/// A classified failure: its kind, what the connector was doing, and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{context}: {detail}")]
pub struct ConnectorError {
    kind: ErrorKind,
    context: String,
    detail: String,
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, context: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            detail: detail.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The same error, said to have happened while doing `outer`.
    pub fn within(mut self, outer: &str) -> Self {
        self.context = format!("{outer}: {}", self.context);
        self
    }

    /// A PostgreSQL error: by SQLSTATE when the server answered, otherwise the connection is gone.
    pub fn postgres(context: impl Into<String>, error: &tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self::sqlstate(context, db.code().code(), db.message()),
            None => Self::new(ErrorKind::SourceUnavailable, context, error.to_string()),
        }
    }

    /// A server error by its SQLSTATE (shared classification in [`platform::postgres`]).
    pub fn sqlstate(context: impl Into<String>, code: &str, message: &str) -> Self {
        let kind = if platform::postgres::sqlstate_is_transient(code) {
            ErrorKind::SourceUnavailable
        } else {
            ErrorKind::SourceRejected
        };
        Self::new(kind, context, format!("{message} (SQLSTATE {code})"))
    }

    /// A Kafka error, by code: the refusals no retry fixes are definite, the rest transient.
    pub fn kafka(context: impl Into<String>, error: &KafkaError) -> Self {
        let kind = match error.rdkafka_error_code() {
            Some(code) if kafka_code_is_definite(code) => ErrorKind::KafkaRejected,
            _ => ErrorKind::KafkaUnavailable,
        };
        Self::new(kind, context, error.to_string())
    }

    /// A schema registry error: unreachable or a server error is transient, a refusal definite.
    pub fn registry(context: impl Into<String>, error: &platform::registry::RegistryError) -> Self {
        let kind = if error.is_retryable() {
            ErrorKind::RegistryUnavailable
        } else {
            ErrorKind::RegistryRejected
        };
        Self::new(kind, context, error.to_string())
    }

    /// An I/O error of the spill directory: no room is transient (space can be freed, and the
    /// transaction is received again from the slot), anything else needs the directory fixed.
    pub fn spill(context: impl Into<String>, error: &std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match error.kind() {
            Io::StorageFull | Io::QuotaExceeded => ErrorKind::SpillFull,
            _ => ErrorKind::SpillUnusable,
        };
        Self::new(kind, context, error.to_string())
    }

    /// The message an operator reads: the error and what to do about it.
    pub fn with_hint(&self) -> String {
        format!("{self} [{}; {}]", self.kind.as_str(), self.kind.hint())
    }
}

/// Kafka error codes that mean the record (or this producer) will be refused however often it is
/// sent.
fn kafka_code_is_definite(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::InvalidMessage
            | Code::InvalidRecord
            | Code::UnsupportedForMessageFormat
            | Code::PolicyViolation
            | Code::InvalidRequiredAcks
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
            | Code::UnknownTopicOrPartition
            | Code::UnknownTopic
            | Code::InvalidTopic
            | Code::Fatal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_errors_by_sqlstate() {
        assert!(ConnectorError::sqlstate("x", "57P01", "terminating").is_transient());
        assert!(ConnectorError::sqlstate("x", "08006", "connection failure").is_transient());
        let refused = ConnectorError::sqlstate("x", "42501", "permission denied");
        assert_eq!(refused.kind(), ErrorKind::SourceRejected);
        assert!(refused.to_string().contains("SQLSTATE 42501"), "{refused}");
    }

    #[test]
    fn kafka_refusals_no_retry_fixes_are_definite() {
        for code in [
            Code::MessageSizeTooLarge,
            Code::TopicAuthorizationFailed,
            Code::UnknownTopicOrPartition,
            Code::UnknownTopic,
        ] {
            let error = ConnectorError::kafka("delivering", &KafkaError::MessageProduction(code));
            assert_eq!(error.kind(), ErrorKind::KafkaRejected, "{code:?}");
            assert!(!error.is_transient());
        }
        for code in [
            Code::MessageTimedOut,
            Code::AllBrokersDown,
            Code::NotLeaderForPartition,
            Code::RequestTimedOut,
        ] {
            let error = ConnectorError::kafka("delivering", &KafkaError::MessageProduction(code));
            assert_eq!(error.kind(), ErrorKind::KafkaUnavailable, "{code:?}");
        }
    }

    #[test]
    fn a_full_spill_directory_is_transient_and_a_missing_one_is_not() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            ConnectorError::spill("staging", &full).kind(),
            ErrorKind::SpillFull
        );
        assert!(ConnectorError::spill("staging", &full).is_transient());
        let enospc = std::io::Error::from_raw_os_error(28);
        assert!(ConnectorError::spill("staging", &enospc).is_transient());
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            ConnectorError::spill("staging", &missing).kind(),
            ErrorKind::SpillUnusable
        );
    }

    #[test]
    fn the_operator_reads_the_kind_and_a_hint() {
        let error = ConnectorError::new(ErrorKind::SpillFull, "staging", "No space left on device")
            .within("at 0/16B3748");
        assert_eq!(
            error.to_string(),
            "at 0/16B3748: staging: No space left on device"
        );
        assert!(
            error
                .with_hint()
                .contains("spill_full; free space in --spill-dir")
        );
    }
}
