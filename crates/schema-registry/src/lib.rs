//! A schema registry speaking the Confluent Schema Registry REST API, for Avro schemas.
//!
//! [`registry::Registry`] holds subjects, versions, global schema ids and compatibility
//! levels in memory and makes every change durable in an append-only [`event_log`] before
//! answering; [`api::router`] serves it over HTTP; [`compatibility`] decides which schema
//! changes each compatibility level allows.

pub mod api;
pub mod compatibility;
pub mod event_log;
pub mod registry;
