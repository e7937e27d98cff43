//! Client of a Confluent-compatible schema registry: register a subject's schema, fetch by id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use apache_avro::Schema;
use serde::Deserialize;
use serde_json::json;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Network trouble or a 5xx: worth retrying.
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("schema registry at {url} failed ({status}): {message}")]
    ServerError {
        url: String,
        status: u16,
        message: String,
    },
    /// The registry refused the request (incompatible or invalid schema, unknown id): definite.
    #[error("schema registry rejected {what}: error {error_code}: {message}")]
    Rejected {
        what: String,
        error_code: i64,
        message: String,
    },
    #[error("schema {id} from the registry is not valid Avro: {source}")]
    InvalidSchema {
        id: u32,
        source: Box<apache_avro::Error>,
    },
    #[error("the schema for subject {subject} is not valid Avro: {source}")]
    InvalidLocalSchema {
        subject: String,
        source: Box<apache_avro::Error>,
    },
}

impl RegistryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::ServerError { .. })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

/// A registry client that caches schemas by id (ids are immutable, so the cache never goes stale).
#[derive(Clone)]
pub struct RegistryClient {
    base_url: String,
    http: reqwest::Client,
    by_id: Arc<Mutex<HashMap<u32, Arc<Schema>>>>,
}

impl RegistryClient {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            by_id: Arc::default(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers `schema_text` under `subject` (idempotent) and returns its global id.
    ///
    /// The text is sent as written, not in Avro's Parsing Canonical Form, which would strip the
    /// logical types, defaults and docs that readers and compatibility checks rely on.
    pub async fn register(&self, subject: &str, schema_text: &str) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let url = format!("{}/subjects/{subject}/versions", self.base_url);
        let schema =
            Schema::parse_str(schema_text).map_err(|source| RegistryError::InvalidLocalSchema {
                subject: subject.to_string(),
                source: Box::new(source),
            })?;
        let body = json!({ "schema": schema_text, "schemaType": "AVRO" });
        let response = self
            .http
            .post(&url)
            .header("Content-Type", CONTENT_TYPE)
            .json(&body)
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let registered: Registered = self
            .read(response, &url, &format!("the schema for subject {subject}"))
            .await?;
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registered.id, Arc::new(schema));
        Ok(registered.id)
    }

    /// The writer schema with this id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(schema) = self
            .by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(schema.clone());
        }
        #[derive(Deserialize)]
        struct ById {
            schema: String,
        }
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|source| RegistryError::Unreachable {
                    url: url.clone(),
                    source,
                })?;
        let found: ById = self
            .read(response, &url, &format!("schema id {id}"))
            .await?;
        let schema =
            Schema::parse_str(&found.schema).map_err(|source| RegistryError::InvalidSchema {
                id,
                source: Box::new(source),
            })?;
        let schema = Arc::new(schema);
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }

    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        response: reqwest::Response,
        url: &str,
        what: &str,
    ) -> Result<T, RegistryError> {
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| RegistryError::ServerError {
                url: url.to_string(),
                status: status.as_u16(),
                message: format!("unexpected response body ({e}): {text}"),
            });
        }
        if status.is_server_error() {
            return Err(RegistryError::ServerError {
                url: url.to_string(),
                status: status.as_u16(),
                message: text,
            });
        }
        let (error_code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error_code, body.message),
            Err(_) => (i64::from(status.as_u16()), text),
        };
        Err(RegistryError::Rejected {
            what: what.to_string(),
            error_code,
            message,
        })
    }
}

/// The subject of a topic's record values under Confluent's TopicNameStrategy.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Registers `schema_text` for the values of `topic` (subject [`value_subject`]) and returns it
/// parsed, with its id, ready to encode records.
///
/// Whether trying again later can help is [`RegistryError::is_retryable`]: yes while the
/// registry is unreachable or failing; no for a schema that does not parse
/// ([`RegistryError::InvalidLocalSchema`]) or that the registry rejects.
pub async fn register_topic_schema(
    registry: &RegistryClient,
    topic: &crate::topics::TopicSpec,
    schema_text: &str,
) -> Result<crate::avro::RegisteredSchema, RegistryError> {
    let subject = value_subject(topic.name);
    let schema =
        Schema::parse_str(schema_text).map_err(|source| RegistryError::InvalidLocalSchema {
            subject: subject.clone(),
            source: Box::new(source),
        })?;
    let id = registry.register(&subject, schema_text).await?;
    Ok(crate::avro::RegisteredSchema { id, schema })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics;

    #[tokio::test]
    async fn a_schema_that_does_not_parse_is_not_worth_retrying() {
        // Nothing listens on port 9: the schema is refused before the registry is asked.
        let registry = RegistryClient::new("http://127.0.0.1:9");
        let error = register_topic_schema(&registry, &topics::APP_EVENTS, "{not avro")
            .await
            .err()
            .expect("an error");
        assert!(!error.is_retryable(), "{error}");
        assert!(
            error.to_string().contains("topic_app_events-value"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_worth_retrying() {
        let registry = RegistryClient::new("http://127.0.0.1:9");
        let error =
            register_topic_schema(&registry, &topics::APP_EVENTS, crate::schemas::APP_EVENT)
                .await
                .err()
                .expect("an error");
        assert!(error.is_retryable(), "{error}");
    }

    #[tokio::test]
    async fn registers_under_the_topic_value_subject() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as its content-length says.
            let complete = |request: &[u8]| {
                let text = String::from_utf8_lossy(request);
                let Some(head_end) = text.find("\r\n\r\n") else {
                    return false;
                };
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                request.len() >= head_end + 4 + length
            };
            while !complete(&request) {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"id":42}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let registry = RegistryClient::new(&url);
        let registered =
            register_topic_schema(&registry, &topics::APP_LOGS, crate::schemas::APP_LOG)
                .await
                .unwrap();
        assert_eq!(registered.id, 42);
        assert_eq!(
            registered.schema,
            crate::schemas::parse(crate::schemas::APP_LOG).unwrap()
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /subjects/topic_app_logs-value/versions "),
            "{request}"
        );
    }
}
