//! The processor's results, queryable and visible: SQL over the PostgreSQL wire protocol
//! ([`sql`]) and a live page ([`page`]), both served from one materialized view ([`store`])
//! that [`reader`] keeps up to date from the result, alert, state and changelog topics.
//!
//! Every instance reads every partition of those topics, so any instance answers for all of
//! them, whichever tasks it owns. Closed windows come from `topic_processed_events`; open
//! windows from the window state each task writes to `topic_processor_changelog` at every
//! commit, turned into results the same way the task turns a closing window into its final
//! results. Answers are as fresh as the last committed transaction (about one commit
//! interval, 200 ms by default) plus a fetch.

pub mod page;
pub mod reader;
pub mod sql;
pub mod store;
pub mod table;

use std::sync::{Arc, RwLock};

use crate::{config::Args, error::ProcessorError};
use platform::registry::RegistryClient;

/// Starts the view's reader and the SQL server; returns the page's routes for the HTTP port.
pub async fn start(args: &Args) -> Result<axum::Router, ProcessorError> {
    let store = Arc::new(RwLock::new(store::Store::default()));
    let memory = usize::try_from(args.sql_memory_limit_mb)
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 20);
    sql::serve(args.sql_listen, store.clone(), memory).await?;
    let reader = reader::Reader::new(
        args.kafka_brokers.clone(),
        RegistryClient::new(&args.schema_registry_url),
        args.settings(),
        store::Limits {
            retention_ms: i64::try_from(args.query_retention_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            max_rows: usize::try_from(args.query_max_rows).unwrap_or(usize::MAX),
        },
        store.clone(),
    );
    tokio::spawn(reader.run());
    Ok(page::router(store))
}
