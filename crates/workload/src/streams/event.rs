//! The events the streaming generators produce, and their two encodings: the gateway's JSON
//! (snake_case field names of the Avro schemas, RFC 3339 times) and Avro values of the
//! registered schemas (what the gateway would publish).

use std::collections::{BTreeMap, HashMap};

use apache_avro::{Schema, types::Value as Avro};
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSource {
    MobileApp,
    WebApp,
    BookingSystem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    Ios,
    Android,
    Desktop,
    Tablet,
    MobileWeb,
}

impl DeviceType {
    /// The symbol in the schemas' DeviceType enum.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Ios => "IOS",
            Self::Android => "ANDROID",
            Self::Desktop => "DESKTOP",
            Self::Tablet => "TABLET",
            Self::MobileWeb => "MOBILE_WEB",
        }
    }

    /// Clickstream's free-text spelling.
    pub fn lower(self) -> &'static str {
        match self {
            Self::Ios => "ios",
            Self::Android => "android",
            Self::Desktop => "desktop",
            Self::Tablet => "tablet",
            Self::MobileWeb => "mobile_web",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub device_type: DeviceType,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub user_agent: Option<String>,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Click,
    Tap,
    Scroll,
    Hover,
    View,
    Input,
}

impl Interaction {
    pub fn symbol(self) -> &'static str {
        ["CLICK", "TAP", "SCROLL", "HOVER", "VIEW", "INPUT"][self as usize]
    }
}

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
    pub device_type: DeviceType,
    pub referrer: Option<String>,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub fn symbol(self) -> &'static str {
        ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"][self as usize]
    }
}

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

/// The schema's ExternalSource symbols.
pub const EXTERNAL_SOURCES: [&str; 7] = [
    "WEATHER",
    "MAPS",
    "SOCIAL_MEDIA",
    "MARKET_DATA",
    "NEWS",
    "TRAVEL_TRENDS",
    "OTHER",
];

#[derive(Debug, Clone, PartialEq)]
pub struct ExternalRecord {
    pub record_id: String,
    /// One of [`EXTERNAL_SOURCES`].
    pub source_type: String,
    pub pipeline: String,
    pub location: Option<String>,
    pub observed_at_ms: i64,
    pub fetched_at_ms: i64,
    pub payload_json: String,
    pub quality_warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    App(AppEvent),
    Click(ClickEvent),
    Log(LogEvent),
    External(ExternalRecord),
}

#[derive(Debug, thiserror::Error)]
#[error("event does not fit schema {schema}: {source}")]
pub struct EncodeError {
    schema: &'static str,
    source: Box<apache_avro::Error>,
}

