//! The catalog seam: what a streaming session asks PostgreSQL over an ordinary SQL connection
//! (a REPLICA IDENTITY FULL table's primary key, the published tables for a re-snapshot, a
//! re-snapshot window). Behind a trait so the session's rules are unit-tested with a fake.

use std::future::Future;

use pgoutput::row::TypeNames;

use super::PgTarget;
use crate::{
    error::ConnectorError,
    incremental::IncrementalSnapshot,
    privacy::ChangeFilter,
    snapshot::{self, SnapshotTable},
    table_schema::CatalogTable,
};

pub trait Catalog {
    /// The primary-key columns of a relation, in key order.
    fn primary_key(
        &self,
        relation_id: u32,
    ) -> impl Future<Output = Result<Vec<String>, ConnectorError>>;

    /// What the catalog says about a table's columns and user types, for its metadata record
    /// and for decoding enums and user-defined ranges.
    fn describe_table(
        &self,
        relation_id: u32,
    ) -> impl Future<Output = Result<CatalogTable, ConnectorError>>;

    /// The tables of the publication the filter keeps, with the types of their columns.
    fn published_tables(
        &self,
        target: &PgTarget,
        publication: &str,
        filter: &ChangeFilter,
    ) -> impl Future<Output = Result<(Vec<SnapshotTable>, TypeNames), ConnectorError>>;

    /// Reads the next window of a re-snapshot (low watermark, chunk, high watermark); false once
    /// every table is done.
    fn open_window(
        &self,
        resnapshot: &mut IncrementalSnapshot,
    ) -> impl Future<Output = Result<bool, ConnectorError>>;
}

/// The production catalog: an ordinary SQL connection, every call bounded by the target's
/// timeout so a silently cut connection cannot stall the session.
pub struct SqlCatalog {
    client: tokio_postgres::Client,
    target: PgTarget,
}

impl SqlCatalog {
    /// Connects (within the target's timeout).
    pub async fn connect(target: &PgTarget) -> Result<Self, ConnectorError> {
        Ok(Self {
            client: super::connect(target).await?,
            target: target.clone(),
        })
    }
}

impl Catalog for SqlCatalog {
    async fn primary_key(&self, relation_id: u32) -> Result<Vec<String>, ConnectorError> {
        let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&relation_id];
        let query = self.client.query(
            "SELECT a.attname::text FROM pg_index i \
                 JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.n",
            &parameters,
        );
        let what = format!("looking up the primary key of relation {relation_id}");
        let rows = self
            .target
            .within(&what, async {
                query.await.map_err(|e| ConnectorError::postgres(&what, &e))
            })
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn describe_table(&self, relation_id: u32) -> Result<CatalogTable, ConnectorError> {
        let what = format!("describing the columns of relation {relation_id}");
        self.target
            .within(&what, async {
                crate::table_schema::read_catalog(&self.client, relation_id)
                    .await
                    .map_err(|e| ConnectorError::postgres(&what, &e))
            })
            .await
    }

    async fn published_tables(
        &self,
        target: &PgTarget,
        publication: &str,
        filter: &ChangeFilter,
    ) -> Result<(Vec<SnapshotTable>, TypeNames), ConnectorError> {
        self.target
            .within(
                "reading the published tables",
                snapshot::plan(&self.client, target, publication, filter),
            )
            .await
    }

    async fn open_window(
        &self,
        resnapshot: &mut IncrementalSnapshot,
    ) -> Result<bool, ConnectorError> {
        self.target
            .within(
                "reading a re-snapshot window",
                resnapshot.open_window(&self.client),
            )
            .await
    }
}
