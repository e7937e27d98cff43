//! The HTTP API: routes, the checks every request goes through, and the OpenAPI document
//! generated from these handlers and the event types.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use metrics_exporter_prometheus::PrometheusHandle;
use platform::telemetry::{self, Health};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::{
        OneOfBuilder, Ref, RefOr, Schema,
        security::{ApiKey, ApiKeyValue, SecurityScheme},
    },
};

use crate::{
    auth::ApiKeys,
    dedup::Claimed,
    errors::{self, ApiError, ErrorBody},
    events::{
        BookingEvent, ClickstreamEvent, Event, EventKind, ExternalEvent, LogEvent, Prepared, Rules,
        UserEvent,
    },
    front::{self, FrontDoorLayer},
    publisher::{Pending, PublishError, Publisher, Receipt},
    stats::{Outcome, Stats, StatsReport},
    tarpit::Tarpit,
};

/// Limits and answers that come from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_events: usize,
    pub max_future_skew_millis: i64,
    pub retry_after_secs: u64,
    /// How long a client may take to send a body.
    pub body_read_timeout: std::time::Duration,
}

/// What the handlers share, behind one `Arc` (axum clones the state per request).
pub struct AppState {
    pub publisher: Arc<Publisher>,
    pub stats: Arc<Stats>,
    pub limits: Limits,
    pub tarpit: Arc<Tarpit>,
}

/// The whole API, with `/health` and `/metrics` from the platform.
pub fn router(
    state: Arc<AppState>,
    keys: ApiKeys,
    prometheus: PrometheusHandle,
    health: Health,
) -> Router {
    let openapi_json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let events = Router::new()
        .route("/events/user", post(post_user))
        .route("/events/booking", post(post_booking))
        .route("/events/clickstream", post(post_clickstream))
        .route("/events/logs", post(post_logs))
        .route("/events/external", post(post_external))
        .route("/events/batch", post(post_batch))
        .route_layer(keys)
        .with_state(state.clone());
    Router::new()
        .merge(events)
        .route("/stats", get(get_stats).with_state(state.clone()))
        .route("/health/live", get(|| async { "alive" }))
        .route(
            "/openapi.json",
            get(move || {
                std::future::ready((
                    [(header::CONTENT_TYPE, "application/json")],
                    openapi_json.clone(),
                ))
            }),
        )
        .route("/docs", get(|| async { Html(include_str!("docs.html")) }))
        .merge(telemetry::router(prometheus, health))
        .fallback(|| async { ApiError::NotFound })
        // One layer of a tuple (outermost first), not one `.layer` call each: axum boxes every
        // layer it is given and clones each box per request.
        .layer((
            FrontDoorLayer::new(state.stats.clone(), state.tarpit.clone()),
            tower_http::timeout::RequestBodyTimeoutLayer::new(state.limits.body_read_timeout),
            axum::extract::DefaultBodyLimit::max(state.limits.max_body_bytes),
        ))
}

/// The answer for one stored (or already stored) event.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredResponse {
    /// `stored` (201), or `duplicate` (200) when this id was stored within the idempotency window.
    pub status: &'static str,
    pub id: String,
    #[serde(flatten)]
    pub receipt: Receipt,
}

/// One item of a batch: the kind says which single-event endpoint's shape `event` has.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem<'a> {
    pub kind: EventKind,
    // Parsed as its kind's event once the kind is known, straight from the request's text.
    #[serde(borrow)]
    #[schema(schema_with = batch_event_schema)]
    pub event: &'a RawValue,
}

fn batch_event_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(Ref::from_schema_name("UserEvent"))
        .item(Ref::from_schema_name("BookingEvent"))
        .item(Ref::from_schema_name("ClickstreamEvent"))
        .item(Ref::from_schema_name("LogEvent"))
        .item(Ref::from_schema_name("ExternalEvent"))
}

/// Many events of mixed kinds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest<'a> {
    // Each item's text, borrowed from the body: an item is parsed on its own, so that one bad
    // item is rejected alone, without a `serde_json::Value` tree in between.
    #[serde(borrow)]
    #[schema(min_items = 1, value_type = Vec<serde_json::Value>)]
    pub events: Vec<&'a RawValue>,
}

