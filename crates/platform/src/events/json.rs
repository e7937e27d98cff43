//! The gateway's JSON body of an event: what the workload sends to the gateway's HTTP API and
//! what the gateway's own shapes accept (the schemas' field names, closed sets in lowercase,
//! times in RFC 3339). Apart from the Avro encoding, which follows the registered schemas.

use serde_json::{Value as Json, json};

use super::{Event, EventSource};

impl Event {
    /// The JSON body the gateway accepts: the schemas' field names, closed sets in lowercase,
    /// times in RFC 3339.
    pub fn to_gateway_json(&self) -> Json {
        match self {
            Self::App(e) if e.source == EventSource::BookingSystem => json!({
                "event_id": e.event_id,
                "event_type": e.event_type,
                "booking_id": e.booking_id,
                "user_id": e.user_id,
                "timestamp": rfc3339(e.timestamp_ms),
                "properties": e.properties,
            }),
            Self::App(e) => {
                let mut body = json!({
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "user_id": e.user_id,
                    "session_id": e.session_id,
                    "app_type": if e.source == EventSource::MobileApp { "mobile" } else { "web" },
                    "booking_id": e.booking_id,
                    "timestamp": rfc3339(e.timestamp_ms),
                    "properties": e.properties,
                });
                if let Some(device) = &e.device {
                    body["device"] = json!({
                        "device_type": device.device_type.as_str(),
                        "os_version": device.os_version,
                        "app_version": device.app_version,
                        "user_agent": device.user_agent,
                    });
                }
                body
            }
            Self::Click(e) => json!({
                "event_id": e.event_id,
                "session_id": e.session_id,
                "user_id": e.user_id,
                "interaction": e.interaction.as_str(),
                "page_url": e.page_url,
                "element_id": e.element_id,
                "x": e.x,
                "y": e.y,
                "viewport_width": e.viewport_width,
                "viewport_height": e.viewport_height,
                "device_type": e.device_type.as_str(),
                "referrer": e.referrer,
                "timestamp": rfc3339(e.timestamp_ms),
            }),
            Self::Log(e) => json!({
                "log_id": e.log_id,
                "service": e.service,
                "level": e.level.as_str(),
                "message": e.message,
                "logger": e.logger,
                "host": e.host,
                "trace_id": e.trace_id,
                "request_id": e.request_id,
                "user_id": e.user_id,
                "session_id": e.session_id,
                "booking_id": e.booking_id,
                "attributes": e.attributes,
                "timestamp": rfc3339(e.timestamp_ms),
            }),
            Self::External(e) => json!({
                "record_id": e.record_id,
                "source_type": e.source_type.as_str(),
                "pipeline": e.pipeline,
                "location": e.location,
                "observed_at": rfc3339(e.observed_at_ms),
                "fetched_at": rfc3339(e.fetched_at_ms),
                "payload": serde_json::from_str::<Json>(&e.payload_json).unwrap_or(Json::Null),
                "quality_warnings": e.quality_warnings,
            }),
        }
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
