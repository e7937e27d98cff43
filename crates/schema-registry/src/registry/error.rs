//! The errors of the registry's operations and of opening it, apart from the registry so
//! their API-facing messages (which follow Confluent's wording) read as one list.

use crate::{
    compatibility::{CompatibilityLevel, InvalidCompatibilityLevel},
    event_log::LogError,
};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema not found in subject '{0}'.")]
    SchemaNotFoundInSubject(String),
    #[error("Schema {0} not found.")]
    SchemaIdNotFound(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(transparent)]
    InvalidCompatibilityLevel(#[from] InvalidCompatibilityLevel),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject '{subject}' \
         under compatibility level {level}: {}", reasons.join("; ")
    )]
    Incompatible {
        subject: String,
        level: CompatibilityLevel,
        reasons: Vec<String>,
    },
    #[error("Error in the backend data store: {0}")]
    Store(#[from] LogError),
    #[error(
        "Error in the backend data store: refusing to record an event that contradicts the registry: {0}"
    )]
    ContradictoryEvent(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("event log {path} line {line} contradicts the events before it: {reason}")]
    Inconsistent {
        path: String,
        line: usize,
        reason: String,
    },
}