/// What became of each item of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    pub index: usize,
    /// stored, duplicate, rejected (bad input: fix it) or failed (not stored: retry it).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub receipt: Option<Receipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub stored: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub failed: usize,
    pub results: Vec<ItemResult>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Travel platform ingestion gateway",
        description = "The front door for every non-database source. A 2xx means the event is in Kafka \
            (acknowledged by the broker with acks=all); 503 with Retry-After means nothing was stored. \
            Retrying with the same id within the idempotency window never produces a second record."
    ),
    paths(post_user, post_booking, post_clickstream, post_logs, post_external, post_batch, get_stats),
    components(schemas(BatchItem<'_>)),
    modifiers(&ApiKeyScheme)
)]
struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Declares one single-event endpoint: its OpenAPI operation and its handler.
macro_rules! single_event_endpoint {
    ($name:ident, $path:literal, $event:ty, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            summary = $summary,
            request_body(content = $event, content_type = "application/json"),
            security((), ("api_key" = [])),
            responses(
                (status = 201, description = "Stored: the broker acknowledged the event", body = StoredResponse),
                (status = 200, description = "Already stored within the idempotency window; no second record", body = StoredResponse),
                (status = 400, description = "The body is not JSON", body = ErrorBody),
                (status = 401, description = "API key missing or wrong (when keys are configured)", body = ErrorBody),
                (status = 413, description = "Body too large", body = ErrorBody),
                (status = 415, description = "Content type is not application/json", body = ErrorBody),
                (status = 422, description = "Invalid event: each detail names the field, what was expected and what came", body = ErrorBody),
                (status = 503, description = "Nothing stored (broker or registry unavailable); retry after Retry-After seconds", body = ErrorBody,
                    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
            )
        )]
        async fn $name(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
            ingest_one::<$event>(&state, &headers, body).await
        }
    };
}

single_event_endpoint!(
    post_user,
    "/events/user",
    UserEvent,
    "A mobile or web app event, to topic_app_events"
);
single_event_endpoint!(
    post_booking,
    "/events/booking",
    BookingEvent,
    "A booking-system event, to topic_app_events"
);
single_event_endpoint!(
    post_clickstream,
    "/events/clickstream",
    ClickstreamEvent,
    "A clickstream interaction, to topic_clickstream"
);
single_event_endpoint!(
    post_logs,
    "/events/logs",
    LogEvent,
    "An application log line, to topic_app_logs"
);
single_event_endpoint!(
    post_external,
    "/events/external",
    ExternalEvent,
    "An external-data record, to topic_external_data"
);

/// Statistics since start.
#[utoipa::path(get, path = "/stats", responses((status = 200, description = "Counts by endpoint, event type, topic and outcome, and rates", body = StatsReport)))]
async fn get_stats(State(state): State<Arc<AppState>>) -> Json<StatsReport> {
    Json(state.stats.report())
}

