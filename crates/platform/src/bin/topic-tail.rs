//! Prints each record of a topic as one JSON line, its value decoded through the schema registry.
//!
//! `topic-tail --topic topic_cdc_changes --from-beginning` is how to watch the CDC stream while
//! typing SQL into psql.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use platform::{avro, kafka, registry::RegistryClient};
use rdkafka::{Message, consumer::Consumer};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Print a topic's Avro records as JSON lines, decoded through the schema registry"
)]
struct Args {
    /// TOML file with defaults for any option below (keys are the long option names).
    #[arg(long, env = "TOPIC_TAIL_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Kafka TLS and SASL (see the `--kafka-security-protocol` options).
    #[command(flatten)]
    kafka_security: platform::kafka_security::KafkaSecurityArgs,
    /// Base URL of the Confluent-compatible schema registry.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry_url: String,
    /// Topic to read.
    #[arg(long, default_value = platform::topics::CDC_CHANGES.name)]
    topic: String,
    /// Start from the oldest retained record instead of only new ones.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Stop after this many seconds without a new record.
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init_tracing();
    let args: Args = platform::config::load("TOPIC_TAIL_CONFIG")?;
    platform::kafka_security::install_from(&args.kafka_security)?;
    let group = format!("topic-tail-{}-{}", std::process::id(), unix_millis());
    let consumer = kafka::consumer(&args.brokers, &group, "topic-tail", args.from_beginning)
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[&args.topic])
        .with_context(|| format!("cannot subscribe to {}", args.topic))?;
    let registry = RegistryClient::new(&args.schema_registry_url);
    let mut printed = 0u64;
    while args.max_records.is_none_or(|max| printed < max) {
        let received = match args.idle_timeout_secs {
            Some(secs) => {
                match tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => break,
                }
            }
            None => consumer.recv().await,
        };
        let message = received.context("cannot read from Kafka")?;
        let key = message.key().map(String::from_utf8_lossy);
        let value = match message.payload() {
            None => serde_json::Value::Null,
            Some(payload) => match avro::decode(&registry, payload).await {
                Ok(value) => avro::to_json(&value),
                Err(error) => serde_json::json!({ "undecodable": error.to_string() }),
            },
        };
        let line = serde_json::json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": key,
            "value": value,
        });
        println!("{line}");
        printed += 1;
    }
    Ok(())
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
