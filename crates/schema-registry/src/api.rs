//! The Confluent Schema Registry REST API over a [`Registry`].
//!
//! Responses use Confluent's content type and error shape (`{"error_code", "message"}`).
//! Request bodies are read as JSON whatever their declared content type, because clients
//! variously send `application/vnd.schemaregistry.v1+json`, `application/json` and
//! `application/octet-stream`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{MatchedPath, Path, Query, Request, State},
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

use crate::{
    compatibility::CompatibilityLevel,
    registry::{CandidateSchema, Registry, RegistryError, SubjectVersion, VersionSelector},
};

pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

type QueryParams = Query<HashMap<String, String>>;

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/subjects", get(list_subjects))
        .route(
            "/subjects/{subject}",
            post(lookup_schema).delete(delete_subject),
        )
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(get_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(get_schema_versions))
        .route("/schemas/types", get(schema_types))
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_compatibility),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(count_requests))
        .with_state(registry)
}

/// An error as Confluent clients expect it: HTTP status plus a finer `error_code`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error_code: u32,
    message: String,
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        use RegistryError as E;
        let (status, error_code) = match &error {
            E::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            E::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            E::SchemaNotFoundInSubject(_) | E::SchemaIdNotFound(_) => {
                (StatusCode::NOT_FOUND, 40403)
            }
            E::SubjectCompatibilityNotConfigured(_) => (StatusCode::NOT_FOUND, 40408),
            E::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            E::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            E::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            E::InvalidCompatibilityLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            E::Store(_) | E::ContradictoryEvent(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        };
        if status.is_server_error() {
            tracing::error!(%error, "request failed");
        }
        Self {
            status,
            error_code,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.error_code, "message": self.message });
        (self.status, reply(&body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// A JSON response with the registry's content type.
fn reply(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1))],
            body,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {error}"),
        )
            .into_response(),
    }
}

/// Parses a JSON body; a malformed one is a 422 with the given Confluent `error_code`.
fn parse_body<T: DeserializeOwned>(body: &[u8], error_code: u32) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error_code,
        message: format!("Request body is not the expected JSON: {error}"),
    })
}

/// A query flag such as `?deleted=true`; anything but `true` counts as false.
fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// Runs a registry call that writes (and fsyncs) the log off the async worker threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(join_error) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_code: 50001,
            message: format!("Error in the backend data store: {join_error}"),
        }),
    }
}

fn parse_schema_id(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .map_err(|_| RegistryError::SchemaIdNotFound(text.to_owned()).into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    schema_type: Option<String>,
    references: Option<Vec<serde_json::Value>>,
}

impl SchemaBody {
    fn parse(body: &[u8]) -> Result<CandidateSchema, ApiError> {
        let request: SchemaBody = parse_body(body, 42201)?;
        let has_references = request.references.is_some_and(|refs| !refs.is_empty());
        Ok(CandidateSchema::parse(
            &request.schema,
            request.schema_type.as_deref(),
            has_references,
        )?)
    }
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: String,
}

impl ConfigBody {
    fn parse(body: &[u8]) -> Result<CompatibilityLevel, ApiError> {
        let request: ConfigBody = parse_body(body, 422)?;
        Ok(request.compatibility.parse().map_err(RegistryError::from)?)
    }
}

/// `{"subject","id","version","schema"}`; `schemaType` is omitted, as Confluent does for AVRO.
fn version_json(version: &SubjectVersion) -> serde_json::Value {
    json!({
        "subject": version.subject,
        "id": version.id,
        "version": version.version,
        "schema": version.schema,
    })
}

async fn root() -> Response {
    reply(&json!({}))
}

async fn list_subjects(
    State(registry): State<Arc<Registry>>,
    Query(query): QueryParams,
) -> Response {
    reply(&registry.subjects(flag(&query, "deleted")))
}

async fn list_versions(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    Query(query): QueryParams,
) -> ApiResult {
    Ok(reply(
        &registry.versions(&subject, flag(&query, "deleted"))?,
    ))
}

async fn register_schema(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let schema = SchemaBody::parse(&body)?;
    let registration = blocking(move || registry.register(&subject, schema)).await?;
    if registration.created_version {
        metrics::counter!("schema_registry_schemas_registered_total").increment(1);
    }
    Ok(reply(&json!({ "id": registration.id })))
}

async fn lookup_schema(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let schema = SchemaBody::parse(&body)?;
    Ok(reply(&version_json(&registry.lookup(&subject, &schema)?)))
}

async fn get_version(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    Ok(reply(&version_json(&registry.version(&subject, selector)?)))
}

async fn get_version_schema(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let schema = registry.version(&subject, selector)?.schema;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1))],
        schema,
    )
        .into_response())
}

async fn delete_subject(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
) -> ApiResult {
    let deleted = blocking(move || registry.delete_subject(&subject)).await?;
    Ok(reply(&deleted))
}

async fn delete_version(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let deleted = blocking(move || registry.delete_version(&subject, selector)).await?;
    Ok(reply(&deleted))
}

async fn get_schema_by_id(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<String>,
) -> ApiResult {
    let schema = registry.schema_by_id(parse_schema_id(&id)?)?;
    Ok(reply(&json!({ "schema": schema })))
}

async fn get_schema_versions(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<String>,
) -> ApiResult {
    let versions: Vec<serde_json::Value> = registry
        .versions_of_schema(parse_schema_id(&id)?)?
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(reply(&versions))
}

async fn schema_types() -> Response {
    reply(&["AVRO"])
}

async fn get_global_config(State(registry): State<Arc<Registry>>) -> Response {
    reply(&json!({ "compatibilityLevel": registry.global_compatibility() }))
}

async fn put_global_config(State(registry): State<Arc<Registry>>, body: Bytes) -> ApiResult {
    let level = ConfigBody::parse(&body)?;
    blocking(move || registry.set_compatibility(None, level)).await?;
    Ok(reply(&json!({ "compatibility": level })))
}

async fn get_subject_config(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    Query(query): QueryParams,
) -> ApiResult {
    let level = match registry.subject_compatibility(&subject) {
        Some(level) => level,
        None if flag(&query, "defaultToGlobal") => registry.global_compatibility(),
        None => return Err(RegistryError::SubjectCompatibilityNotConfigured(subject).into()),
    };
    Ok(reply(&json!({ "compatibilityLevel": level })))
}

async fn put_subject_config(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = ConfigBody::parse(&body)?;
    blocking(move || registry.set_compatibility(Some(&subject), level)).await?;
    Ok(reply(&json!({ "compatibility": level })))
}

async fn test_compatibility(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): QueryParams,
    body: Bytes,
) -> ApiResult {
    let selector: VersionSelector = version.parse()?;
    let schema = SchemaBody::parse(&body)?;
    let reasons = registry.test_compatibility(&subject, selector, &schema)?;
    let mut answer = json!({ "is_compatible": reasons.is_empty() });
    if flag(&query, "verbose") {
        answer["messages"] = json!(reasons);
    }
    Ok(reply(&answer))
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error_code: 404,
        message: "HTTP 404 Not Found".to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error_code: 405,
        message: "HTTP 405 Method Not Allowed".to_owned(),
    }
}

/// Counts requests per route template (not per subject, which would explode the label set).
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let endpoint = format!("{} {route}", request.method());
    let response = next.run(request).await;
    metrics::counter!(
        "schema_registry_requests_total",
        "endpoint" => endpoint,
        "status" => response.status().as_str().to_owned(),
    )
    .increment(1);
    response
}