/// Many events of mixed kinds, each stored or not on its own.
#[utoipa::path(
    post,
    path = "/events/batch",
    request_body(content = BatchRequest<'_>, content_type = "application/json"),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Every item stored (or already stored)", body = BatchResponse),
        (status = 207, description = "Some items were not stored: see each result", body = BatchResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "API key missing or wrong (when keys are configured)", body = ErrorBody),
        (status = 413, description = "Body too large or too many events", body = ErrorBody),
        (status = 415, description = "Content type is not application/json", body = ErrorBody),
        (status = 422, description = "The batch, or every item of it, is invalid", body = ErrorBody),
        (status = 503, description = "No item stored (broker or registry unavailable); retry after Retry-After seconds", body = BatchResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
async fn post_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body, &state.limits)?;
    let batch: BatchRequest<'_> = parse_bytes(&body)?;
    if batch.events.len() > state.limits.max_batch_events {
        return Err(ApiError::TooManyEvents {
            max: state.limits.max_batch_events,
            got: batch.events.len(),
        });
    }
    if batch.events.is_empty() {
        return Err(ApiError::Invalid(vec![errors::FieldError::new(
            "events",
            "at least one event",
            "an empty list",
        )]));
    }
    let rules = rules(&state.limits);
    let request_id = front::request_id(&headers);
    // Every valid item's record is handed to the producer before the first answer is awaited:
    // the batch's records share the broker's requests, and the batch waits about as long as
    // its slowest event.
    let started: Vec<_> = batch
        .events
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            prepare_item(item.get(), index, &rules).map(|event| start_publishing(&state, event))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(started.len());
    for item in started {
        outcomes.push(match item {
            Ok(publishing) => finish_publishing(&state, publishing, request_id)
                .await
                .map_err(|e| (Outcome::Failed, e)),
            Err((topic, error)) => {
                state
                    .stats
                    .record_event("invalid", topic, Outcome::Rejected);
                Err((Outcome::Rejected, error))
            }
        });
    }

    let mut response = BatchResponse {
        stored: 0,
        duplicates: 0,
        rejected: 0,
        failed: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let result = match outcome {
            Ok((id, Claimed::Fresh(receipt))) => {
                response.stored += 1;
                ItemResult {
                    index,
                    status: "stored",
                    id: Some(id),
                    receipt: Some(receipt),
                    error: None,
                }
            }
            Ok((id, Claimed::Duplicate(receipt))) => {
                response.duplicates += 1;
                ItemResult {
                    index,
                    status: "duplicate",
                    id: Some(id),
                    receipt: Some(receipt),
                    error: None,
                }
            }
            Err((outcome, error)) => {
                if outcome == Outcome::Rejected {
                    response.rejected += 1
                } else {
                    response.failed += 1
                }
                ItemResult {
                    index,
                    status: outcome.as_str(),
                    id: None,
                    receipt: None,
                    error: Some(error.body()),
                }
            }
        };
        response.results.push(result);
    }
    let total = response.results.len();
    let status = if response.stored + response.duplicates == total {
        StatusCode::OK
    } else if response.failed == total {
        StatusCode::SERVICE_UNAVAILABLE
    } else if response.rejected == total {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut answer = (status, Json(response)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        answer.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(state.limits.retry_after_secs),
        );
    }
    Ok(answer)
}

/// Parses and checks one batch item; a rejection carries the topic its kind goes to, for the
/// statistics.
fn prepare_item(
    item: &str,
    index: usize,
    rules: &Rules,
) -> Result<Prepared, (&'static str, ApiError)> {
    // Almost every item is valid: its place (`events[3].event...`) is spelled out only to name
    // an error, by preparing the item again (preparing has no side effects).
    prepare_item_at(item, None, rules).or_else(|_| prepare_item_at(item, Some(index), rules))
}

/// [`prepare_item`], with error paths under `events[index]` (under the root without an index).
fn prepare_item_at(
    item: &str,
    index: Option<usize>,
    rules: &Rules,
) -> Result<Prepared, (&'static str, ApiError)> {
    let place =
        |under: &str| index.map_or_else(String::new, |index| format!("events[{index}]{under}"));
    let item: BatchItem<'_> = parse_object(item, &place("")).map_err(|e| ("unknown", e))?;
    let at = place(".event");
    let topic = item.kind.topic().name;
    let event = item.event.get();
    let prepared = match item.kind {
        EventKind::User => prepare_text::<UserEvent>(event, &at, rules),
        EventKind::Booking => prepare_text::<BookingEvent>(event, &at, rules),
        EventKind::Clickstream => prepare_text::<ClickstreamEvent>(event, &at, rules),
        EventKind::Log => prepare_text::<LogEvent>(event, &at, rules),
        EventKind::External => prepare_text::<ExternalEvent>(event, &at, rules),
    };
    prepared.map_err(|e| (topic, e))
}

fn prepare_text<E: Event>(text: &str, at: &str, rules: &Rules) -> Result<Prepared, ApiError> {
    checked(parse_object::<E>(text, at)?, at, rules)
}

fn checked<E: Event>(event: E, at: &str, rules: &Rules) -> Result<Prepared, ApiError> {
    let mut problems = Vec::new();
    event.check(rules, at, &mut problems);
    if problems.is_empty() {
        Ok(event.prepare(rules.now_millis))
    } else {
        Err(ApiError::Invalid(problems))
    }
}

