//! Where events go: the gateway over HTTP (what production clients do), Kafka directly with the
//! registered Avro schemas (what the gateway would publish), or stdout as JSON lines.

use std::{collections::HashMap, io::Write, time::Duration};

use platform::{
    events::EventSchema,
    kafka,
    registry::{RegistryClient, register_topic_schema},
    topics,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;

use super::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    Gateway,
    Kafka,
    Stdout,
}

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub kind: SinkKind,
    pub gateway_url: String,
    pub kafka_brokers: String,
    pub schema_registry_url: String,
    /// Retries after a 503, 5xx or timeout before an event is reported as failed.
    pub max_retries: u32,
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("gateway rejected {path} ({status}): {body}")]
    Rejected {
        path: &'static str,
        status: u16,
        body: String,
    },
    #[error("gateway {path} still failing after {attempts} attempts: {last}")]
    GaveUp {
        path: &'static str,
        attempts: u32,
        last: String,
    },
    #[error("cannot reach Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot provision topics: {0}")]
    Provision(#[from] kafka::ProvisionError),
    #[error("schema registry: {0}")]
    Registry(#[from] platform::registry::RegistryError),
    #[error(transparent)]
    Avro(#[from] platform::avro::AvroError),
    #[error(transparent)]
    Encode(#[from] super::event::EncodeError),
    #[error("schema of {topic} is not valid Avro: {message}")]
    Schema {
        topic: &'static str,
        message: String,
    },
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

pub enum Sink {
    Gateway {
        http: reqwest::Client,
        base_url: String,
        max_retries: u32,
    },
    Kafka {
        producer: FutureProducer<kafka::LoggingContext>,
        schemas: HashMap<&'static str, EventSchema>,
    },
    Stdout,
}

/// Longest wait a gateway's Retry-After may impose on one retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

impl Sink {
    pub async fn connect(settings: &SinkSettings) -> Result<Self, SinkError> {
        match settings.kind {
            SinkKind::Stdout => Ok(Self::Stdout),
            SinkKind::Gateway => Ok(Self::Gateway {
                http: reqwest::Client::builder()
                    .timeout(settings.request_timeout)
                    .build()
                    .unwrap_or_default(),
                base_url: settings.gateway_url.trim_end_matches('/').to_string(),
                max_retries: settings.max_retries,
            }),
            SinkKind::Kafka => {
                // The topics the streaming sources write.
                kafka::provision_topics(&settings.kafka_brokers, topics::WORKLOAD).await?;
                let registry = RegistryClient::new(&settings.schema_registry_url);
                let mut schemas = HashMap::new();
                for (spec, text) in platform::schemas::BY_TOPIC {
                    if !topics::WORKLOAD.iter().any(|t| t.name == spec.name) {
                        continue;
                    }
                    let registered = register_topic_schema(&registry, spec, text).await?;
                    schemas.insert(spec.name, EventSchema::new(&registered));
                }
                let producer =
                    kafka::producer(&settings.kafka_brokers, "workload", Duration::from_secs(30))?;
                Ok(Self::Kafka { producer, schemas })
            }
        }
    }

    /// Delivers one event; an error means it was not stored and has been given up on.
    pub async fn send(&self, event: &Event) -> Result<(), SinkError> {
        let result = match self {
            Self::Stdout => {
                let line = serde_json::json!({ "topic": event.topic(), "path": event.gateway_path(), "event": event.to_gateway_json() });
                // A closed pipe (`| head`) is an error to report, not a panic.
                writeln!(std::io::stdout().lock(), "{line}").map_err(SinkError::Stdout)
            }
            Self::Gateway {
                http,
                base_url,
                max_retries,
            } => post_with_retries(http, base_url, *max_retries, event).await,
            Self::Kafka { producer, schemas } => {
                let topic = event.topic();
                let registered = schemas.get(topic).ok_or(SinkError::Schema {
                    topic,
                    message: "not registered".into(),
                })?;
                let payload = event.encode(registered, now_ms())?;
                let key = kafka_key(event);
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| SinkError::Kafka(error))
            }
        };
        let outcome = if result.is_ok() { "sent" } else { "failed" };
        metrics::counter!("workload_events_total", "topic" => event.topic(), "outcome" => outcome)
            .increment(1);
        result
    }

    /// Waits for records still queued in the producer.
    pub async fn flush(&self) {
        if let Self::Kafka { producer, .. } = self {
            let producer = producer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))
            })
            .await;
        }
    }
}

async fn post_with_retries(
    http: &reqwest::Client,
    base_url: &str,
    max_retries: u32,
    event: &Event,
) -> Result<(), SinkError> {
    let path = event.gateway_path();
    let url = format!("{base_url}{path}");
    let body = event.to_gateway_json();
    let mut backoff = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (last, wait) = match http.post(&url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
                let text = response.text().await.unwrap_or_default();
                // 4xx other than "too many requests" is a verdict on the event: retrying cannot help.
                if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                    return Err(SinkError::Rejected {
                        path,
                        status: status.as_u16(),
                        body: text,
                    });
                }
                (format!("{status}: {text}"), retry_after.unwrap_or(backoff))
            }
            Err(error) => (error.to_string(), backoff),
        };
        if attempts > max_retries {
            return Err(SinkError::GaveUp {
                path,
                attempts,
                last,
            });
        }
        metrics::counter!("workload_gateway_retries_total", "path" => path).increment(1);
        tracing::debug!(
            path,
            attempts,
            "gateway not ready, retrying in {wait:?}: {last}"
        );
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_RETRY_AFTER);
    }
}

/// Kafka key: what must stay in order (a booking or session, a service, a pipeline and place).
pub fn kafka_key(event: &Event) -> String {
    match event {
        Event::App(e) => e
            .booking_id
            .clone()
            .or_else(|| e.session_id.clone())
            .unwrap_or_else(|| e.event_id.clone()),
        Event::Click(e) => e.session_id.clone(),
        Event::Log(e) => e.service.clone(),
        Event::External(e) => format!("{}/{}", e.pipeline, e.location.as_deref().unwrap_or("-")),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
