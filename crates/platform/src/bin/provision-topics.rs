//! Creates every topic of the platform (`platform::topics::ALL`, the seed's table plus the
//! services' own topics) that does not exist yet, with `TOPICS_CONFIG` overrides applied, and
//! exits. The compose stacks run it once before any service starts; the services provision the
//! same table themselves, so it is a convenience for a fresh cluster (and its Kafka UI), not a
//! requirement.

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Create the platform's topics (the seed's layout) on a Kafka cluster, then exit"
)]
struct Args {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Kafka TLS and SASL (see the `--kafka-security-protocol` options).
    #[command(flatten)]
    kafka_security: platform::kafka_security::KafkaSecurityArgs,
    /// Keep retrying an unreachable cluster this long, in seconds, before failing.
    #[arg(long, env = "PROVISION_WAIT_SECS", default_value_t = 120)]
    wait_secs: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init_tracing();
    let args = Args::parse();
    platform::kafka_security::install_from(&args.kafka_security)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        match platform::kafka::provision_topics(&args.brokers, platform::topics::ALL).await {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline && error.is_retryable() => {
                tracing::warn!(%error, "cluster not ready; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(error) => return Err(anyhow::Error::new(error).context("provisioning topics")),
        }
    }
    for topic in platform::topics::with_env_overrides(platform::topics::ALL)? {
        println!(
            "{:<32} partitions={:<3} replication={} retention.ms={} cleanup.policy={}",
            topic.name,
            topic.partitions,
            topic.replication_factor,
            topic.retention_ms,
            topic.cleanup_policy
        );
    }
    Ok(())
}
