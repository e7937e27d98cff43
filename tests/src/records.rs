//! Reading topics back: consume a topic from the beginning and decode each record's Avro
//! value through the schema registry, as an independent consumer would.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use local_stack::Stack;
use platform::{avro, kafka, registry::RegistryClient};
use rdkafka::{Message, consumer::Consumer};
use serde_json::Value;

/// One record of a topic, decoded (most helpers below read CDCChange records).
#[derive(Debug, Clone)]
pub struct CdcRecord {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp, if it has one.
    pub kafka_timestamp_millis: Option<i64>,
    pub value: Value,
}

impl CdcRecord {
    pub fn change_id(&self) -> &str {
        self.value["change_id"].as_str().unwrap_or_default()
    }
    pub fn table(&self) -> &str {
        self.value["table_name"].as_str().unwrap_or_default()
    }
    pub fn operation(&self) -> &str {
        self.value["operation"].as_str().unwrap_or_default()
    }
    /// Commit order: (commit LSN, sequence within the transaction).
    pub fn position(&self) -> (i64, i64) {
        (
            self.value["source"]["commit_lsn"]
                .as_i64()
                .unwrap_or_default(),
            self.value["source"]["sequence"]
                .as_i64()
                .unwrap_or_default(),
        )
    }
}

/// Reads the CDC topic from the beginning until `done` holds for the records read so far, or
/// fails after `timeout` saying how many records it had.
pub async fn read_cdc_until(
    brokers: &str,
    registry_url: &str,
    timeout: Duration,
    done: impl FnMut(&[CdcRecord]) -> bool,
) -> anyhow::Result<Vec<CdcRecord>> {
    read_topic_until(
        brokers,
        registry_url,
        platform::topics::CDC_CHANGES.name,
        timeout,
        done,
    )
    .await
}

/// Reads any Avro topic from the beginning until `done` holds, or fails after `timeout`.
pub async fn read_topic_until(
    brokers: &str,
    registry_url: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[CdcRecord]) -> bool,
) -> anyhow::Result<Vec<CdcRecord>> {
    let mut reader = TopicReader::new(brokers, registry_url, topic)?;
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            bail!(
                "timed out after {timeout:?} with {} records of {topic}",
                records.len()
            );
        }
        records.extend(reader.next(remaining.min(Duration::from_secs(2))).await?);
    }
    Ok(records)
}

/// Reads a whole Avro topic from the beginning: every record until none has come for `quiet`.
pub async fn read_topic_all(
    brokers: &str,
    registry_url: &str,
    topic: &str,
    quiet: Duration,
) -> anyhow::Result<Vec<CdcRecord>> {
    let mut reader = TopicReader::new(brokers, registry_url, topic)?;
    let mut records = Vec::new();
    while let Some(record) = reader.next(quiet).await? {
        records.push(record);
    }
    Ok(records)
}

/// A consumer of one topic from its beginning, in a group of its own, decoding through the
/// registry.
struct TopicReader {
    consumer: rdkafka::consumer::StreamConsumer<kafka::LoggingContext>,
    registry: RegistryClient,
    topic: String,
}

impl TopicReader {
    fn new(brokers: &str, registry_url: &str, topic: &str) -> anyhow::Result<Self> {
        let group = format!(
            "e2e-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_suffix()
        );
        let consumer =
            kafka::consumer(brokers, &group, "e2e", true).context("creating consumer")?;
        consumer.subscribe(&[topic]).context("subscribing")?;
        Ok(Self {
            consumer,
            registry: RegistryClient::new(registry_url),
            topic: topic.to_string(),
        })
    }

    /// The next record, or None when none came within `wait`.
    async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<CdcRecord>> {
        let topic = &self.topic;
        let Ok(message) = tokio::time::timeout(wait, self.consumer.recv()).await else {
            return Ok(None);
        };
        let message = message.with_context(|| format!("reading {topic}"))?;
        let payload = message
            .payload()
            .with_context(|| format!("a record of {topic} without value"))?;
        let value = avro::decode(&self.registry, payload)
            .await
            .with_context(|| format!("decoding a record of {topic}"))?;
        Ok(Some(CdcRecord {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            partition: message.partition(),
            offset: message.offset(),
            kafka_timestamp_millis: message.timestamp().to_millis(),
            value: avro::to_json(&value),
        }))
    }
}

/// The partition Java's producer (Kafka's `BuiltInPartitioner`, as Debezium uses it) puts a
/// record with `key` on: murmur2 of the key, made positive, modulo the partition count.
/// Written here from Kafka's `Utils.murmur2`, independently of librdkafka.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (java_murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's `Utils.murmur2` (seed `0x9747b28c`), as a signed 32-bit hash like Java's.
fn java_murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = 0x9747_b28c_u32 ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (index, byte) in tail.iter().enumerate() {
            h ^= u32::from(*byte) << (8 * index);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// A number that differs between calls (for unique consumer group names).
pub fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// [`read_cdc_until`] on the stack's broker and registry, panicking with the tail of the
/// connector's log when `done` does not hold within `timeout`.
pub async fn cdc_records(
    stack: &Stack,
    timeout: Duration,
    done: impl FnMut(&[CdcRecord]) -> bool,
) -> Vec<CdcRecord> {
    read_cdc_until(&stack.kafka_brokers(), &stack.registry_url(), timeout, done)
        .await
        .unwrap_or_else(|e| panic!("{e}\nconnector log:\n{}", stack.log_tail("connector", 40)))
}

/// The records of `table`, in commit order.
pub fn of_table<'a>(records: &'a [CdcRecord], table: &str) -> Vec<&'a CdcRecord> {
    let mut changes: Vec<&CdcRecord> = records.iter().filter(|r| r.table() == table).collect();
    changes.sort_by_key(|r| r.position());
    changes
}

/// Runs one of the independent Python readers (`tests/python/<script>`, on the project's venv)
/// against the stack for `count` CDC records, and returns the JSON lines it printed; panics
/// with its error output if it fails.
pub async fn python_reader_lines(
    stack: &Stack,
    script: &str,
    count: usize,
    timeout_secs: u64,
) -> Vec<Value> {
    let python =
        local_stack::python().expect("the project's Python venv (scripts/install-deps.sh)");
    let script = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(python)
        .args([
            script.as_str(),
            &stack.kafka_brokers(),
            &stack.registry_url(),
            &count.to_string(),
            &timeout_secs.to_string(),
        ])
        .output()
        .await
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "Python client {script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_gives_kafkas_own_test_vectors() {
        // Kafka's UtilsTest.testMurmur2.
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(java_murmur2(key.as_bytes()), hash, "{key}");
        }
        // The sign bit dropped, not the absolute value taken (which would give 1).
        assert_eq!(java_partition(b"a-little-bit-longer-string", 4), 3);
        assert_eq!(java_partition(b"abc", 4), 3);
    }
}