async fn ingest_one<E: Event>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let topic = E::KIND.topic().name;
    let prepared = json_body(headers, body, &state.limits)
        .and_then(|body| parse_bytes::<E>(&body))
        .and_then(|event| checked(event, "", &rules(&state.limits)));
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            state
                .stats
                .record_event("invalid", topic, Outcome::Rejected);
            return Err(error);
        }
    };
    let publishing = start_publishing(state, prepared);
    let (id, claimed) = finish_publishing(state, publishing, front::request_id(headers)).await?;
    let (status, code, receipt) = match claimed {
        Claimed::Fresh(receipt) => (StatusCode::CREATED, "stored", receipt),
        Claimed::Duplicate(receipt) => (StatusCode::OK, "duplicate", receipt),
    };
    Ok((
        status,
        Json(StoredResponse {
            status: code,
            id,
            receipt,
        }),
    )
        .into_response())
}

/// An event on its way to the broker, with what its outcome is recorded under.
struct Publishing<'a> {
    id: String,
    event_type: &'static str,
    topic: &'static str,
    pending: Pending<'a>,
}

fn start_publishing(state: &AppState, event: Prepared) -> Publishing<'_> {
    let pending = state.publisher.start(&event);
    Publishing {
        id: event.id,
        event_type: event.event_type,
        topic: event.topic.name,
        pending,
    }
}

/// Waits for one event's outcome and records it; the error is what the client is told, and
/// what the log says names the request it came with.
async fn finish_publishing(
    state: &AppState,
    publishing: Publishing<'_>,
    request_id: &str,
) -> Result<(String, Claimed<Receipt>), ApiError> {
    let Publishing {
        id,
        event_type,
        topic,
        pending,
    } = publishing;
    match pending.finish().await {
        Ok(claimed) => {
            let outcome = if matches!(claimed, Claimed::Fresh(_)) {
                Outcome::Stored
            } else {
                Outcome::Duplicate
            };
            state.stats.record_event(event_type, topic, outcome);
            Ok((id, claimed))
        }
        Err(error) => {
            state.stats.record_event(event_type, topic, Outcome::Failed);
            match &error {
                PublishError::Encode(_) => {
                    tracing::error!(%error, id, request_id, "a validated event does not fit its schema")
                }
                _ => tracing::warn!(%error, id, topic, request_id, "event not stored"),
            }
            Err(ApiError::Unavailable {
                reason: error.to_string(),
                retry_after_secs: state.limits.retry_after_secs,
            })
        }
    }
}

fn not_an_object(at: &str, got: &str) -> ApiError {
    let got: String = got.chars().take(40).collect();
    ApiError::Invalid(vec![errors::FieldError::new(at, "a JSON object", got)])
}

fn rules(limits: &Limits) -> Rules {
    Rules {
        now_millis: chrono::Utc::now().timestamp_millis(),
        max_future_skew_millis: limits.max_future_skew_millis,
    }
}

/// Whether a `Content-Type` value declares JSON: `application/json` or `application/*+json`,
/// in any case, with any parameters.
fn is_json_media_type(value: &[u8]) -> bool {
    let essence = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let (prefix, suffix) = (b"application/".as_slice(), b"+json".as_slice());
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() >= prefix.len() + suffix.len()
            && essence[..prefix.len()].eq_ignore_ascii_case(prefix)
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

/// The body, if it is declared as JSON and fits the size limit.
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limits: &Limits,
) -> Result<Bytes, ApiError> {
    // Compared in place: a request's content type is read without allocating (a string is
    // made only for the error).
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let is_json = content_type.is_some_and(is_json_media_type);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(content_type.map_or_else(
            || "no Content-Type".into(),
            |value| String::from_utf8_lossy(value).into_owned(),
        )));
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: limits.max_body_bytes,
            }
        } else {
            ApiError::BadJson(format!("cannot read the body: {rejection}"))
        }
    })
}

