//! Ad-hoc re-snapshots while streaming: a signal names tables, the session reads them in
//! watermarked windows over the catalog connection (see `incremental`), and publishes each
//! window's rows once its high watermark arrives in the stream.

use super::stream::Session;
use crate::{
    changes::MessageEvent,
    error::ConnectorError,
    incremental::{self, IncrementalSnapshot},
    sink::RecordProducer,
    source::{catalog::Catalog, replication::ReplicationStream},
};

impl<S, P, C> Session<'_, S, P, C>
where
    S: ReplicationStream,
    P: RecordProducer,
    C: Catalog,
{
    /// An `execute-snapshot` signal: re-snapshot the named tables while streaming continues. A
    /// malformed signal is a rejected request, not data: it is logged and counted, and the
    /// stream goes on.
    pub(super) async fn on_signal(&mut self, message: &MessageEvent) -> Result<(), ConnectorError> {
        let requested = match incremental::parse_signal(&message.content) {
            Ok(tables) => tables,
            Err(error) => {
                metrics::counter!("cdc_signals_rejected_total").increment(1);
                tracing::warn!(%error, "rejecting a signal");
                return Ok(());
            }
        };
        let (tables, types) = self
            .catalog
            .published_tables(
                &self.config.target,
                &self.config.source.publication_name,
                &self.config.filter,
            )
            .await?;
        let tables: Vec<_> = tables
            .into_iter()
            .filter(|t| requested.iter().any(|r| **r == *t.qualified_name))
            .collect();
        tracing::info!(?requested, found = tables.len(), "re-snapshot requested");
        self.change_schema = self
            .schemas
            .for_relations(tables.iter().map(|t| &t.relation), &types)
            .await?;
        // Read now, so as of the position received so far.
        let at = self.received_lsn;
        self.publish_table_schemas(tables.iter().map(|t| &*t.table_schema), at)
            .await?;
        match &mut self.resnapshot {
            Some(running) => running.add_tables(tables),
            None => {
                let mut resnapshot = IncrementalSnapshot::new(
                    tables,
                    types,
                    self.config.snapshot.resnapshot_chunk_rows,
                );
                if self.catalog.open_window(&mut resnapshot).await? {
                    self.resnapshot = Some(resnapshot);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn on_watermark(
        &mut self,
        message: &MessageEvent,
    ) -> Result<(), ConnectorError> {
        let Some(mut resnapshot) = self.resnapshot.take() else {
            return Ok(());
        };
        match resnapshot.on_watermark(&message.content) {
            Some(rows) => {
                metrics::counter!("cdc_resnapshot_rows_total").increment(rows.len() as u64);
                for row in rows {
                    self.publish_row(row, false).await?;
                }
                if self.catalog.open_window(&mut resnapshot).await? {
                    self.resnapshot = Some(resnapshot);
                } else {
                    tracing::info!("re-snapshot done");
                }
            }
            None => self.resnapshot = Some(resnapshot),
        }
        Ok(())
    }
}
