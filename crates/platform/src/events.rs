//! The application events, modelled once for every service that makes them: the gateway (from
//! its HTTP API) and the workload (from its generators and pipelines).
//!
//! One type per record of `schemas/AppEvent.avsc`, `Clickstream.avsc`, `AppLog.avsc` and
//! `ExternalData.avsc`, with its two encodings: the gateway's JSON body
//! ([`Event::to_gateway_json`]) and the Avro record of the topic's schema ([`Event::into_avro`]).
//!
//! Enum and union positions are never written down here: records are built with symbols and
//! branch values, and their positions are looked up by name in the parsed schema they are
//! encoded with (an enum by its symbol, a union by the type of the branch value). A schema that
//! reorders symbols or branches therefore still encodes correctly, and a symbol the schema does
//! not know is an error that names it.

use std::collections::{BTreeMap, HashMap};

use apache_avro::{Schema, types::Value};
use serde_json::{Value as Json, json};

use crate::{
    avro::{AvroError, RegisteredSchema},
    schemas,
    topics::{self, TopicSpec},
};

/// Defines a closed set of symbols: the JSON spelling (lowercase, what the gateway accepts) and
/// the Avro symbol (uppercase, what the schema declares), serde names and the OpenAPI enum.
///
/// Every JSON text is the snake_case of its variant: utoipa does not see a `rename` whose
/// literal comes through a macro fragment, so the container's `rename_all` names the values in
/// the OpenAPI document; the gateway's tests check both agree.
macro_rules! symbols {
    ($(#[$meta:meta])* $name:ident {
        $($variant:ident = $text:literal / $symbol:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Deserialize, serde::Serialize,
        )]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The Avro symbols, in declaration order.
            pub const SYMBOLS: &'static [&'static str] = &[$($symbol),+];
            /// The name of the Avro enum in the schemas.
            pub const AVRO_NAME: &'static str = stringify!($name);

            /// The JSON spelling (lowercase).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// The Avro symbol (uppercase).
            pub fn symbol(self) -> &'static str {
                match self { $(Self::$variant => $symbol),+ }
            }

            /// The value whose Avro symbol is `symbol`.
            pub fn from_symbol(symbol: &str) -> Option<Self> {
                match symbol { $($symbol => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

symbols!(
    /// Where an app event comes from.
    EventSource {
        MobileApp = "mobile_app" / "MOBILE_APP",
        WebApp = "web_app" / "WEB_APP",
        BookingSystem = "booking_system" / "BOOKING_SYSTEM",
    }
);

symbols!(
    /// The kind of device.
    DeviceType {
        Ios = "ios" / "IOS",
        Android = "android" / "ANDROID",
        Desktop = "desktop" / "DESKTOP",
        Tablet = "tablet" / "TABLET",
        MobileWeb = "mobile_web" / "MOBILE_WEB",
        Server = "server" / "SERVER",
    }
);

symbols!(
    /// A low-level interaction on a page or screen.
    Interaction {
        Click = "click" / "CLICK",
        Tap = "tap" / "TAP",
        Scroll = "scroll" / "SCROLL",
        Hover = "hover" / "HOVER",
        View = "view" / "VIEW",
        Input = "input" / "INPUT",
    }
);

symbols!(
    /// Severity of a log line.
    LogLevel {
        Debug = "debug" / "DEBUG",
        Info = "info" / "INFO",
        Warn = "warn" / "WARN",
        Error = "error" / "ERROR",
        Fatal = "fatal" / "FATAL",
    }
);

symbols!(
    /// Where an external-data record comes from.
    ExternalSource {
        Weather = "weather" / "WEATHER",
        Maps = "maps" / "MAPS",
        SocialMedia = "social_media" / "SOCIAL_MEDIA",
        MarketData = "market_data" / "MARKET_DATA",
        News = "news" / "NEWS",
        TravelTrends = "travel_trends" / "TRAVEL_TRENDS",
        Other = "other" / "OTHER",
    }
);

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

/// An event that cannot be encoded with the schema it was given.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A symbol the schema's enum lacks, a value no union branch takes, a field it does not
    /// have: the code and the schema disagree.
    #[error("event does not fit the schema of {topic}: {problem}")]
    Shape {
        topic: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Avro(#[from] AvroError),
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

    /// The Avro record of this event's topic, as published at `received_at_ms`, with enum and
    /// union positions taken from `schema` (the topic's schema, see [`Event::schema_text`]).
    pub fn into_avro(self, schema: &Schema, received_at_ms: i64) -> Result<Value, EncodeError> {
        let topic = self.topic();
        let mut record = self.record(received_at_ms);
        place(&mut record, schema, schema, "")
            .map_err(|problem| EncodeError::Shape { topic, problem })?;
        Ok(record)
    }

    /// [`Event::into_avro`] of a copy.
    pub fn to_avro(&self, schema: &Schema, received_at_ms: i64) -> Result<Value, EncodeError> {
        self.clone().into_avro(schema, received_at_ms)
    }

    /// The event in the Confluent wire format of `registered` (the topic's registered schema).
    pub fn encode(
        self,
        registered: &RegisteredSchema,
        received_at_ms: i64,
    ) -> Result<Vec<u8>, EncodeError> {
        let value = self.into_avro(&registered.schema, received_at_ms)?;
        Ok(registered.encode(value)?)
    }

    /// The record with symbols and branch values but no positions yet (see [`place`]).
    fn record(self, received_at_ms: i64) -> Value {
        let received_at = (
            "received_at".to_string(),
            Value::TimestampMillis(received_at_ms),
        );
        match self {
            Self::App(e) => Value::Record(vec![
                ("event_id".into(), Value::String(e.event_id)),
                ("event_type".into(), Value::String(e.event_type)),
                ("source".into(), symbol(e.source.symbol())),
                ("user_id".into(), optional(e.user_id)),
                ("session_id".into(), optional(e.session_id)),
                ("booking_id".into(), optional(e.booking_id)),
                (
                    "device".into(),
                    branch(e.device.map(|d| {
                        Value::Record(vec![
                            ("device_type".into(), symbol(d.device_type.symbol())),
                            ("os_version".into(), optional(d.os_version)),
                            ("app_version".into(), optional(d.app_version)),
                            ("user_agent".into(), optional(d.user_agent)),
                        ])
                    })),
                ),
                ("timestamp".into(), Value::TimestampMillis(e.timestamp_ms)),
                received_at,
                ("properties".into(), string_map(e.properties)),
            ]),
            Self::Click(e) => Value::Record(vec![
                ("event_id".into(), Value::String(e.event_id)),
                ("session_id".into(), Value::String(e.session_id)),
                ("user_id".into(), optional(e.user_id)),
                ("interaction".into(), symbol(e.interaction.symbol())),
                ("page_url".into(), Value::String(e.page_url)),
                ("element_id".into(), optional(e.element_id)),
                ("x".into(), Value::Int(e.x)),
                ("y".into(), Value::Int(e.y)),
                (
                    "viewport_width".into(),
                    branch(e.viewport_width.map(Value::Int)),
                ),
                (
                    "viewport_height".into(),
                    branch(e.viewport_height.map(Value::Int)),
                ),
                (
                    "device_type".into(),
                    Value::String(e.device_type.as_str().into()),
                ),
                ("referrer".into(), optional(e.referrer)),
                ("timestamp".into(), Value::TimestampMillis(e.timestamp_ms)),
                received_at,
            ]),
            Self::Log(e) => Value::Record(vec![
                ("log_id".into(), Value::String(e.log_id)),
                ("service".into(), Value::String(e.service)),
                ("level".into(), symbol(e.level.symbol())),
                ("message".into(), Value::String(e.message)),
                ("logger".into(), optional(e.logger)),
                ("host".into(), optional(e.host)),
                ("trace_id".into(), optional(e.trace_id)),
                ("request_id".into(), optional(e.request_id)),
                ("user_id".into(), optional(e.user_id)),
                ("session_id".into(), optional(e.session_id)),
                ("booking_id".into(), optional(e.booking_id)),
                ("attributes".into(), string_map(e.attributes)),
                ("timestamp".into(), Value::TimestampMillis(e.timestamp_ms)),
                received_at,
            ]),
            Self::External(e) => Value::Record(vec![
                ("record_id".into(), Value::String(e.record_id)),
                ("source_type".into(), symbol(e.source_type.symbol())),
                ("pipeline".into(), Value::String(e.pipeline)),
                ("location".into(), optional(e.location)),
                (
                    "observed_at".into(),
                    Value::TimestampMillis(e.observed_at_ms),
                ),
                ("fetched_at".into(), Value::TimestampMillis(e.fetched_at_ms)),
                ("payload_json".into(), Value::String(e.payload_json)),
                (
                    "quality_warnings".into(),
                    Value::Array(e.quality_warnings.into_iter().map(Value::String).collect()),
                ),
                received_at,
            ]),
        }
    }
}

/// An enum symbol; its position is set by [`place`].
fn symbol(symbol: &str) -> Value {
    Value::Enum(0, symbol.to_string())
}

/// A value of an optional field (a union with `null`); the branch is set by [`place`].
fn branch(value: Option<Value>) -> Value {
    Value::Union(0, Box::new(value.unwrap_or(Value::Null)))
}

fn optional(value: Option<String>) -> Value {
    branch(value.map(Value::String))
}

fn string_map(map: BTreeMap<String, String>) -> Value {
    Value::Map(
        map.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<HashMap<_, _>>(),
    )
}

/// Sets the position of every enum symbol and union branch in `value` from `schema`: an enum's
/// by its symbol, a union's by the first branch whose type takes the branch value. `root` is
/// the whole schema, where named references are looked up; `at` the path, for errors.
fn place(value: &mut Value, schema: &Schema, root: &Schema, at: &str) -> Result<(), String> {
    match (value, schema) {
        (value, Schema::Ref { name }) => {
            let fullname = name.fullname(None);
            let named = find_named(root, &fullname)
                .ok_or_else(|| format!("{at}: the schema does not define {fullname}"))?;
            place(value, named, root, at)
        }
        (Value::Record(fields), Schema::Record(record)) => {
            for (name, field) in fields.iter_mut() {
                let path = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                let index = record
                    .lookup
                    .get(name.as_str())
                    .ok_or_else(|| format!("{path}: {} has no such field", record.name))?;
                place(field, &record.fields[*index].schema, root, &path)?;
            }
            Ok(())
        }
        (Value::Enum(index, symbol), Schema::Enum(schema)) => {
            let position = schema
                .symbols
                .iter()
                .position(|s| s == symbol)
                .ok_or_else(|| format!("{at}: {symbol} is not a symbol of {}", schema.name))?;
            *index = u32::try_from(position).map_err(|e| format!("{at}: {e}"))?;
            Ok(())
        }
        (Value::Union(index, inner), Schema::Union(union)) => {
            let (position, branch) = union
                .variants()
                .iter()
                .enumerate()
                .find(|(_, branch)| takes(branch, inner, root))
                .ok_or_else(|| format!("{at}: no branch of the union takes {inner:?}"))?;
            *index = u32::try_from(position).map_err(|e| format!("{at}: {e}"))?;
            place(inner, branch, root, at)
        }
        (Value::Map(entries), Schema::Map(map)) => {
            for (key, entry) in entries.iter_mut() {
                place(entry, &map.types, root, &format!("{at}[{key:?}]"))?;
            }
            Ok(())
        }
        (Value::Array(items), Schema::Array(array)) => {
            for (i, item) in items.iter_mut().enumerate() {
                place(item, &array.items, root, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        // Everything else has no positions; the encoder checks the types.
        _ => Ok(()),
    }
}

/// Whether a union branch of type `schema` takes `value`.
fn takes(schema: &Schema, value: &Value, root: &Schema) -> bool {
    match (schema, value) {
        (Schema::Ref { name }, value) => {
            find_named(root, &name.fullname(None)).is_some_and(|named| takes(named, value, root))
        }
        (Schema::Enum(schema), Value::Enum(_, symbol)) => schema.symbols.contains(symbol),
        (Schema::Record(record), Value::Record(fields)) => fields
            .iter()
            .all(|(name, _)| record.lookup.contains_key(name.as_str())),
        (Schema::Null, Value::Null)
        | (Schema::Boolean, Value::Boolean(_))
        | (Schema::Int, Value::Int(_))
        | (Schema::Long, Value::Long(_))
        | (Schema::Float, Value::Float(_))
        | (Schema::Double, Value::Double(_))
        | (Schema::Bytes, Value::Bytes(_))
        | (Schema::String, Value::String(_))
        | (Schema::TimestampMillis, Value::TimestampMillis(_))
        | (Schema::Map(_), Value::Map(_))
        | (Schema::Array(_), Value::Array(_)) => true,
        _ => false,
    }
}

/// The named type (record, enum, fixed) called `fullname` defined anywhere in `schema`.
fn find_named<'a>(schema: &'a Schema, fullname: &str) -> Option<&'a Schema> {
    match schema {
        Schema::Record(record) => {
            if record.name.fullname(None) == fullname {
                return Some(schema);
            }
            record
                .fields
                .iter()
                .find_map(|f| find_named(&f.schema, fullname))
        }
        Schema::Enum(e) if e.name.fullname(None) == fullname => Some(schema),
        Schema::Fixed(f) if f.name.fullname(None) == fullname => Some(schema),
        Schema::Union(union) => union
            .variants()
            .iter()
            .find_map(|v| find_named(v, fullname)),
        Schema::Map(map) => find_named(&map.types, fullname),
        Schema::Array(array) => find_named(&array.items, fullname),
        _ => None,
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
