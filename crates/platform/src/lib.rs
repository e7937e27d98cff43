//! Shared plumbing for the data-sources services.
//!
//! Everything two services would otherwise copy lives here: configuration loading
//! (one TOML file plus environment overrides plus flags), tracing and Prometheus
//! telemetry, Kafka producer/consumer/admin setup, topic definitions and
//! provisioning, and Avro encoding in the Confluent wire format with a schema
//! registry client.

pub mod avro;
pub mod cdc;
pub mod config;
pub mod errors;
pub mod events;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod kafka_security;
pub mod machine;
pub mod postgres;
pub mod registry;
pub mod schemas;
pub mod shutdown;
pub mod telemetry;
pub mod topics;
