//! The OLTP driver: a seeded plan of legal operations, run concurrently against PostgreSQL,
//! optionally journaled in commit order.

pub mod db;
pub mod journal;
pub mod model;
pub mod plan;
mod run;

pub use run::{OltpSettings, RunError, RunSummary, run};
