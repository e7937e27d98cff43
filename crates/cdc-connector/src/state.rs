//! The connector's durable state in Kafka (`topic_connector_state`, compacted, keyed by
//! database and slot): whether the initial snapshot of a slot completed. An interrupted snapshot
//! is then detected and redone instead of being taken for a finished one.

use std::time::Duration;

use platform::kafka::LoggingContext;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde::{Deserialize, Serialize};

const TOPIC: &str = platform::topics::CONNECTOR_STATE.name;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    Started,
    Complete,
    /// The slot was created without a snapshot (`--snapshot-mode no_data`): streaming began at
    /// its consistent point. Recorded so that a slot lost later is noticed in this mode too.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    pub status: SnapshotStatus,
    /// The slot's consistent point the snapshot was taken at, as `X/Y`.
    pub consistent_point: String,
}

pub fn key(database: &str, slot: &str) -> String {
    format!("{database}/{slot}")
}

/// A producer for the few state records of a session start or a snapshot, each awaited on
/// its own (the connector's record producer answers through its ledger instead). Not
/// idempotent: librdkafka holds an idempotent producer's first record for 500 ms while it
/// obtains a producer id, at every start, and a state record written twice after a retry is
/// still the same state (the topic is compacted; a probe is only looked for).
fn state_producer(brokers: &str) -> Result<FutureProducer<LoggingContext>, String> {
    platform::kafka::client_config(brokers)
        .set("client.id", "cdc-connector")
        .set("acks", "all")
        .create_with_context(LoggingContext {
            service: "cdc-connector",
        })
        .map_err(|e| format!("cannot create a producer for {TOPIC}: {e}"))
}

/// Writes the state of `key` and waits until Kafka acknowledged it.
pub async fn write(brokers: &str, key: &str, state: &SnapshotState) -> Result<(), String> {
    let payload = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    state_producer(brokers)?
        .send(
            FutureRecord::to(TOPIC).key(key).payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| format!("cannot record the snapshot state in {TOPIC}: {error}"))
}

/// The latest state of `key`. A probe record written first marks the end of what to read, so
/// the answer does not depend on the broker's reported offsets.
pub async fn read(brokers: &str, key: &str) -> Result<Option<SnapshotState>, String> {
    let probe = format!(
        "probe/{key}/{}/{}",
        std::process::id(),
        crate::unix_micros_now()
    );
    state_producer(brokers)?
        .send(
            FutureRecord::<str, [u8]>::to(TOPIC).key(&probe),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| format!("cannot write to {TOPIC}: {error}"))?;
    let brokers = brokers.to_string();
    let key = key.to_string();
    tokio::task::spawn_blocking(move || read_until_probe(&brokers, &key, &probe))
        .await
        .map_err(|e| e.to_string())?
}

fn read_until_probe(
    brokers: &str,
    key: &str,
    probe: &str,
) -> Result<Option<SnapshotState>, String> {
    let consumer: BaseConsumer = platform::kafka::client_config(brokers)
        .set("group.id", "cdc-connector-state-reader")
        .set("enable.auto.commit", "false")
        // The partition is read to its end once, at start-up: a fetch that finds nothing new
        // should come back at once, not after librdkafka's default 500 ms wait.
        .set("fetch.wait.max.ms", "10")
        .set("fetch.error.backoff.ms", "10")
        .create()
        .map_err(|e| format!("cannot read {TOPIC}: {e}"))?;
    // With the partition's leader known before the assignment, librdkafka asks for the first
    // offset at once instead of after its 500 ms retry timer.
    consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .map_err(|e| format!("cannot read {TOPIC}: {e}"))?;
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer
        .assign(&partitions)
        .map_err(|e| format!("cannot read {TOPIC}: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut latest = None;
    while std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(|e| format!("cannot read {TOPIC}: {e}"))?;
        match message.key() {
            Some(k) if k == probe.as_bytes() => return Ok(latest),
            Some(k) if k == key.as_bytes() => {
                latest = message
                    .payload()
                    .map(serde_json::from_slice::<SnapshotState>)
                    .transpose()
                    .map_err(|e| format!("unreadable state of {key} in {TOPIC}: {e}"))?;
            }
            _ => {}
        }
    }
    Err(format!("reading {TOPIC} did not reach its end within 60 s"))
}
