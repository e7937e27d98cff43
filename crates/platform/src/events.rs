//! The application events, modelled once for every service that makes them: the gateway (from
//! its HTTP API) and the workload (from its generators and pipelines).
//!
//! One type per record of `schemas/AppEvent.avsc`, `Clickstream.avsc`, `AppLog.avsc` and
//! `ExternalData.avsc`, with its two encodings: the gateway's JSON body
//! ([`Event::to_gateway_json`]) and the Avro record of the topic's schema ([`Event::encode`]).
//!
//! This module holds the types and what identifies an event (topic, schema, endpoint, id); the
//! closed sets are in `enums`, the gateway JSON in `json`, the Avro encoding in `avro`.

mod avro;
mod enums;
mod json;

use std::collections::BTreeMap;

use crate::{
    schemas,
    topics::{self, TopicSpec},
};

pub use avro::{EncodeError, EventSchema};
pub use enums::{DeviceType, EventSource, ExternalSource, Interaction, LogLevel};
pub use json::rfc3339;

/// The device an app event came from.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub device_type: DeviceType,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// A mobile or web app event, or a booking-system event (`AppEvent`, `topic_app_events`).
#[derive(Debug, Clone, PartialEq)]
pub struct AppEvent {
    pub event_id: String,
    pub event_type: String,
    pub source: EventSource,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub booking_id: Option<String>,
    pub device: Option<Device>,
    pub timestamp_ms: i64,
    pub properties: BTreeMap<String, String>,
}

/// One low-level interaction (`Clickstream`, `topic_clickstream`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClickEvent {
    pub event_id: String,
    pub session_id: String,
    pub user_id: Option<String>,
    pub interaction: Interaction,
    pub page_url: String,
    pub element_id: Option<String>,
    pub x: i32,
    pub y: i32,
    pub viewport_width: Option<i32>,
    pub viewport_height: Option<i32>,
    /// Stored as its lowercase text: the Clickstream schema has a string here, not an enum.
    pub device_type: DeviceType,
    pub referrer: Option<String>,
    pub timestamp_ms: i64,
}

/// An application log line (`AppLog`, `topic_app_logs`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub log_id: String,
    pub service: String,
    pub level: LogLevel,
    pub message: String,
    pub logger: Option<String>,
    pub host: Option<String>,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub booking_id: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub timestamp_ms: i64,
}

/// One record of an external-data pipeline (`ExternalData`, `topic_external_data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalRecord {
    pub record_id: String,
    pub source_type: ExternalSource,
    pub pipeline: String,
    pub location: Option<String>,
    pub observed_at_ms: i64,
    pub fetched_at_ms: i64,
    /// The payload as a JSON document (an object).
    pub payload_json: String,
    pub quality_warnings: Vec<String>,
}

/// Any application event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    App(AppEvent),
    Click(ClickEvent),
    Log(LogEvent),
    External(ExternalRecord),
}

impl Event {
    /// The topic the event is stored in.
    pub fn topic_spec(&self) -> &'static TopicSpec {
        match self {
            Self::App(_) => &topics::APP_EVENTS,
            Self::Click(_) => &topics::CLICKSTREAM,
            Self::Log(_) => &topics::APP_LOGS,
            Self::External(_) => &topics::EXTERNAL_DATA,
        }
    }

    /// The name of the topic the event is stored in.
    pub fn topic(&self) -> &'static str {
        self.topic_spec().name
    }

    /// The schema text of this event's topic.
    pub fn schema_text(&self) -> &'static str {
        match self {
            Self::App(_) => schemas::APP_EVENT,
            Self::Click(_) => schemas::CLICKSTREAM,
            Self::Log(_) => schemas::APP_LOG,
            Self::External(_) => schemas::EXTERNAL_DATA,
        }
    }

    /// The gateway endpoint that accepts this event.
    pub fn gateway_path(&self) -> &'static str {
        match self {
            Self::App(e) if e.source == EventSource::BookingSystem => "/events/booking",
            Self::App(_) => "/events/user",
            Self::Click(_) => "/events/clickstream",
            Self::Log(_) => "/events/logs",
            Self::External(_) => "/events/external",
        }
    }

    /// Unique id of the event (its deduplication key).
    pub fn id(&self) -> &str {
        match self {
            Self::App(e) => &e.event_id,
            Self::Click(e) => &e.event_id,
            Self::Log(e) => &e.log_id,
            Self::External(e) => &e.record_id,
        }
    }
}

#[cfg(test)]
mod tests;
