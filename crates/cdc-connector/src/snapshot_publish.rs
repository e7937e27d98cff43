//! Publishing a consistent snapshot as READ records: the initial snapshot of a new slot, and
//! `initial_only` (a snapshot without a slot). Returns only once Kafka acknowledged every row.

use std::{sync::Arc, time::Duration};

use pgoutput::copy::Lsn;
use platform::{telemetry::Health, topics};

use crate::{
    changes::{ChangeEvent, Operation},
    error::{ConnectorError, ErrorKind},
    metadata::Schemas,
    session::{SessionConfig, publish::encode_change},
    sink::{OrderedSink, Outgoing, SendError, kafka::KafkaProducer},
    snapshot,
};

/// Reads the published tables in `snapshot_name` and publishes every row as a READ change,
/// returning once Kafka acknowledged them all.
pub async fn publish_snapshot(
    config: &SessionConfig,
    producer: KafkaProducer,
    schemas: &Schemas,
    client: &tokio_postgres::Client,
    snapshot_name: &str,
    consistent_point: Lsn,
    health: &Health,
) -> Result<u64, ConnectorError> {
    let (tables, types) = snapshot::plan(
        client,
        &config.target,
        &config.source.publication_name,
        &config.filter,
    )
    .await?;
    let change_schema = schemas
        .for_relations(tables.iter().map(|t| &t.relation), &types)
        .await?;
    let sink = OrderedSink::new(producer, consistent_point, health.clone());
    // Each table's metadata is stored before its rows, which name it.
    for table in &tables {
        let schema = &table.table_schema;
        let payload = schemas.encode_table_schema(schema, consistent_point)?;
        let record = Outgoing {
            topic: topics::CDC_TABLE_SCHEMAS.name,
            key: &schema.id,
            payload: &payload,
            timestamp_unix_millis: crate::unix_micros_now() / 1000,
        };
        send(&sink, record, None).await?;
    }
    sink.drained().await?;
    // Batches of rows: 4 batches in flight (1,024 rows) bound the memory the readers hold.
    let (changes, mut received) = tokio::sync::mpsc::channel(4);
    // Rows are filtered and encoded in the readers; this task only hands records to Kafka.
    let encoding = (Arc::new(config.clone()), Arc::new(change_schema));
    let prepare = move |change: &mut ChangeEvent, batch: &mut snapshot::RecordBatch| {
        let (config, schema) = &encoding;
        let now_unix_millis = batch.started_unix_millis();
        batch.push(|key, payload| {
            encode_change(
                config,
                schema,
                change,
                "a snapshot row",
                now_unix_millis,
                key,
                payload,
            )
        })
    };
    let exported = snapshot::ExportedSnapshot {
        target: &config.target,
        name: snapshot_name,
        consistent_point,
    };
    let reading = snapshot::read_tables(exported, tables, types, config.snapshot, prepare, changes);
    let publishing = async {
        let mut published = 0u64;
        while let Some(batch) = received.recv().await {
            for (key, payload) in batch.records() {
                let record = Outgoing {
                    topic: topics::CDC_CHANGES.name,
                    key,
                    payload,
                    // What encode_change wrote into the records as their `timestamp`.
                    timestamp_unix_millis: batch.started_unix_millis(),
                };
                let change = Some((batch.table.clone(), Operation::Read));
                send(&sink, record, change).await?;
                published += 1;
            }
        }
        Ok(published)
    };
    let (read, published) = tokio::join!(reading, publishing);
    let outcome = read?;
    let published = published?;
    sink.drained().await?;
    tracing::info!(
        rows = outcome.rows,
        published,
        seconds = outcome.elapsed.as_secs_f64(),
        "snapshot published and acknowledged"
    );
    Ok(published)
}

/// Hands a record to the sink, waiting while the producer's queue is full.
async fn send(
    sink: &OrderedSink<KafkaProducer>,
    record: Outgoing<'_>,
    change: Option<(std::sync::Arc<str>, crate::changes::Operation)>,
) -> Result<(), ConnectorError> {
    loop {
        match sink.try_send(record, change.clone()) {
            Ok(()) => return Ok(()),
            Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(SendError::Failed(error)) => return Err(error),
        }
    }
}

/// `initial_only`: a consistent snapshot without a slot (nothing will stream after it), taken
/// in a repeatable-read transaction that exports its snapshot to the parallel readers.
pub async fn snapshot_only(
    config: &SessionConfig,
    producer: KafkaProducer,
    schemas: &Schemas,
    health: &Health,
) -> Result<u64, ConnectorError> {
    let failed = |e: tokio_postgres::Error| ConnectorError::postgres("exporting a snapshot", &e);
    let client = crate::source::connect(&config.target).await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(failed)?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .map_err(failed)?;
    let (snapshot_name, position): (String, String) = (row.get(0), row.get(1));
    let position = pgoutput::copy::parse_lsn(&position).map_err(|e| {
        ConnectorError::new(
            ErrorKind::Protocol,
            "reading the current WAL position",
            e.to_string(),
        )
    })?;
    health.set(false, "snapshotting");
    let rows = publish_snapshot(
        config,
        producer,
        schemas,
        &client,
        &snapshot_name,
        position,
        health,
    )
    .await?;
    client.batch_execute("COMMIT").await.map_err(failed)?;
    Ok(rows)
}
