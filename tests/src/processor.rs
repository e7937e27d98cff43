//! Helpers for the processor's end-to-end tests: known input records produced straight into
//! the source topics (Avro through the real registry), the processor binary, results read back.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use apache_avro::types::Value as Avro;
use platform::{avro::RegisteredSchema, registry::RegistryClient, schemas, topics};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// Produces Avro records of the platform's schemas into chosen partitions.
pub struct SourceWriter {
    producer: FutureProducer<platform::kafka::LoggingContext>,
    schemas: BTreeMap<&'static str, RegisteredSchema>,
}

impl SourceWriter {
    /// Provisions every topic and registers the input schemas.
    pub async fn new(brokers: &str, registry_url: &str) -> anyhow::Result<SourceWriter> {
        platform::kafka::provision_topics(brokers, topics::ALL).await?;
        let registry = RegistryClient::new(registry_url);
        let mut registered = BTreeMap::new();
        for (topic, text) in [
            (topics::APP_EVENTS.name, schemas::APP_EVENT),
            (topics::CLICKSTREAM.name, schemas::CLICKSTREAM),
            (topics::CDC_CHANGES.name, schemas::CDC_CHANGE),
            (topics::APP_LOGS.name, schemas::APP_LOG),
            (topics::EXTERNAL_DATA.name, schemas::EXTERNAL_DATA),
        ] {
            let id = registry
                .register(&platform::registry::value_subject(topic), text)
                .await?;
            registered.insert(
                topic,
                RegisteredSchema {
                    id,
                    schema: schemas::parse(text)?,
                },
            );
        }
        let producer = platform::kafka::producer(brokers, "e2e-source", Duration::from_secs(30))?;
        Ok(SourceWriter {
            producer,
            schemas: registered,
        })
    }

    /// Writes `value` (JSON in the schema's shape) to `topic`'s `partition`; returns the offset.
    pub async fn write(
        &self,
        topic: &'static str,
        partition: i32,
        key: &str,
        value: Value,
    ) -> anyhow::Result<i64> {
        let registered = self
            .schemas
            .get(topic)
            .with_context(|| format!("no schema for {topic}"))?;
        let avro = Avro::try_from(value.clone())
            .and_then(|v| v.resolve(&registered.schema))
            .with_context(|| format!("{value} does not fit the schema of {topic}"))?;
        let bytes = registered.encode(avro)?;
        let delivery = self
            .producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(key)
                    .payload(&bytes),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing to {topic}[{partition}]"))?;
        Ok(delivery.offset)
    }

    /// Writes raw bytes (for dead-letter tests).
    pub async fn write_raw(
        &self,
        topic: &'static str,
        partition: i32,
        payload: &[u8],
    ) -> anyhow::Result<i64> {
        let delivery = self
            .producer
            .send(
                FutureRecord::<str, [u8]>::to(topic)
                    .partition(partition)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
        Ok(delivery.offset)
    }
}

pub fn app_event(
    id: &str,
    event_type: &str,
    source: &str,
    user: Option<&str>,
    session: &str,
    t: i64,
) -> Value {
    json!({
        "event_id": id, "event_type": event_type, "source": source,
        "user_id": user, "session_id": session, "booking_id": null, "device": null,
        "timestamp": t, "received_at": t, "properties": {}
    })
}

pub fn click(
    id: &str,
    session: &str,
    page: &str,
    interaction: &str,
    x: i32,
    y: i32,
    t: i64,
) -> Value {
    json!({
        "event_id": id, "session_id": session, "user_id": null, "interaction": interaction,
        "page_url": page, "element_id": null, "x": x, "y": y, "viewport_width": 1280,
        "viewport_height": 800, "device_type": "desktop", "referrer": null,
        "timestamp": t, "received_at": t
    })
}

pub fn log_line(id: &str, service: &str, level: &str, t: i64) -> Value {
    json!({
        "log_id": id, "service": service, "level": level, "message": "m", "logger": null,
        "host": null, "trace_id": null, "request_id": null, "user_id": null,
        "session_id": null, "booking_id": null, "attributes": {}, "timestamp": t, "received_at": t
    })
}

pub fn external(id: &str, location: &str, temperature: f64, t: i64) -> Value {
    json!({
        "record_id": id, "source_type": "WEATHER", "pipeline": "weather", "location": location,
        "observed_at": t, "fetched_at": t,
        "payload_json": json!({"temperature_c": temperature}).to_string(),
        "quality_warnings": [], "received_at": t
    })
}

/// A CDCChange as the connector writes it. `columns` are the row's columns as strings or
/// numbers; `key` is the primary-key column.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of the record it builds"
)]
pub fn cdc_change(
    table: &str,
    key_column: &str,
    key: i64,
    operation: &str,
    lsn: i64,
    columns: Value,
    old: Option<Value>,
    t: i64,
) -> Value {
    let mut after = columns.as_object().cloned().unwrap_or_default();
    after.insert(key_column.into(), json!(key));
    let (before, after) = match operation {
        "DELETE" => (Some(Value::Object(after)), None),
        _ => (old, Some(Value::Object(after))),
    };
    json!({
        "change_id": format!("{lsn:016X}-00000000"),
        "table_name": table,
        "operation": operation,
        "primary_key": { key_column: key },
        "before_values": before,
        "after_values": after,
        "timestamp": t,
        "source_database": "travel",
        "source": {
            "commit_lsn": lsn, "event_lsn": lsn, "transaction_id": lsn, "sequence": 0,
            "commit_timestamp": t * 1000, "slot_name": "e2e"
        }
    })
}