/// Parses a whole body as `T`, naming the failing field.
fn parse_bytes<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    // serde would also take a JSON array for a struct, positionally: too lax for an API.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(_) => {
            return Err(not_an_object(
                "$",
                &String::from_utf8_lossy(&body[..body.len().min(40)]),
            ));
        }
    }
    parse(|| serde_json::Deserializer::from_slice(body), "")
}

/// Parses one JSON value's text (an item of a batch, as borrowed from the body) as `T`, if it is
/// an object; errors name their field under `at`.
fn parse_object<'a, T: Deserialize<'a>>(text: &'a str, at: &str) -> Result<T, ApiError> {
    if !text.starts_with('{') {
        return Err(not_an_object(at, text));
    }
    parse(|| serde_json::Deserializer::from_str(text), at)
}

/// Parses a `T` from what `open` reads; errors name their field under `at`.
///
/// Tracking the path of every value while parsing (serde_path_to_error) doubles the parsing's
/// cost (a user event: 2.5 against 1.3 µs, bench/gateway/NOTES.md), so a value is parsed
/// without it, and only input that fails is parsed a second time with it, to name where.
fn parse<'a, T: Deserialize<'a>, R: serde_json::de::Read<'a>>(
    open: impl Fn() -> serde_json::Deserializer<R>,
    at: &str,
) -> Result<T, ApiError> {
    let mut deserializer = open();
    let error = match T::deserialize(&mut deserializer) {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|e| ApiError::BadJson(e.to_string()))?;
            return Ok(value);
        }
        Err(error) => error,
    };
    match serde_path_to_error::deserialize::<_, T>(&mut open()) {
        Err(tracked) => Err(errors::from_json_error(
            tracked.inner(),
            &tracked.path().to_string(),
            at,
        )),
        // The same input and type fail the same way; should they not, the first error stands,
        // placed at the value itself.
        Ok(_) => Err(errors::from_json_error(&error, ".", at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch item is prepared without its place first; an error names it all the same, with
    /// the item's index, for a bad item, a bad event and a failed check alike.
    #[test]
    fn a_batch_items_errors_name_its_place() {
        let rules = Rules {
            now_millis: 1_780_000_000_000,
            max_future_skew_millis: 60_000,
        };
        let event = r#"{"event_id":"e-1","event_type":"search","session_id":"s","app_type":"web","timestamp":1777636800000,"device":{"device_type":"ios","os_version":"iOS 18"}}"#;
        let item = |kind: &str, event: &str| format!(r#"{{"kind":"{kind}","event":{event}}}"#);
        let prepared = prepare_item(&item("user", event), 4, &rules).unwrap();
        assert_eq!((prepared.id.as_str(), prepared.key.as_str()), ("e-1", "s"));

        let paths = |text: &str, index: usize| match prepare_item(text, index, &rules) {
            Err((_, ApiError::Invalid(details))) => {
                details.into_iter().map(|d| d.path).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(paths(&item("teleport", event), 2), ["events[2].kind"]);
        assert_eq!(paths("[1]", 1), ["events[1]"]);
        let bad_type = event.replace("search", "levitate");
        assert_eq!(
            paths(&item("user", &bad_type), 3),
            ["events[3].event.event_type"]
        );
        let failing_checks = event.replace(r#""e-1""#, r#"" ""#).replace("iOS 18", " ");
        assert_eq!(
            paths(&item("user", &failing_checks), 7),
            [
                "events[7].event.event_id",
                "events[7].event.device.os_version"
            ]
        );
        assert_eq!(
            paths(&item("user", &failing_checks), 0),
            [
                "events[0].event.event_id",
                "events[0].event.device.os_version"
            ]
        );
    }

    /// The path-free first pass parses what is valid; what fails is named exactly as a parse
    /// with the path tracked names it, under the item's place in a batch.
    #[test]
    fn parsing_names_the_failing_field_and_accepts_valid_input() {
        let valid = r#"{"event_id":"e-1","event_type":"search","session_id":"s","app_type":"web","timestamp":1777636800000,"device":{"device_type":"ios"}}"#;
        let event: crate::events::UserEvent = parse_bytes(valid.as_bytes()).unwrap();
        assert_eq!(event.event_id, "e-1");
        let event: crate::events::UserEvent = parse_object(valid, "events[0].event").unwrap();
        assert_eq!(event.session_id, "s");

        let field = |error: ApiError| match error {
            ApiError::Invalid(details) if details.len() == 1 => details[0].clone(),
            other => panic!("{other:?}"),
        };
        let wrong_device = valid.replace(r#""ios""#, r#""tv""#);
        let error = parse_bytes::<crate::events::UserEvent>(wrong_device.as_bytes()).unwrap_err();
        assert_eq!(field(error).path, "device.device_type");
        let error =
            parse_object::<crate::events::UserEvent>(&wrong_device, "events[2].event").unwrap_err();
        assert_eq!(field(error).path, "events[2].event.device.device_type");
        let missing = valid.replace(r#""session_id":"s","#, "");
        let error = parse_bytes::<crate::events::UserEvent>(missing.as_bytes()).unwrap_err();
        assert_eq!(
            field(error),
            errors::FieldError::new("session_id", "this required field", "nothing")
        );

        for not_json in [format!("{valid} x"), valid[..valid.len() - 1].to_string()] {
            assert!(
                matches!(
                    parse_bytes::<crate::events::UserEvent>(not_json.as_bytes()),
                    Err(ApiError::BadJson(_))
                ),
                "{not_json}"
            );
        }
    }

    #[test]
    fn json_is_recognised_in_any_case_with_parameters() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/vnd.api+json",
            "APPLICATION/PROBLEM+JSON;q=1",
        ] {
            assert!(is_json_media_type(json.as_bytes()), "{json}");
        }
        for other in [
            "text/plain",
            "text/json",
            "application/jsonx",
            "application/xml",
            "json",
            "",
        ] {
            assert!(!is_json_media_type(other.as_bytes()), "{other}");
        }
    }

    /// The API's name for `value`, if the API accepts it as a `T`.
    fn accepts<T: serde::de::DeserializeOwned>(
        value: &serde_json::Value,
        name: fn(T) -> &'static str,
    ) -> Option<&'static str> {
        serde_json::from_value::<T>(value.clone()).ok().map(name)
    }

    /// Every enum in the OpenAPI document lists exactly the values the API accepts.
    #[test]
    fn documented_enum_values_are_the_accepted_ones() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut checked = 0;
        for (name, schema) in schemas {
            let Some(values) = schema["enum"].as_array() else {
                continue;
            };
            for value in values {
                let text = value.as_str().unwrap();
                use crate::events::*;
                let accepted = match name.as_str() {
                    "UserEventType" => accepts(value, UserEventType::as_str),
                    "BookingEventType" => accepts(value, BookingEventType::as_str),
                    "AppType" => accepts(value, AppType::as_str),
                    "DeviceType" => accepts(value, DeviceType::as_str),
                    "Interaction" => accepts(value, Interaction::as_str),
                    "LogLevel" => accepts(value, LogLevel::as_str),
                    "ExternalSource" => accepts(value, ExternalSource::as_str),
                    "EventKind" => accepts(value, EventKind::as_str),
                    _ => continue,
                };
                assert_eq!(
                    accepted,
                    Some(text),
                    "{name}: documented value {text} is not accepted"
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} enum values checked");
    }

    /// The documented examples are what the docs page and the fuzzer's example phase send.
    #[test]
    fn every_documented_example_is_accepted() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let rules = Rules {
            now_millis: chrono::Utc::now().timestamp_millis(),
            max_future_skew_millis: 0,
        };
        for kind in ["user", "booking", "clickstream", "log", "external"] {
            let schema = &doc["components"]["schemas"];
            let name = match kind {
                "user" => "UserEvent",
                "booking" => "BookingEvent",
                "clickstream" => "ClickstreamEvent",
                "log" => "LogEvent",
                _ => "ExternalEvent",
            };
            let example = schema[name]["example"].clone();
            assert!(
                example.is_object(),
                "{name} has an example: {}",
                schema[name]
            );
            let item = serde_json::json!({"kind": kind, "event": example});
            prepare_item(&item.to_string(), 0, &rules)
                .unwrap_or_else(|(_, e)| panic!("{name}: {:?}", e.body()));
        }
    }
}
