//! The HTTP ingestion gateway: the front door for every non-database source.
//!
//! Events are validated strictly (a 4xx names the field, what was expected and what came),
//! Avro-encoded with the schemas registered for their topics, and produced with an idempotent,
//! `acks=all` producer. A 2xx is sent only after the broker acknowledged; when it cannot within
//! the produce timeout the client gets 503 with Retry-After. Ids acknowledged recently are
//! remembered so that client retries do not produce second records.

pub mod api;
pub mod auth;
pub mod config;
pub mod dedup;
pub mod errors;
pub mod events;
pub mod front;
pub mod publisher;
pub mod readiness;
pub mod stats;
pub mod tarpit;
