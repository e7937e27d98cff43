//! The broker's read ceiling: a bare librdkafka consumer (the processor's consumer settings,
//! no group, no processing) reading the backlog of topic_app_events to its end. What the
//! processor cannot beat on this broker: it reads the same records, and then writes and reads
//! two repartition records per event on top.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::Env;
use crate::procstat;

#[derive(Debug, Clone)]
pub struct Ceiling {
    pub records: u64,
    pub wall_secs: f64,
    /// CPU of the bench process (the consumer and its librdkafka threads) over the read.
    pub consumer_cpu_secs: f64,
    pub broker_cpu_secs: Option<f64>,
}

impl Ceiling {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.wall_secs
    }

    pub fn json(&self) -> Value {
        json!({
            "records": self.records,
            "wall_secs": self.wall_secs,
            "records_per_sec": self.records_per_sec(),
            "consumer_cpu_secs": self.consumer_cpu_secs,
            "broker_cpu_secs": self.broker_cpu_secs,
        })
    }
}

/// Reads the `records` records of the input.
pub async fn measure(env: &Env, records: u64) -> Result<Ceiling> {
    let brokers = env.brokers.clone();
    let partitions = env.input_partitions;
    let broker_before = env.broker_cpu();
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let cpu_before = procstat::sample(me).map(|u| u.cpu_secs).unwrap_or(0.0);
    let (records, wall_secs) =
        tokio::task::spawn_blocking(move || read_all(&brokers, partitions, records)).await??;
    let cpu_after = procstat::sample(me).map(|u| u.cpu_secs).unwrap_or(0.0);
    let broker_after = env.broker_cpu();
    Ok(Ceiling {
        records,
        wall_secs,
        consumer_cpu_secs: cpu_after - cpu_before,
        broker_cpu_secs: broker_before.zip(broker_after).map(|(b, a)| a - b),
    })
}

fn read_all(brokers: &str, partitions: i32, total: u64) -> Result<(u64, f64)> {
    let topic = platform::topics::APP_EVENTS.name;
    let consumer: BaseConsumer = platform::kafka::client_config(brokers)
        .set("group.id", format!("bench-ceiling-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("creating the ceiling consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let started = Instant::now();
    consumer.assign(&assignment)?;
    let deadline = started + Duration::from_secs(600);
    let mut read = 0u64;
    while read < total {
        if Instant::now() > deadline {
            bail!("{read} records of {total} read after 600 s");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let _ = message.context("reading the input")?.offset();
            read += 1;
        }
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

/// Records and bytes (keys + values) a topic holds, read with read_committed to the end of
/// every partition.
#[derive(Debug, Clone)]
pub struct Volume {
    pub topic: String,
    pub records: u64,
    pub bytes: u64,
}

impl Volume {
    pub fn json(&self) -> Value {
        json!({"topic": self.topic, "records": self.records, "bytes": self.bytes})
    }
}

/// Reads `topic` to its end (blocking).
pub fn volume(brokers: &str, topic: &str, partitions: i32) -> Result<Volume> {
    use rdkafka::error::KafkaError;
    let consumer: BaseConsumer = platform::kafka::client_config(brokers)
        .set("group.id", format!("bench-volume-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating a reader")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut at_end = std::collections::HashSet::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(300);
    while at_end.len() < usize::try_from(partitions).unwrap_or(0) {
        if Instant::now() > deadline {
            bail!("{topic} not read to its end within 300 s");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                records += 1;
                bytes +=
                    (m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len)) as u64;
            }
        }
    }
    Ok(Volume {
        topic: topic.to_string(),
        records,
        bytes,
    })
}