/// The connector's Kafka key for a one-column key.
pub fn cdc_key(table: &str, key_column: &str, key: i64) -> String {
    format!("{table}/{}", json!({ key_column: key }))
}

/// `processor` command line for a test: its own listener, short idle timeout and commit
/// interval; `overrides` replace those defaults or add options.
pub fn processor_command(
    stack: &local_stack::Stack,
    listen: &str,
    overrides: &[(&str, &str)],
) -> tokio::process::Command {
    let mut args: Vec<(String, String)> = [
        ("--listen", listen.to_string()),
        ("--sql-listen", free_listen()),
        ("--kafka-brokers", stack.kafka_brokers()),
        ("--schema-registry-url", stack.registry_url()),
        ("--idle-timeout-ms", "1500".to_string()),
        ("--commit-interval-ms", "100".to_string()),
        ("--allowed-lateness-ms", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (flag, value) in overrides {
        match args.iter_mut().find(|(k, _)| k == flag) {
            Some(entry) => entry.1 = value.to_string(),
            None => args.push((flag.to_string(), value.to_string())),
        }
    }
    let mut command = tokio::process::Command::new(stack.processor_binary());
    command
        .args(args.into_iter().flat_map(|(k, v)| [k, v]))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

pub fn free_listen() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:39465".into())
}

/// Results by id; fails if one id was seen with two different values.
pub fn by_id(
    records: &[crate::CdcRecord],
    id_field: &str,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for r in records {
        let id = r.value[id_field].as_str().unwrap_or_default().to_string();
        if let Some(previous) = out.get(&id) {
            if previous != &r.value {
                bail!("{id} was emitted with two values:\n{previous}\n{}", r.value);
            }
        } else {
            out.insert(id, r.value.clone());
        }
    }
    Ok(out)
}

/// Every record of `topic` (key, value or None for a tombstone), read from the beginning until
/// `done` holds or `timeout` passes.
pub async fn read_raw_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[(String, Option<Vec<u8>>)]) -> bool,
) -> anyhow::Result<Vec<(String, Option<Vec<u8>>)>> {
    use rdkafka::{Message, consumer::Consumer};
    let group = format!("e2e-raw-{}-{}", std::process::id(), crate::rand_suffix());
    let consumer = platform::kafka::consumer(brokers, &group, "e2e", true)?;
    consumer.subscribe(&[topic])?;
    let deadline = std::time::Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() {
            bail!("timed out with {} records of {topic}", records.len());
        }
        let Ok(message) =
            tokio::time::timeout(remaining.min(Duration::from_secs(2)), consumer.recv()).await
        else {
            continue;
        };
        let message = message?;
        records.push((
            String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            message.payload().map(<[u8]>::to_vec),
        ));
    }
    Ok(records)
}

/// What [`read_results`] found.
pub struct Results {
    /// Every record read, duplicates included.
    pub records: Vec<crate::CdcRecord>,
    /// One value per result id (checked: no id was read with two different values).
    pub by_id: BTreeMap<String, Value>,
    /// Expected ids that had not arrived when the time ran out.
    pub missing: Vec<String>,
}

/// Reads `topic_processed_events` until every id in `expected` has arrived or `timeout` passes.
pub async fn read_results(
    brokers: &str,
    registry_url: &str,
    expected: impl IntoIterator<Item = impl AsRef<str>>,
    timeout: Duration,
) -> anyhow::Result<Results> {
    let expected: Vec<String> = expected
        .into_iter()
        .map(|e| e.as_ref().to_string())
        .collect();
    let ids = |records: &[crate::CdcRecord]| -> std::collections::BTreeSet<String> {
        records
            .iter()
            .map(|r| {
                r.value["result_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let mut records = Vec::new();
    // On time-out the records read so far are kept, to say what is missing.
    let _ = crate::read_topic_until(
        brokers,
        registry_url,
        platform::topics::PROCESSED_EVENTS.name,
        timeout,
        |read| {
            records = read.to_vec();
            let seen = ids(read);
            expected.iter().all(|id| seen.contains(id))
        },
    )
    .await;
    let seen = ids(&records);
    Ok(Results {
        by_id: by_id(&records, "result_id")?,
        missing: expected
            .into_iter()
            .filter(|id| !seen.contains(id))
            .collect(),
        records,
    })
}
