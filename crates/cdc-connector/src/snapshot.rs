//! The initial snapshot: every published table read in parallel chunks of pages (ctid ranges,
//! so any table works, with or without a primary key) inside the snapshot the slot exported at
//! its consistent point. Rows become READ changes; the stream then starts exactly at that point,
//! so nothing is missed or doubled at the seam. Values go through the same text decoder as
//! pgoutput's, so a READ value equals the value a later change would carry.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use pgoutput::{
    copy::Lsn,
    copy_text,
    message::{Column, Relation, ReplicaIdentity, TupleData, TupleValue},
    row::{TypeNames, copy_selected_into, decode_tuple_into},
};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::{
    changes::{ChangeEvent, Operation, Position},
    error::{ConnectorError, ErrorKind},
    privacy::ChangeFilter,
    source::{PgTarget, setup::quote_ident},
};

/// When the connector snapshots, as in Debezium.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot the tables when the slot has no completed snapshot, then stream.
    Initial,
    /// Never snapshot: stream changes from the slot's position only.
    NoData,
    /// Snapshot only when there is no usable slot (it is missing), then stream.
    WhenNeeded,
    /// Snapshot the tables, publish them, and exit without streaming.
    InitialOnly,
}

#[derive(Clone, Copy, Debug)]
pub struct SnapshotSettings {
    /// Parallel readers, each on its own connection in the same exported snapshot.
    pub workers: usize,
    /// Heap pages per chunk: bounds the memory one reader holds (8 KiB a page).
    pub chunk_pages: u64,
    /// Rows per chunk of an ad-hoc re-snapshot while streaming.
    pub resnapshot_chunk_rows: usize,
}

/// One table to read, described like a pgoutput Relation so rows decode the same way.
pub struct SnapshotTable {
    pub relation: Relation,
    pub qualified_name: Arc<str>,
    /// SQL type of each column (`format_type`), for typed literals in keyset queries.
    pub column_types: Vec<String>,
    /// The table's column metadata, published before its rows, which name it.
    pub table_schema: Arc<crate::table_schema::TableSchema>,
    pages: u64,
    estimated_rows: u64,
}

impl SnapshotTable {
    /// Columns as a SQL select list.
    pub fn select_list(&self) -> String {
        self.relation
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn sql_name(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.relation.namespace),
            quote_ident(&self.relation.name)
        )
    }

    /// A row of text values (as `simple_query` returns them) as a READ change, decoded exactly
    /// like pgoutput's tuples.
    pub fn read_change(
        &self,
        row: &tokio_postgres::SimpleQueryRow,
        types: &TypeNames,
        position: Position,
    ) -> Result<ChangeEvent, ConnectorError> {
        let tuple = TupleData(
            (0..row.len())
                .map(|i| match row.get(i) {
                    Some(text) => TupleValue::Text(text.as_bytes().to_vec()),
                    None => TupleValue::Null,
                })
                .collect(),
        );
        self.tuple_change(&tuple, types, position)
            .map_err(|e| self.undecodable(e))
    }

    /// A row of `COPY ... TO STDOUT` (text format) as a READ change, decoded exactly like
    /// pgoutput's tuples, into `change` (from [`SnapshotTable::read_into`]). The row is split
    /// into `scratch`; passing the same `scratch` and `change` for every row reuses their
    /// buffers (no allocation per row or value where the table's rows are alike).
    pub fn read_copy_row(
        &self,
        row: &[u8],
        scratch: &mut TupleData,
        types: &TypeNames,
        change: &mut ChangeEvent,
    ) -> Result<(), ConnectorError> {
        copy_text::decode_row_into(row, self.relation.columns.len(), scratch)
            .and_then(|()| self.tuple_change_into(scratch, types, change))
            .map_err(|e| self.undecodable(e))
    }

    /// An empty READ change of this table at `position`, to decode rows into.
    pub fn read_into(&self, position: Position) -> ChangeEvent {
        ChangeEvent {
            table: self.qualified_name.clone(),
            operation: Operation::Read,
            primary_key: Vec::new(),
            before: None,
            after: None,
            position,
            table_schema: Some(self.table_schema.id.clone()),
        }
    }

    fn undecodable(&self, error: pgoutput::error::DecodeError) -> ConnectorError {
        ConnectorError::new(
            ErrorKind::Undecodable,
            format!("snapshot of {}", self.qualified_name),
            error.to_string(),
        )
    }

    fn tuple_change(
        &self,
        tuple: &TupleData,
        types: &TypeNames,
        position: Position,
    ) -> Result<ChangeEvent, pgoutput::error::DecodeError> {
        let mut change = self.read_into(position);
        self.tuple_change_into(tuple, types, &mut change)?;
        Ok(change)
    }

    /// Decodes `tuple` into `change`, a READ change of this table ([`Self::read_into`]) whose
    /// table, schema id and position are kept: the operation, old row, row and key are set
    /// anew, since a filter may have changed what the previous row left there.
    fn tuple_change_into(
        &self,
        tuple: &TupleData,
        types: &TypeNames,
        change: &mut ChangeEvent,
    ) -> Result<(), pgoutput::error::DecodeError> {
        change.operation = Operation::Read;
        change.before = None;
        let after = change.after.get_or_insert_with(Vec::new);
        decode_tuple_into(&self.relation, tuple, false, types, after)?;
        let columns = &self.relation.columns;
        copy_selected_into(
            after,
            |index| columns.get(index).is_some_and(|column| column.is_key),
            &mut change.primary_key,
        );
        Ok(())
    }
}