impl Event {
    pub fn topic(&self) -> &'static str {
        match self {
            Self::App(_) => platform::topics::APP_EVENTS.name,
            Self::Click(_) => platform::topics::CLICKSTREAM.name,
            Self::Log(_) => platform::topics::APP_LOGS.name,
            Self::External(_) => platform::topics::EXTERNAL_DATA.name,
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

    /// Kafka key: what must stay in order (a session, a service, a pipeline and place).
    pub fn key(&self) -> String {
        match self {
            Self::App(e) => e
                .booking_id
                .clone()
                .or_else(|| e.session_id.clone())
                .unwrap_or_else(|| e.event_id.clone()),
            Self::Click(e) => e.session_id.clone(),
            Self::Log(e) => e.service.clone(),
            Self::External(e) => format!("{}/{}", e.pipeline, e.location.as_deref().unwrap_or("-")),
        }
    }

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
                        "device_type": device.device_type.lower(),
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
                "interaction": e.interaction.symbol().to_ascii_lowercase(),
                "page_url": e.page_url,
                "element_id": e.element_id,
                "x": e.x,
                "y": e.y,
                "viewport_width": e.viewport_width,
                "viewport_height": e.viewport_height,
                "device_type": e.device_type.lower(),
                "referrer": e.referrer,
                "timestamp": rfc3339(e.timestamp_ms),
            }),
            Self::Log(e) => json!({
                "log_id": e.log_id,
                "service": e.service,
                "level": e.level.symbol().to_ascii_lowercase(),
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
                "source_type": e.source_type.to_ascii_lowercase(),
                "pipeline": e.pipeline,
                "location": e.location,
                "observed_at": rfc3339(e.observed_at_ms),
                "fetched_at": rfc3339(e.fetched_at_ms),
                "payload": serde_json::from_str::<Json>(&e.payload_json).unwrap_or(Json::Null),
                "quality_warnings": e.quality_warnings,
            }),
        }
    }

    /// The schema text of this event's topic.
    pub fn schema_text(&self) -> &'static str {
        match self {
            Self::App(_) => platform::schemas::APP_EVENT,
            Self::Click(_) => platform::schemas::CLICKSTREAM,
            Self::Log(_) => platform::schemas::APP_LOG,
            Self::External(_) => platform::schemas::EXTERNAL_DATA,
        }
    }

    /// The Avro record for this event's topic, as the gateway would publish it at `received_at_ms`.
    pub fn to_avro(&self, schema: &Schema, received_at_ms: i64) -> Result<Avro, EncodeError> {
        let record = match self {
            Self::App(e) => Avro::Record(vec![
                ("event_id".into(), Avro::String(e.event_id.clone())),
                ("event_type".into(), Avro::String(e.event_type.clone())),
                (
                    "source".into(),
                    Avro::Enum(
                        e.source as u32,
                        ["MOBILE_APP", "WEB_APP", "BOOKING_SYSTEM"][e.source as usize].into(),
                    ),
                ),
                ("user_id".into(), opt_string(&e.user_id)),
                ("session_id".into(), opt_string(&e.session_id)),
                ("booking_id".into(), opt_string(&e.booking_id)),
                (
                    "device".into(),
                    match &e.device {
                        None => Avro::Union(0, Box::new(Avro::Null)),
                        Some(d) => Avro::Union(
                            1,
                            Box::new(Avro::Record(vec![
                                (
                                    "device_type".into(),
                                    Avro::Enum(
                                        d.device_type.index() as u32,
                                        d.device_type.symbol().into(),
                                    ),
                                ),
                                ("os_version".into(), opt_string(&d.os_version)),
                                ("app_version".into(), opt_string(&d.app_version)),
                                ("user_agent".into(), opt_string(&d.user_agent)),
                            ])),
                        ),
                    },
                ),
                ("timestamp".into(), Avro::TimestampMillis(e.timestamp_ms)),
                ("received_at".into(), Avro::TimestampMillis(received_at_ms)),
                ("properties".into(), string_map(&e.properties)),
            ]),
            Self::Click(e) => Avro::Record(vec![
                ("event_id".into(), Avro::String(e.event_id.clone())),
                ("session_id".into(), Avro::String(e.session_id.clone())),
                ("user_id".into(), opt_string(&e.user_id)),
                (
                    "interaction".into(),
                    Avro::Enum(e.interaction as u32, e.interaction.symbol().into()),
                ),
                ("page_url".into(), Avro::String(e.page_url.clone())),
                ("element_id".into(), opt_string(&e.element_id)),
                ("x".into(), Avro::Int(e.x)),
                ("y".into(), Avro::Int(e.y)),
                ("viewport_width".into(), opt_int(e.viewport_width)),
                ("viewport_height".into(), opt_int(e.viewport_height)),
                (
                    "device_type".into(),
                    Avro::String(e.device_type.lower().into()),
                ),
                ("referrer".into(), opt_string(&e.referrer)),
                ("timestamp".into(), Avro::TimestampMillis(e.timestamp_ms)),
                ("received_at".into(), Avro::TimestampMillis(received_at_ms)),
            ]),
            Self::Log(e) => Avro::Record(vec![
                ("log_id".into(), Avro::String(e.log_id.clone())),
                ("service".into(), Avro::String(e.service.clone())),
                (
                    "level".into(),
                    Avro::Enum(e.level as u32, e.level.symbol().into()),
                ),
                ("message".into(), Avro::String(e.message.clone())),
                ("logger".into(), opt_string(&e.logger)),
                ("host".into(), opt_string(&e.host)),
                ("trace_id".into(), opt_string(&e.trace_id)),
                ("request_id".into(), opt_string(&e.request_id)),
                ("user_id".into(), opt_string(&e.user_id)),
                ("session_id".into(), opt_string(&e.session_id)),
                ("booking_id".into(), opt_string(&e.booking_id)),
                ("attributes".into(), string_map(&e.attributes)),
                ("timestamp".into(), Avro::TimestampMillis(e.timestamp_ms)),
                ("received_at".into(), Avro::TimestampMillis(received_at_ms)),
            ]),
            Self::External(e) => {
                let index = EXTERNAL_SOURCES
                    .iter()
                    .position(|s| *s == e.source_type)
                    .unwrap_or(EXTERNAL_SOURCES.len() - 1);
                Avro::Record(vec![
                    ("record_id".into(), Avro::String(e.record_id.clone())),
                    (
                        "source_type".into(),
                        Avro::Enum(index as u32, EXTERNAL_SOURCES[index].into()),
                    ),
                    ("pipeline".into(), Avro::String(e.pipeline.clone())),
                    ("location".into(), opt_string(&e.location)),
                    (
                        "observed_at".into(),
                        Avro::TimestampMillis(e.observed_at_ms),
                    ),
                    ("fetched_at".into(), Avro::TimestampMillis(e.fetched_at_ms)),
                    ("payload_json".into(), Avro::String(e.payload_json.clone())),
                    (
                        "quality_warnings".into(),
                        Avro::Array(
                            e.quality_warnings
                                .iter()
                                .cloned()
                                .map(Avro::String)
                                .collect(),
                        ),
                    ),
                    ("received_at".into(), Avro::TimestampMillis(received_at_ms)),
                ])
            }
        };
        // Resolving checks the record against the schema here, with a message that names it.
        record.resolve(schema).map_err(|source| EncodeError {
            schema: self.topic(),
            source: Box::new(source),
        })
    }
}

fn opt_string(value: &Option<String>) -> Avro {
    match value {
        Some(s) => Avro::Union(1, Box::new(Avro::String(s.clone()))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    }
}

fn opt_int(value: Option<i32>) -> Avro {
    match value {
        Some(i) => Avro::Union(1, Box::new(Avro::Int(i))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    }
}

fn string_map(map: &BTreeMap<String, String>) -> Avro {
    Avro::Map(
        map.iter()
            .map(|(k, v)| (k.clone(), Avro::String(v.clone())))
            .collect::<HashMap<_, _>>(),
    )
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
