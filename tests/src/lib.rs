//! Helpers for the end-to-end tests: read `topic_cdc_changes` back through the registry.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform::{avro, kafka, registry::RegistryClient};
use rdkafka::{Message, consumer::Consumer};
use serde_json::Value;

/// One record of the CDC topic, decoded.
#[derive(Debug, Clone)]
pub struct CdcRecord {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
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
            self.value["source"]["commit_lsn"].as_i64().unwrap_or_default(),
            self.value["source"]["sequence"].as_i64().unwrap_or_default(),
        )
    }
}

/// Reads the CDC topic from the beginning until `done` holds for the records read so far, or
/// fails after `timeout` saying how many records it had.
pub async fn read_cdc_until(
    brokers: &str,
    registry_url: &str,
    timeout: Duration,
    done: impl Fn(&[CdcRecord]) -> bool,
) -> anyhow::Result<Vec<CdcRecord>> {
    let group = format!("e2e-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos() ^ rand_suffix());
    let consumer = kafka::consumer(brokers, &group, "e2e", true).context("creating consumer")?;
    consumer.subscribe(&[platform::topics::CDC_CHANGES.name]).context("subscribing")?;
    let registry = RegistryClient::new(registry_url);
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            bail!("timed out after {timeout:?} with {} records", records.len());
        }
        let Ok(message) = tokio::time::timeout(remaining.min(Duration::from_secs(2)), consumer.recv()).await else {
            continue;
        };
        let message = message.context("reading the CDC topic")?;
        let payload = message.payload().context("a CDC record without value")?;
        let value = avro::decode(&registry, payload).await.context("decoding a CDC record")?;
        records.push(CdcRecord {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            partition: message.partition(),
            offset: message.offset(),
            value: avro::to_json(&value),
        });
    }
    Ok(records)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The connector's `/metrics` text.
pub async fn metrics_text(connector_url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("{connector_url}/metrics")).await?.text().await?)
}