struct Chunk {
    table: usize,
    first_page: u64,
    /// None: to the end of the table.
    end_page: Option<u64>,
}

/// The published tables the filter keeps, with their columns (generated columns excluded, as
/// pgoutput excludes them), primary keys, sizes and type names.
pub async fn plan(
    client: &Client,
    target: &PgTarget,
    publication: &str,
    filter: &ChangeFilter,
) -> Result<(Vec<SnapshotTable>, TypeNames), ConnectorError> {
    // Classified like every PostgreSQL error: a lost connection is transient (a brief catalog
    // outage during a re-snapshot request must not stop the connector), a refusal definite.
    let failed = |e: tokio_postgres::Error| {
        ConnectorError::postgres(
            format!("planning the snapshot of database {}", target.database),
            &e,
        )
    };
    let tables = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, \
                    (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint, \
                    greatest(c.reltuples, 0)::bigint \
             FROM pg_publication_tables p \
             JOIN pg_namespace n ON n.nspname = p.schemaname \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
             WHERE p.pubname = $1 ORDER BY 2, 3",
            &[&publication],
        )
        .await
        .map_err(failed)?;
    let mut types = TypeNames::new();
    let mut planned = Vec::new();
    for table in tables {
        let (oid, namespace, name): (u32, String, String) =
            (table.get(0), table.get(1), table.get(2));
        let qualified_name: Arc<str> = format!("{namespace}.{name}").into();
        if !filter.includes_table(&qualified_name) {
            continue;
        }
        let columns = client
            .query(
                "SELECT a.attname::text, \
                        CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, \
                        a.atttypmod, \
                        coalesce(a.attnum = ANY(i.indkey), false), \
                        bt.typnamespace::regnamespace::text, bt.typname::text, \
                        format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END \
                 LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
                 ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(failed)?;
        let column_types = columns
            .iter()
            .map(|column| column.get::<_, String>(6))
            .collect();
        let columns = columns
            .iter()
            .map(|column| {
                let type_id: u32 = column.get(1);
                types.learn(type_id, column.get::<_, &str>(4), column.get::<_, &str>(5));
                Column {
                    name: column.get::<_, &str>(0).into(),
                    type_id,
                    type_modifier: column.get(2),
                    is_key: column.get(3),
                }
            })
            .collect();
        let relation = Relation {
            id: oid,
            namespace,
            name,
            replica_identity: ReplicaIdentity::Default,
            columns,
        };
        let catalog = crate::table_schema::read_catalog(client, oid)
            .await
            .map_err(failed)?;
        catalog.teach(&mut types);
        let table_schema = crate::table_schema::describe(
            &qualified_name,
            &relation,
            &catalog,
            &types,
            filter,
            |name| {
                relation
                    .columns
                    .iter()
                    .any(|c| c.is_key && *c.name == *name)
            },
        )
        .map_err(|e| {
            ConnectorError::new(
                ErrorKind::Config,
                format!("the change filter on {qualified_name}"),
                e.to_string(),
            )
        })?;
        planned.push(SnapshotTable {
            relation,
            qualified_name,
            column_types,
            table_schema: Arc::new(table_schema),
            pages: u64::try_from(table.get::<_, i64>(3)).unwrap_or(0),
            estimated_rows: u64::try_from(table.get::<_, i64>(4)).unwrap_or(0),
        });
    }
    Ok((planned, types))
}

fn chunks(tables: &[SnapshotTable], chunk_pages: u64) -> VecDeque<Chunk> {
    let mut chunks = VecDeque::new();
    for (index, table) in tables.iter().enumerate() {
        let mut first_page = 0;
        // The table may have grown since the snapshot was taken; rows it can see are all on
        // pages that existed then, and the last chunk is open-ended anyway.
        while first_page + chunk_pages < table.pages {
            chunks.push_back(Chunk {
                table: index,
                first_page,
                end_page: Some(first_page + chunk_pages),
            });
            first_page += chunk_pages;
        }
        chunks.push_back(Chunk {
            table: index,
            first_page,
            end_page: None,
        });
    }
    chunks
}

pub struct SnapshotOutcome {
    pub rows: u64,
    pub elapsed: Duration,
}

/// READ changes handed from a reader to the publisher at once: one channel message per batch
/// instead of per row.
const BATCH_ROWS: usize = 256;

/// A reader's encoded rows for the publisher, packed: the keys in one string, the payloads in
/// one buffer. A row then costs no allocation of its own in the reader and no free on the
/// publisher's thread (a free of memory another thread allocated takes that arena's lock).
pub struct RecordBatch {
    /// The table every row of the batch belongs to: a batch never spans chunks.
    pub table: Arc<str>,
    keys: String,
    payloads: Vec<u8>,
    /// Per row: where its key and where its payload end.
    ends: Vec<(usize, usize)>,
    /// When the batch was started (Unix milliseconds): the processing time its rows carry.
    /// Read once per batch rather than per row: a clock read per row was a sixth of the
    /// readers' samples in a profile of a 1M-row snapshot (`perf record -a`), and a batch fills
    /// within a millisecond.
    started_unix_millis: i64,
}

impl RecordBatch {
    fn new(table: Arc<str>) -> Self {
        Self {
            table,
            keys: String::with_capacity(BATCH_ROWS * 48),
            payloads: Vec::with_capacity(BATCH_ROWS * 512),
            ends: Vec::with_capacity(BATCH_ROWS),
            started_unix_millis: crate::unix_micros_now() / 1000,
        }
    }

    /// When the batch was started, in Unix milliseconds.
    pub fn started_unix_millis(&self) -> i64 {
        self.started_unix_millis
    }

    /// Adds a row: `encode` appends its key and its payload to the buffers it is given. A row
    /// that fails to encode leaves the batch as it was.
    pub fn push(
        &mut self,
        encode: impl FnOnce(&mut String, &mut Vec<u8>) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let starts = (self.keys.len(), self.payloads.len());
        match encode(&mut self.keys, &mut self.payloads) {
            Ok(()) => {
                self.ends.push((self.keys.len(), self.payloads.len()));
                Ok(())
            }
            Err(error) => {
                self.keys.truncate(starts.0);
                self.payloads.truncate(starts.1);
                Err(error)
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The rows' keys and payloads, in the order they were pushed.
    pub fn records(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut starts = (0, 0);
        self.ends.iter().map(move |&(key_end, payload_end)| {
            let (key_start, payload_start) = std::mem::replace(&mut starts, (key_end, payload_end));
            (
                &self.keys[key_start..key_end],
                &self.payloads[payload_start..payload_end],
            )
        })
    }
}

/// A snapshot exported by a transaction (or a slot's creation) that readers join.
pub struct ExportedSnapshot<'a> {
    pub target: &'a PgTarget,
    pub name: &'a str,
    /// The WAL position the snapshot shows the database at.
    pub consistent_point: Lsn,
}

/// Reads every table in `snapshot` with `settings.workers` connections, turning each
/// READ change into a record of a [`RecordBatch`] with `prepare` (in the readers, so encoding
/// runs in parallel too) and sending the batches of up to [`BATCH_ROWS`] rows to `out`
/// (bounded, so a slow Kafka slows the readers instead of filling memory).
pub async fn read_tables<P>(
    snapshot: ExportedSnapshot<'_>,
    tables: Vec<SnapshotTable>,
    types: TypeNames,
    settings: SnapshotSettings,
    prepare: P,
    out: mpsc::Sender<RecordBatch>,
) -> Result<SnapshotOutcome, ConnectorError>
where
    P: Fn(&mut ChangeEvent, &mut RecordBatch) -> Result<(), ConnectorError>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let started = Instant::now();
    let snapshot_time = crate::unix_micros_now();
    let total: u64 = tables.iter().map(|t| t.estimated_rows).sum();
    metrics::gauge!("cdc_snapshot_rows_estimated").set(total as f64);
    let queue = Arc::new(Mutex::new(chunks(&tables, settings.chunk_pages.max(1))));
    let tables = Arc::new(tables);
    let types = Arc::new(types);
    let done = Arc::new(AtomicU64::new(0));
    tracing::info!(
        tables = tables.len(),
        estimated_rows = total,
        workers = settings.workers,
        "snapshot started"
    );
    let progress = tokio::spawn(report_progress(done.clone(), total, started));
    let readers = ReaderRuntime::new(settings.workers.max(1))?;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..settings.workers.max(1) {
        let worker = Worker {
            target: snapshot.target.clone(),
            snapshot_name: snapshot.name.to_string(),
            position: Position {
                commit_lsn: snapshot.consistent_point,
                event_lsn: snapshot.consistent_point,
                xid: 0,
                sequence: 0,
                commit_time_unix_micros: snapshot_time,
            },
            queue: queue.clone(),
            tables: tables.clone(),
            types: types.clone(),
            done: done.clone(),
            prepare: prepare.clone(),
            out: out.clone(),
        };
        workers.spawn_on(worker.run(), readers.handle());
    }
    drop(out);
    let mut result = Ok(());
    while let Some(joined) = workers.join_next().await {
        let outcome = joined.unwrap_or_else(|e| {
            Err(ConnectorError::new(
                ErrorKind::Protocol,
                "a snapshot reader panicked",
                e.to_string(),
            ))
        });
        if let Err(error) = outcome {
            // One failed reader fails the snapshot: the others stop rather than publish a
            // snapshot with holes.
            workers.abort_all();
            result = Err(error);
        }
    }
    progress.abort();
    result?;
    let rows = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    tracing::info!(
        rows,
        seconds = elapsed.as_secs_f64(),
        rows_per_second = rows as f64 / elapsed.as_secs_f64().max(1e-9),
        "snapshot read"
    );
    Ok(SnapshotOutcome { rows, elapsed })
}

/// The readers' own threads, one per reader: they decode and encode in parallel whatever
/// runtime the connector's pipeline runs on (a single-threaded one, which keeps the replication
/// stream, the decoder and the producer's hand-off on one thread).
struct ReaderRuntime {
    handle: tokio::runtime::Handle,
    /// Taken when dropped, to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl ReaderRuntime {
    fn new(threads: usize) -> Result<Self, ConnectorError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("snapshot-reader")
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectorError::new(
                    ErrorKind::Config,
                    "starting the snapshot readers' threads",
                    e.to_string(),
                )
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for ReaderRuntime {
    fn drop(&mut self) {
        // Dropped from async code: a runtime must not block there waiting for its threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn report_progress(done: Arc<AtomicU64>, total: u64, started: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let rows = done.load(Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let rate = rows as f64 / seconds;
        let remaining = total.saturating_sub(rows) as f64;
        let eta = if rate > 0.0 {
            format!("{:.0}s", remaining / rate)
        } else {
            "?".into()
        };
        let percent = if total > 0 {
            (rows as f64 * 100.0 / total as f64).min(100.0)
        } else {
            0.0
        };
        tracing::info!(
            "snapshot: {rows}/{total} rows ({percent:.0}%), {rate:.0} rows/s, ETA {eta}"
        );
    }
}

struct Worker<P> {
    target: PgTarget,
    snapshot_name: String,
    position: Position,
    queue: Arc<Mutex<VecDeque<Chunk>>>,
    tables: Arc<Vec<SnapshotTable>>,
    types: Arc<TypeNames>,
    done: Arc<AtomicU64>,
    prepare: P,
    out: mpsc::Sender<RecordBatch>,
}

impl<P> Worker<P>
where
    P: Fn(&mut ChangeEvent, &mut RecordBatch) -> Result<(), ConnectorError> + Send + Sync + 'static,
{
    async fn run(self) -> Result<(), ConnectorError> {
        let client = crate::source::connect(&self.target).await?;
        let failed = |context: &str, e: tokio_postgres::Error| match e.as_db_error() {
            Some(db) => ConnectorError::sqlstate(context, db.code().code(), db.message()),
            None => ConnectorError::new(
                ErrorKind::SourceUnavailable,
                format!(
                    "{context} (PostgreSQL at {}:{})",
                    self.target.host, self.target.port
                ),
                e.to_string(),
            ),
        };
        // `connect` applies the output settings every connection shares.
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                crate::source::setup::quote_literal(&self.snapshot_name)
            ))
            .await
            .map_err(|e| failed("joining the exported snapshot", e))?;
        loop {
            let Some(chunk) = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            else {
                return Ok(());
            };
            let table = &self.tables[chunk.table];
            let upper = chunk
                .end_page
                .map(|end| format!(" AND ctid < '({end},0)'::tid"))
                .unwrap_or_default();
            // COPY streams the rows as they are read: no chunk collected in memory, and the
            // text format is the types' output, as pgoutput sends it.
            let sql = format!(
                "COPY (SELECT {} FROM {} WHERE ctid >= '({},0)'::tid{upper}) TO STDOUT",
                table.select_list(),
                table.sql_name(),
                chunk.first_page
            );
            let reading = |e| failed(&format!("reading {}", table.qualified_name), e);
            let rows = client.copy_out(&sql).await.map_err(reading)?;
            let mut rows = std::pin::pin!(rows);
            // One handle per chunk: a registry look-up per row would cost more than the row.
            let rows_read = metrics::counter!("cdc_snapshot_rows_total", "table" => table.qualified_name.to_string());
            let new_batch = || RecordBatch::new(table.qualified_name.clone());
            let mut batch = new_batch();
            let mut scratch = TupleData(Vec::new());
            let mut change = table.read_into(self.position);
            loop {
                let row = rows.next().await.transpose().map_err(reading)?;
                if let Some(row) = &row {
                    table.read_copy_row(row, &mut scratch, &self.types, &mut change)?;
                    (self.prepare)(&mut change, &mut batch)?;
                }
                if batch.len() == BATCH_ROWS || (row.is_none() && !batch.is_empty()) {
                    let count = batch.len() as u64;
                    if self
                        .out
                        .send(std::mem::replace(&mut batch, new_batch()))
                        .await
                        .is_err()
                    {
                        // The publisher stopped (Kafka failed): its error is the one reported.
                        return Ok(());
                    }
                    self.done.fetch_add(count, Ordering::Relaxed);
                    rows_read.increment(count);
                }
                if row.is_none() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgoutput::row::{ColumnValue, TypedValue};

    #[test]
    fn a_record_batch_gives_back_its_rows_in_order_and_drops_a_failed_one() {
        /// An encoder that writes `payload` and gives `key`.
        fn row(
            key: &'static str,
            payload: &'static [u8],
        ) -> impl FnOnce(&mut String, &mut Vec<u8>) -> Result<(), ConnectorError> {
            move |keys, out| {
                keys.push_str(key);
                out.extend_from_slice(payload);
                Ok(())
            }
        }
        let before = crate::unix_micros_now() / 1000;
        let mut batch = RecordBatch::new(Arc::from("public.t"));
        let after = crate::unix_micros_now() / 1000;
        assert!((before..=after).contains(&batch.started_unix_millis()));
        assert!(batch.is_empty());
        batch.push(row("k1", b"first")).unwrap();
        let failed = batch.push(|keys, payload| {
            keys.push_str("partial key");
            payload.extend_from_slice(b"partial");
            Err(ConnectorError::new(ErrorKind::Unpublishable, "a row", "no"))
        });
        assert!(failed.is_err());
        batch.push(row("", b"")).unwrap();
        batch.push(row("key three", b"third")).unwrap();
        assert_eq!(batch.len(), 3);
        let records: Vec<(&str, &[u8])> = batch.records().collect();
        assert_eq!(
            records,
            [
                ("k1", &b"first"[..]),
                ("", &b""[..]),
                ("key three", &b"third"[..])
            ]
        );
    }

    fn table(pages: u64) -> SnapshotTable {
        SnapshotTable {
            relation: Relation {
                id: 1,
                namespace: "public".into(),
                name: "t".into(),
                replica_identity: ReplicaIdentity::Default,
                columns: vec![],
            },
            qualified_name: Arc::from("public.t"),
            column_types: vec![],
            table_schema: Arc::new(crate::table_schema::TableSchema {
                id: "public.t/0".into(),
                table: "public.t".into(),
                version: "0".into(),
                columns: vec![],
            }),
            pages,
            estimated_rows: 0,
        }
    }

    #[test]
    fn copy_rows_decoded_into_one_change_equal_fresh_changes() {
        let column = |name: &str, type_id, is_key| Column {
            is_key,
            name: name.into(),
            type_id,
            type_modifier: -1,
        };
        let mut keyed = table(1);
        // A two-column key, text then integer, around a uuid and a jsonb.
        keyed.relation.columns = vec![
            column("region", 25, true),
            column("external_id", 2950, false),
            column("id", 20, true),
            column("preferences", 3802, false),
        ];
        let types = TypeNames::new();
        let position = Position {
            commit_lsn: 0x16B_3748,
            event_lsn: 0x16B_3748,
            xid: 0,
            sequence: 0,
            commit_time_unix_micros: 1,
        };
        let rows: [&[u8]; 5] = [
            b"north\t0f8fad5b-d9cb-469f-a165-70867728950e\t1\t{}\n",
            b"a much longer region\t\\N\t2\t{\"a\": 1}\n",
            b"\\N\t0f8fad5b-d9cb-469f-a165-70867728950e\t3\t[]\n",
            b"s\t0f8fad5b-d9cb-469f-a165-70867728950e\t4\t{}\n",
            b"s\tnot a uuid\t5\t{}\n",
        ];
        let mut scratch = TupleData(Vec::new());
        let mut change = keyed.read_into(position);
        for (index, row) in rows.iter().enumerate() {
            let fresh = copy_text::decode_row(row, 4)
                .and_then(|tuple| keyed.tuple_change(&tuple, &types, position));
            let into = keyed.read_copy_row(row, &mut scratch, &types, &mut change);
            match (fresh, into) {
                (Ok(fresh), Ok(())) => assert_eq!(fresh, change, "row {index}"),
                (Err(_), Err(error)) => assert!(
                    error.to_string().contains("not a hyphenated"),
                    "row {index}: {error}"
                ),
                (fresh, into) => panic!("row {index}: {fresh:?} but into {into:?}"),
            }
            if index == 1 {
                // As a filter leaves it: a column dropped, a key value masked.
                change.after.as_mut().unwrap().remove(1);
                change.primary_key[0].1 = ColumnValue::Value(TypedValue::Text("***".into()));
            }
        }
    }

    #[test]
    fn chunks_cover_every_page_and_the_last_is_open_ended() {
        let planned = chunks(&[table(10), table(0)], 4);
        let ranges: Vec<(usize, u64, Option<u64>)> = planned
            .iter()
            .map(|c| (c.table, c.first_page, c.end_page))
            .collect();
        assert_eq!(
            ranges,
            vec![(0, 0, Some(4)), (0, 4, Some(8)), (0, 8, None), (1, 0, None)]
        );
    }
}
