//! Helpers for the end-to-end tests: read `topic_cdc_changes` back through the registry.

pub mod browser;
pub mod processor;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform::{avro, kafka, registry::RegistryClient};
use rdkafka::{Message, consumer::Consumer};
use serde_json::Value;

/// One record of a topic, decoded (most helpers below read CDCChange records).
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
    let group = format!(
        "e2e-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_suffix()
    );
    let consumer = kafka::consumer(brokers, &group, "e2e", true).context("creating consumer")?;
    consumer.subscribe(&[topic]).context("subscribing")?;
    let registry = RegistryClient::new(registry_url);
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
        let Ok(message) =
            tokio::time::timeout(remaining.min(Duration::from_secs(2)), consumer.recv()).await
        else {
            continue;
        };
        let message = message.with_context(|| format!("reading {topic}"))?;
        let payload = message
            .payload()
            .with_context(|| format!("a record of {topic} without value"))?;
        let value = avro::decode(&registry, payload)
            .await
            .with_context(|| format!("decoding a record of {topic}"))?;
        records.push(CdcRecord {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            partition: message.partition(),
            offset: message.offset(),
            value: avro::to_json(&value),
        });
    }
    Ok(records)
}

/// A number that differs between calls (for unique consumer group names).
pub fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The connector's `/metrics` text.
pub async fn metrics_text(connector_url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("{connector_url}/metrics"))
        .await?
        .text()
        .await?)
}

/// The connector's arguments with some options replaced (`--listen` always on a fresh port, so
/// it can run beside the stack's own connector). Returns the arguments and the health URL.
pub fn connector_args_with(
    stack: &local_stack::Stack,
    replacements: &[(&str, &str)],
) -> (Vec<String>, String) {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:39464".into());
    let mut args = stack.connector_args();
    let all = replacements
        .iter()
        .copied()
        .chain([("--listen", listen.as_str())]);
    for (flag, value) in all {
        match args.iter().position(|a| a == flag) {
            Some(index) => args[index + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
    }
    (args, format!("http://{listen}"))
}

/// Polls `GET {base}/health` until its JSON `status` contains `needle`; returns the body.
pub async fn wait_for_health_status(
    base: &str,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("{base}/health")).await
            && let Ok(body) = response.json::<Value>().await
        {
            if body["status"].as_str().unwrap_or_default().contains(needle) {
                return Ok(body);
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("health never reported {needle:?}; last: {last}")
}

/// Waits until the slot confirmed everything written so far: the connector has then had
/// every change acknowledged by Kafka.
pub async fn wait_until_slot_confirms_current_wal(
    stack: &local_stack::Stack,
    slot: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let written = stack.psql("SELECT pg_current_wal_lsn()").await?;
    let query = format!(
        "SELECT confirmed_flush_lsn >= '{}' FROM pg_replication_slots WHERE slot_name = '{slot}'",
        written.trim()
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if stack.psql(&query).await?.trim() == "t" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "slot {slot} did not confirm {} within {timeout:?}",
        written.trim()
    )
}

/// Records of `table` the connector has had acknowledged, from its `cdc_events_total` metric.
pub fn delivered_events(metrics: &str, table: &str) -> u64 {
    let prefix = format!("cdc_events_total{{table=\"{table}\",");
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The connector binary with `args`, killed when dropped. Its output is discarded; a test that
/// reads stderr sets `.stderr(Stdio::piped())` and must then read it (`output()`,
/// `wait_with_output()`), or the connector blocks on a full pipe.
pub fn connector_command(stack: &local_stack::Stack, args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(stack.connector_binary());
    command
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// `psql` running `sql` against the stack's database (e.g. a writer racing the connector),
/// stopping at the first error, killed when dropped.
pub fn psql_command(stack: &local_stack::Stack, sql: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("psql");
    command
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &stack.pg_url(),
            "-c",
            sql,
        ])
        .kill_on_drop(true);
    command
}
