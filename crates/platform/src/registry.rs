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
