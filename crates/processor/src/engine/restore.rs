//! Restoring the state of newly assigned tasks from the changelog, keeping per key the last
//! entry whose stamp is at most the partition's committed offset (so entries of transactions
//! that did not commit are discarded even on a broker that shows them).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use platform::topics;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};

use crate::{changelog, error::ProcessorError, task::StateValue, task::Task};

/// Reads the changelog partitions of `tasks` (partition q holds task q's state) to their end,
/// with one consumer, and gives each task, per key, the last entry whose stamp is at most its
/// committed offset. A task with nothing committed has no state to restore and costs no I/O.
/// Returns the entries applied per partition.
pub(super) fn restore(
    brokers: &str,
    tasks: &mut BTreeMap<i32, (i64, Task)>,
) -> Result<BTreeMap<i32, usize>, ProcessorError> {
    let failed = |partition: i32, reason: String| ProcessorError::Restore { partition, reason };
    let wanted: Vec<(i32, i64)> = tasks
        .iter()
        .filter(|(_, (committed, _))| *committed > 0)
        .map(|(q, (committed, _))| (*q, *committed))
        .collect();
    let Some(&(first, _)) = wanted.first() else {
        return Ok(BTreeMap::new());
    };
    let consumer: BaseConsumer = platform::kafka::client_config(brokers)
        .set(
            "group.id",
            format!("processor-restore-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // The end: the last offsets of a transactional partition are commit markers, which
        // are never delivered, so "offset high - 1 was read" cannot be the test.
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| failed(first, e.to_string()))?;
    let topic = topics::PROCESSOR_CHANGELOG.name;
    let mut assignment = TopicPartitionList::new();
    for (q, _) in &wanted {
        assignment
            .add_partition_offset(topic, *q, Offset::Beginning)
            .map_err(|e| failed(*q, e.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| failed(first, e.to_string()))?;
    let committed: BTreeMap<i32, i64> = wanted.iter().copied().collect();
    let mut reading: std::collections::BTreeSet<i32> = committed.keys().copied().collect();
    let mut latest: BTreeMap<i32, BTreeMap<Vec<u8>, Option<StateValue>>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reading.is_empty() {
        if Instant::now() > deadline {
            let q = reading.first().copied().unwrap_or(first);
            return Err(failed(q, "its end was not reached within 120 s".into()));
        }
        let message = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(q))) => {
                reading.remove(&q);
                continue;
            }
            Some(message) => message.map_err(|e| failed(first, e.to_string()))?,
        };
        let q = message.partition();
        let (Some(key), Some(payload)) = (message.key(), message.payload()) else {
            continue;
        };
        let stamped = changelog::decode_value(payload).map_err(|e| {
            failed(
                q,
                format!("entry at offset {} does not decode: {e}", message.offset()),
            )
        })?;
        if committed.get(&q).is_some_and(|c| stamped.stamp <= *c) {
            latest
                .entry(q)
                .or_default()
                .insert(key.to_vec(), stamped.value);
        }
    }
    let mut counts = BTreeMap::new();
    for (q, entries) in latest {
        counts.insert(q, entries.len());
        let Some((_, task)) = tasks.get_mut(&q) else {
            continue;
        };
        for (key, value) in entries {
            let key = changelog::decode_key(&key)
                .map_err(|e| failed(q, format!("a key does not decode: {e}")))?;
            task.restore(key, value);
        }
    }
    Ok(counts)
}
