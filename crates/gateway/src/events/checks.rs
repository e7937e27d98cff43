//! The field checks serde cannot express (blank or overlong text, keys, times out of range),
//! shared by every kind's [`Event::check`](super::Event::check): kept apart from the shapes so
//! the limits and the wording of a [`FieldError`] are defined once, in one place.

use std::collections::BTreeMap;

use super::{EARLIEST_MILLIS, Rules, Timestamp};
use crate::errors::FieldError;

/// Longest id, user, session, booking or service name accepted, in characters.
pub(super) const MAX_ID_CHARS: usize = 128;
/// Longest URL, user agent or other free-text field (log messages excepted), in characters.
pub(super) const MAX_TEXT_CHARS: usize = 4_096;

pub(super) fn path(at: &str, field: &str) -> String {
    if at.is_empty() {
        field.to_string()
    } else {
        format!("{at}.{field}")
    }
}

/// Checks one text field: not blank (when required) and not longer than `max` characters.
pub(super) fn check_text(
    errors: &mut Vec<FieldError>,
    at: &str,
    field: &str,
    value: &str,
    max: usize,
) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(
            path(at, field),
            "a non-blank string",
            format!("{value:?}"),
        ));
    } else {
        check_length(errors, at, field, value, max);
    }
}

pub(super) fn check_length(
    errors: &mut Vec<FieldError>,
    at: &str,
    field: &str,
    value: &str,
    max: usize,
) {
    let chars = value.chars().count();
    if chars > max {
        errors.push(FieldError::new(
            path(at, field),
            format!("at most {max} characters"),
            format!("{chars} characters"),
        ));
    }
}

pub(super) fn check_optional(
    errors: &mut Vec<FieldError>,
    at: &str,
    field: &str,
    value: &Option<String>,
    max: usize,
) {
    if let Some(value) = value {
        check_text(errors, at, field, value, max);
    }
}

pub(super) fn check_map(
    errors: &mut Vec<FieldError>,
    at: &str,
    field: &str,
    map: &BTreeMap<String, String>,
) {
    // The entry's path is spelled out only for an error: most maps have none.
    let entry = |key: &str| format!("{}[{key:?}]", path(at, field));
    for (key, value) in map {
        if key.trim().is_empty() || key.chars().count() > MAX_ID_CHARS {
            errors.push(FieldError::new(
                entry(key),
                format!("a non-blank key of at most {MAX_ID_CHARS} characters"),
                format!("{key:?}"),
            ));
        }
        let chars = value.chars().count();
        if chars > MAX_TEXT_CHARS {
            errors.push(FieldError::new(
                entry(key),
                format!("at most {MAX_TEXT_CHARS} characters"),
                format!("{chars} characters"),
            ));
        }
    }
}

pub(super) fn check_time(
    errors: &mut Vec<FieldError>,
    rules: &Rules,
    at: &str,
    field: &str,
    time: Timestamp,
) {
    let latest = rules
        .now_millis
        .saturating_add(rules.max_future_skew_millis);
    if time.0 < EARLIEST_MILLIS || time.0 > latest {
        errors.push(FieldError::new(
            path(at, field),
            format!(
                "a time between {} and {} (now plus the allowed clock skew)",
                rfc3339(EARLIEST_MILLIS),
                rfc3339(latest)
            ),
            rfc3339(time.0),
        ));
    }
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{millis} ms since the epoch"))
}
