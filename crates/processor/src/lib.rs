//! The stream processor: the seed's Spark Streaming jobs as a Kafka stream processor in the
//! Kafka Streams model, where Kafka is the distributed engine.
//!
//! - Stage 1 ([`decode`]) turns each input record (app events, clickstream, CDC changes, logs,
//!   external data) into small routed records keyed by what they are grouped by, written to
//!   the internal repartition topic ([`routed`]). Undecodable records go to the dead-letter
//!   topic with the reason.
//! - Stage 2 ([`task`]) keeps, per repartition partition, the windows and per-key state,
//!   closes event-time windows when the watermark passes them and emits results, alerts,
//!   late events and state-topic records ([`output`]).
//! - The [`engine`] runs both in one consumer group with one transactional producer: input
//!   offsets, outputs and the state changelog commit in one transaction (exactly once), the
//!   state of a partition is restored from the changelog when it is assigned, and instances
//!   added to the group take over partitions.
//! - The [`query`] layer serves the results of every instance in SQL (PostgreSQL wire
//!   protocol) and on a live page.

pub mod changelog;
pub mod config;
pub mod decode;
pub mod engine;
pub mod error;
pub mod output;
pub mod query;
pub mod routed;
pub mod sketch;
pub mod task;
