//! Every error answer of the API: a status code and a JSON body that says precisely what was
//! wrong (for bad input: the field path, what was expected, what came).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where in the body, e.g. `events[3].event.timestamp`; `$` is the whole body.
    pub path: String,
    pub expected: String,
    pub got: String,
}

impl FieldError {
    pub fn new(
        path: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: bad_json, invalid_event, payload_too_large, too_many_events,
    /// unsupported_media_type, unauthorized, not_found, unavailable.
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
    #[error("the event is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("a batch holds at most {max} events, this one {got}")]
    TooManyEvents { max: usize, got: usize },
    #[error("the body must be application/json, not {0}")]
    UnsupportedMediaType(String),
    #[error("a valid API key is required (X-API-Key or Authorization: Bearer)")]
    Unauthorized,
    #[error("no such endpoint; see /docs")]
    NotFound,
    /// Nothing was stored: the broker or the registry cannot take the event now.
    #[error("{reason}; nothing was stored, retry later")]
    Unavailable {
        reason: String,
        retry_after_secs: u64,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } | Self::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::Invalid(_) => "invalid_event",
            Self::TooLarge { .. } => "payload_too_large",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let details = match self {
            Self::Invalid(details) => details.clone(),
            _ => Vec::new(),
        };
        let message = match self {
            Self::Invalid(details) => format!(
                "the event is invalid: {}",
                details
                    .iter()
                    .map(|d| format!("{}: expected {}, got {}", d.path, d.expected, d.got))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => other.to_string(),
        };
        ErrorBody {
            error: self.code().into(),
            message,
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Self::Unavailable {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Turns a JSON parsing failure at `path` (serde_path_to_error's, "." for the value itself)
/// into a 400 (not JSON at all) or a 422 naming the field.
pub fn from_json_error(inner: &serde_json::Error, path: &str, at: &str) -> ApiError {
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::BadJson(inner.to_string());
    }
    let parent = join_path(at, path);
    ApiError::Invalid(vec![describe(
        &parent,
        &without_position(&inner.to_string()),
    )])
}

fn join_path(at: &str, inner: &str) -> String {
    match (at.is_empty(), inner == ".") {
        (true, true) => "$".into(),
        (true, false) => inner.into(),
        (false, true) => at.into(),
        (false, false) => format!("{at}.{inner}"),
    }
}

/// serde_json appends " at line L column C" to data errors; the path says it better.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// Splits serde's messages ("invalid type: integer `5`, expected a string", "missing field
/// `x`", "unknown variant `y`, expected one of ...") into path, expected and got.
fn describe(parent: &str, message: &str) -> FieldError {
    let child = |name: &str| {
        if parent == "$" {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    let quoted = |text: &str| text.split('`').nth(1).unwrap_or_default().to_string();
    if let Some(rest) = message.strip_prefix("missing field ") {
        return FieldError::new(child(&quoted(rest)), "this required field", "nothing");
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // serde_path_to_error's path already ends with the unknown field.
        let expected = rest
            .split_once(", expected ")
            .map_or("no such field", |(_, e)| e);
        let expected = expected
            .strip_prefix("one of ")
            .map(|f| format!("one of the fields {f}"))
            .unwrap_or_else(|| expected.to_string());
        return FieldError::new(parent, expected, "an unknown field");
    }
    for prefix in [
        "invalid type: ",
        "invalid value: ",
        "unknown variant ",
        "invalid length ",
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((got, expected)) = rest.split_once(", expected ")
        {
            return FieldError::new(parent, expected, got);
        }
    }
    FieldError::new(parent, "a valid value", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only deserialized, to provoke errors")]
    struct Inner {
        n: i32,
        kind: crate::events::AppType,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only deserialized, to provoke errors")]
    struct Outer {
        items: Vec<Inner>,
    }

    fn error_of(json: &str) -> ApiError {
        let mut de = serde_json::Deserializer::from_str(json);
        let error = serde_path_to_error::deserialize::<_, Outer>(&mut de).unwrap_err();
        from_json_error(error.inner(), &error.path().to_string(), "")
    }

    fn single(error: ApiError) -> FieldError {
        match error {
            ApiError::Invalid(mut details) if details.len() == 1 => details.remove(0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn type_errors_name_path_expected_and_got() {
        let e = single(error_of(
            r#"{"items":[{"n":1,"kind":"web"},{"n":"x","kind":"web"}]}"#,
        ));
        assert_eq!(e, FieldError::new("items[1].n", "i32", "string \"x\""));
        let e = single(error_of(r#"{"items":[{"n":1,"kind":"tv"}]}"#));
        assert_eq!((e.path.as_str(), e.got.as_str()), ("items[0].kind", "`tv`"));
        assert!(e.expected.contains("`mobile`"), "{e:?}");
    }

    #[test]
    fn missing_and_unknown_fields_point_at_the_field() {
        assert_eq!(
            single(error_of(r#"{"items":[{"n":1}]}"#)),
            FieldError::new("items[0].kind", "this required field", "nothing")
        );
        let e = single(error_of(r#"{"items":[],"extra":1}"#));
        assert_eq!(
            (e.path.as_str(), e.got.as_str()),
            ("extra", "an unknown field")
        );
        assert_eq!(single(error_of("1")).path, "$");
    }

    #[test]
    fn syntax_errors_are_bad_json() {
        assert!(matches!(error_of(r#"{"items":[}"#), ApiError::BadJson(_)));
        assert!(matches!(error_of(""), ApiError::BadJson(_)));
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let response = ApiError::Unavailable {
            reason: "broker down".into(),
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
