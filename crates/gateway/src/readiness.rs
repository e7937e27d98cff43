//! Start-up (topics provisioned, schemas registered) and the readiness `/health` reports: the
//! gateway is ready while both the broker and the schema registry answer.

use std::{collections::HashMap, sync::Arc, time::Duration};

use platform::{
    events::EventSchema,
    kafka,
    registry::{RegistryClient, register_topic_schema},
    schemas,
    telemetry::Health,
    topics,
};
use rdkafka::producer::Producer;

use crate::publisher::Publisher;

/// How often reachability is checked (and start-up retried).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The topics the gateway writes (`topics::GATEWAY`), with their schemas.
const GATEWAY_TOPICS: [(&topics::TopicSpec, &str); 4] = [
    (&topics::APP_EVENTS, schemas::APP_EVENT),
    (&topics::CLICKSTREAM, schemas::CLICKSTREAM),
    (&topics::APP_LOGS, schemas::APP_LOG),
    (&topics::EXTERNAL_DATA, schemas::EXTERNAL_DATA),
];

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Provision(#[from] kafka::ProvisionError),
    /// Registering a schema; a schema that does not parse is one of these too, not retryable.
    #[error(transparent)]
    Registry(#[from] platform::registry::RegistryError),
}

impl StartError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Provision(e) => e.is_retryable(),
            Self::Registry(e) => e.is_retryable(),
        }
    }
}

/// Provisions the topics and registers the schemas, retrying while the broker or registry is
/// unreachable; then keeps `/health` in line with their reachability until the process ends.
/// Returns only on an error retrying cannot fix (a topic or schema the cluster refuses).
pub async fn run(
    brokers: String,
    registry_url: String,
    publisher: Arc<Publisher>,
    health: Health,
) -> StartError {
    let registry = RegistryClient::new(&registry_url);
    loop {
        match start(&brokers, &registry).await {
            Ok(schemas) => {
                publisher.set_schemas(schemas);
                tracing::info!("topics provisioned and schemas registered");
                break;
            }
            Err(error) if error.is_retryable() => {
                health.set(false, format!("starting: {error}"));
                tracing::warn!(%error, "start-up step failed; retrying");
            }
            Err(error) => {
                health.set(false, format!("cannot start: {error}"));
                return error;
            }
        }
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
    let http = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap_or_default();
    loop {
        publisher.record_queue_depth();
        let broker = broker_reachable(&publisher).await;
        let registry = registry_reachable(&http, &registry_url).await;
        match (broker, registry) {
            (Ok(()), Ok(())) => health.set(true, "ready"),
            (Err(e), _) => health.set(false, format!("Kafka brokers {brokers} unreachable: {e}")),
            (_, Err(e)) => health.set(
                false,
                format!("schema registry {registry_url} unreachable: {e}"),
            ),
        }
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

async fn start(
    brokers: &str,
    registry: &RegistryClient,
) -> Result<HashMap<&'static str, EventSchema>, StartError> {
    kafka::provision_topics(brokers, topics::GATEWAY).await?;
    let mut registered = HashMap::new();
    for (topic, text) in GATEWAY_TOPICS {
        let schema = register_topic_schema(registry, topic, text).await?;
        registered.insert(topic.name, EventSchema::new(&schema));
    }
    Ok(registered)
}

async fn broker_reachable(publisher: &Arc<Publisher>) -> Result<(), String> {
    let publisher = publisher.clone();
    tokio::task::spawn_blocking(move || {
        publisher
            .producer()
            .client()
            .fetch_metadata(None, PROBE_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn registry_reachable(http: &reqwest::Client, registry_url: &str) -> Result<(), String> {
    let response = http
        .get(format!("{}/subjects", registry_url.trim_end_matches('/')))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_registers_a_schema_for_each_topic_it_provisions() {
        let registered: Vec<&str> = GATEWAY_TOPICS.iter().map(|(t, _)| t.name).collect();
        let provisioned: Vec<&str> = topics::GATEWAY.iter().map(|t| t.name).collect();
        assert_eq!(registered, provisioned);
        for (topic, text) in GATEWAY_TOPICS {
            let by_topic = schemas::BY_TOPIC.iter().find(|(t, _)| t.name == topic.name);
            assert_eq!(by_topic.map(|(_, s)| *s), Some(text), "{}", topic.name);
        }
    }
}
