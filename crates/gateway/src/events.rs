//! The accepted event kinds: their JSON shape (which the OpenAPI document is generated from),
//! the checks serde cannot express, and their Avro records.
//!
//! The shapes live here; the field checks they share are in `checks`, and each kind's
//! [`Event`] implementation (its checks and its record in the shared model) in `kinds`.

mod checks;
mod kinds;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de};
use utoipa::{
    ToSchema,
    openapi::{
        KnownFormat, ObjectBuilder, OneOfBuilder, RefOr, Schema, SchemaFormat, Type,
        schema::SchemaType,
    },
};

use crate::errors::FieldError;
use platform::{
    events as model,
    topics::{self, TopicSpec},
};

/// The closed sets and the device the gateway shares with every producer of these events,
/// defined once with the Avro model (`platform::events`).
pub use platform::events::{Device, DeviceType, ExternalSource, Interaction, LogLevel};

/// Earliest event time accepted: anything before is a unit mistake (seconds for milliseconds).
const EARLIEST_MILLIS: i64 = 946_684_800_000; // 2000-01-01T00:00:00Z

/// Defines a closed set of lowercase strings: serde names, the OpenAPI enum and `as_str`.
/// Every text is the snake_case of its variant: utoipa does not see a `rename` whose literal
/// comes through a macro fragment (it documented `Mobile` for `mobile`), so the container's
/// `rename_all` names the values in the OpenAPI document, and a test checks both agree.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

string_enum!(
    /// What a user did in a mobile or web app.
    UserEventType {
        PageView = "page_view", Click = "click", Search = "search", Filter = "filter",
        BookingView = "booking_view", ClickCta = "click_cta", AppOpen = "app_open",
        AppClose = "app_close", AddToWishlist = "add_to_wishlist", Share = "share",
        SignIn = "sign_in", SignOut = "sign_out", SignUp = "sign_up",
    }
);

string_enum!(
    /// What happened to a booking in the booking system.
    BookingEventType {
        BookingCreated = "booking_created", BookingConfirmed = "booking_confirmed",
        BookingModified = "booking_modified", BookingCancelled = "booking_cancelled",
        PaymentInitiated = "payment_initiated", PaymentCaptured = "payment_captured",
        PaymentFailed = "payment_failed", RefundIssued = "refund_issued",
        CheckIn = "check_in", CheckOut = "check_out",
    }
);

string_enum!(
    /// Which app sent a user event.
    AppType { Mobile = "mobile", Web = "web" }
);

string_enum!(
    /// The kind of an item of a batch, the same as the single-event endpoint it stands for.
    EventKind { User = "user", Booking = "booking", Clickstream = "clickstream", Log = "log", External = "external" }
);

/// An instant given as an RFC 3339 date-time string or as Unix epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 date-time string (e.g. 2026-05-01T12:00:00Z) or Unix epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, millis: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(millis))
            }
            fn visit_u64<E: de::Error>(self, millis: u64) -> Result<Timestamp, E> {
                i64::try_from(millis)
                    .map(Timestamp)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(millis), &self))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| Timestamp(t.timestamp_millis()))
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The OpenAPI description of [`Timestamp`].
fn timestamp_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::Integer))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(EARLIEST_MILLIS as f64)),
        )
        .description(Some("RFC 3339 date-time or Unix epoch milliseconds; from 2000-01-01 up to the allowed clock skew ahead of now"))
}

/// A mobile or web app event (`POST /events/user`), stored in `topic_app_events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "7f1c9a52-3b1e-4c55-9d0a-1b2c3d4e5f60", "event_type": "search", "user_id": "u-42", "session_id": "s-9001", "app_type": "mobile", "timestamp": "2026-05-01T12:00:00Z", "device": {"device_type": "ios", "os_version": "iOS 18.1", "app_version": "4.12.0"}, "properties": {"query": "Da Nang", "guests": "2"}}))]
pub struct UserEvent {
    /// Client-chosen unique id (a UUID, say); a retry with the same id is stored once.
    pub event_id: String,
    pub event_type: UserEventType,
    /// The signed-in user, if any.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Ties the events of one visit together.
    pub session_id: String,
    pub app_type: AppType,
    #[schema(schema_with = timestamp_schema)]
    pub timestamp: Timestamp,
    /// The booking the event concerns, if any.
    #[serde(default)]
    pub booking_id: Option<String>,
    #[serde(default)]
    pub device: Option<Device>,
    /// Event-specific attributes (search query, screen, CTA id, ...), string values.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A booking-system event (`POST /events/booking`), stored in `topic_app_events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "0b6e8d1c-5f7a-4e2b-8c3d-9a1b2c3d4e5f", "event_type": "booking_confirmed", "booking_id": "BK-2026-000123", "user_id": "u-42", "timestamp": 1777636800000i64, "properties": {"amount": "12500000.50", "currency": "VND"}}))]
pub struct BookingEvent {
    /// Unique id; a retry with the same id is stored once.
    pub event_id: String,
    pub event_type: BookingEventType,
    pub booking_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[schema(schema_with = timestamp_schema)]
    pub timestamp: Timestamp,
    /// Event-specific attributes (amount, currency, reason, ...), string values.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// One low-level interaction (`POST /events/clickstream`), stored in `topic_clickstream`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "c0ffee00-1111-4222-8333-444455556666", "session_id": "s-9001", "interaction": "click", "page_url": "/hotels/furama-resort", "element_id": "book-now", "x": 320, "y": 640, "viewport_width": 1280, "viewport_height": 800, "device_type": "desktop", "timestamp": "2026-05-01T12:00:01.250Z"}))]
pub struct ClickstreamEvent {
    /// Unique id; a retry with the same id is stored once.
    pub event_id: String,
    pub session_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    pub interaction: Interaction,
    pub page_url: String,
    /// DOM id or view id of the element.
    #[serde(default)]
    pub element_id: Option<String>,
    /// Horizontal position in CSS pixels from the viewport's left edge.
    pub x: i32,
    /// Vertical position in CSS pixels from the viewport's top edge.
    pub y: i32,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub viewport_width: Option<i32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub viewport_height: Option<i32>,
    pub device_type: DeviceType,
    #[serde(default)]
    pub referrer: Option<String>,
    #[schema(schema_with = timestamp_schema)]
    pub timestamp: Timestamp,
}

/// An application log line (`POST /events/logs`), stored in `topic_app_logs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"log_id": "9d8c7b6a-0000-4000-8000-123456789abc", "service": "booking-api", "level": "error", "message": "payment declined", "trace_id": "4bf92f3577b34da6", "attributes": {"code": "51"}, "timestamp": "2026-05-01T12:00:02Z"}))]
pub struct LogEvent {
    /// Unique id of the line; a retry with the same id is stored once.
    pub log_id: String,
    /// Emitting service, e.g. booking-api.
    pub service: String,
    pub level: LogLevel,
    pub message: String,
    #[serde(default)]
    pub logger: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub booking_id: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[schema(schema_with = timestamp_schema)]
    pub timestamp: Timestamp,
}

/// One record of an external-data pipeline (`POST /events/external`), stored in
/// `topic_external_data`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"record_id": "weather-danang-2026050112", "source_type": "weather", "pipeline": "weather-hourly", "location": "Da Nang", "observed_at": "2026-05-01T12:00:00Z", "fetched_at": "2026-05-01T12:05:00Z", "payload": {"temp_c": 31.5, "sky": "clear"}, "quality_warnings": []}))]
pub struct ExternalEvent {
    /// Unique id; a retry with the same id is stored once.
    pub record_id: String,
    pub source_type: ExternalSource,
    /// The pipeline that produced the record.
    pub pipeline: String,
    /// City or region the record is about.
    #[serde(default)]
    pub location: Option<String>,
    /// The time the data describes.
    #[schema(schema_with = timestamp_schema)]
    pub observed_at: Timestamp,
    /// When the pipeline fetched it.
    #[schema(schema_with = timestamp_schema)]
    pub fetched_at: Timestamp,
    /// The transformed, validated payload: a JSON object.
    #[schema(value_type = Object)]
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// Validation warnings that did not reject the record.
    #[serde(default)]
    pub quality_warnings: Vec<String>,
}

/// What the checks compare against.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Now, in Unix epoch milliseconds.
    pub now_millis: i64,
    pub max_future_skew_millis: i64,
}

/// An event ready for Kafka.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub topic: &'static TopicSpec,
    /// The client's id, the key of deduplication.
    pub id: String,
    /// Kafka record key: events that must stay in order share it.
    pub key: String,
    /// Bounded label for statistics and metrics.
    pub event_type: &'static str,
    /// The event in the shared model, encoded with the topic's registered schema on publishing.
    pub record: model::Event,
    /// When the gateway accepted it (the record's `received_at`), Unix epoch milliseconds.
    pub received_at_millis: i64,
}

/// A kind of event accepted by the gateway.
pub trait Event: for<'de> Deserialize<'de> {
    const KIND: EventKind;
    /// Adds what is wrong with the event to `errors`, with paths under `at` (empty for the root).
    fn check(&self, rules: &Rules, at: &str, errors: &mut Vec<FieldError>);
    fn prepare(self, received_at_millis: i64) -> Prepared;
}

impl EventKind {
    pub fn topic(self) -> &'static TopicSpec {
        match self {
            Self::User | Self::Booking => &topics::APP_EVENTS,
            Self::Clickstream => &topics::CLICKSTREAM,
            Self::Log => &topics::APP_LOGS,
            Self::External => &topics::EXTERNAL_DATA,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{checks::check_time, *};
    use platform::{
        avro::RegisteredSchema,
        events::{EventSchema, EventSource},
        schemas,
    };

    /// The topic schema `schema_text`, registered as `id`, read for writing.
    fn event_schema(id: u32, schema_text: &str) -> EventSchema {
        EventSchema::new(&RegisteredSchema {
            id,
            schema: schemas::parse(schema_text).unwrap(),
        })
    }

    const RULES: Rules = Rules {
        now_millis: 1_780_000_000_000,
        max_future_skew_millis: 60_000,
    };

    fn encode(prepared: Prepared, schema_text: &str) {
        let schema = event_schema(1, schema_text);
        prepared
            .record
            .encode(&schema, prepared.received_at_millis)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn every_kind_encodes_with_its_topic_schema() {
        let user: UserEvent = serde_json::from_value(serde_json::json!({
            "event_id": "e1", "event_type": "search", "session_id": "s", "app_type": "web",
            "timestamp": "2026-05-01T12:00:00+07:00", "device": {"device_type": "desktop"},
            "properties": {"query": "Da Nang"}
        }))
        .unwrap();
        encode(user.prepare(1), schemas::APP_EVENT);
        let booking: BookingEvent = serde_json::from_value(serde_json::json!({
            "event_id": "b1", "event_type": "payment_captured", "booking_id": "BK1", "timestamp": 1_780_000_000_000i64
        })).unwrap();
        encode(booking.prepare(1), schemas::APP_EVENT);
        let click: ClickstreamEvent = serde_json::from_value(serde_json::json!({
            "event_id": "c1", "session_id": "s", "interaction": "input", "page_url": "/", "x": 1, "y": 2,
            "device_type": "mobile_web", "timestamp": 1_780_000_000_000i64, "viewport_width": 390
        })).unwrap();
        encode(click.prepare(1), schemas::CLICKSTREAM);
        let log: LogEvent = serde_json::from_value(serde_json::json!({
            "log_id": "l1", "service": "booking-api", "level": "fatal", "message": "down", "timestamp": 1_780_000_000_000i64
        })).unwrap();
        encode(log.prepare(1), schemas::APP_LOG);
        let external: ExternalEvent = serde_json::from_value(serde_json::json!({
            "record_id": "x1", "source_type": "travel_trends", "pipeline": "p", "observed_at": 1_780_000_000_000i64,
            "fetched_at": 1_780_000_000_000i64, "payload": {"t": 31.5}, "quality_warnings": ["late"]
        })).unwrap();
        encode(external.prepare(1), schemas::EXTERNAL_DATA);
    }

    /// The JSON a producer of the shared model sends (the workload's gateway sink) is accepted
    /// and becomes the same model event, so both encode to the same record.
    #[test]
    fn the_shared_models_gateway_json_round_trips() {
        let t = RULES.now_millis - 1_000;
        let strings = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let app = model::AppEvent {
            event_id: "e1".into(),
            event_type: "search".into(),
            source: EventSource::MobileApp,
            user_id: Some("u-42".into()),
            session_id: Some("s-1".into()),
            booking_id: None,
            device: Some(Device {
                device_type: DeviceType::Android,
                os_version: Some("Android 15".into()),
                app_version: Some("4.12.0".into()),
                user_agent: None,
            }),
            timestamp_ms: t,
            properties: strings(&[("query", "Da Nang")]),
        };
        let events = [
            model::Event::App(app.clone()),
            model::Event::App(model::AppEvent {
                source: EventSource::WebApp,
                device: None,
                ..app.clone()
            }),
            model::Event::App(model::AppEvent {
                event_type: "payment_captured".into(),
                source: EventSource::BookingSystem,
                session_id: None,
                booking_id: Some("BK1".into()),
                device: None,
                ..app
            }),
            model::Event::Click(model::ClickEvent {
                event_id: "c1".into(),
                session_id: "s-1".into(),
                user_id: None,
                interaction: Interaction::Scroll,
                page_url: "/".into(),
                element_id: None,
                x: 0,
                y: 900,
                viewport_width: Some(390),
                viewport_height: Some(844),
                device_type: DeviceType::MobileWeb,
                referrer: Some("https://example.com/".into()),
                timestamp_ms: t,
            }),
            model::Event::Log(model::LogEvent {
                log_id: "l1".into(),
                service: "payment-service".into(),
                level: LogLevel::Warn,
                message: "slow".into(),
                logger: None,
                host: Some("pay-1".into()),
                trace_id: None,
                request_id: Some("r1".into()),
                user_id: None,
                session_id: Some("s-1".into()),
                booking_id: None,
                attributes: strings(&[("ms", "2500")]),
                timestamp_ms: t,
            }),
            model::Event::External(model::ExternalRecord {
                record_id: "x1".into(),
                source_type: ExternalSource::MarketData,
                pipeline: "fx".into(),
                location: None,
                observed_at_ms: t - 60_000,
                fetched_at_ms: t,
                payload_json: r#"{"pair":"USD/VND","rate":25400.5}"#.into(),
                quality_warnings: vec!["stale".into()],
            }),
        ];
        fn accept<E: Event>(json: serde_json::Value) -> Prepared {
            let event: E = serde_json::from_value(json).unwrap();
            let mut errors = Vec::new();
            event.check(&RULES, "", &mut errors);
            assert!(errors.is_empty(), "{errors:?}");
            event.prepare(RULES.now_millis)
        }
        for event in events {
            let json = event.to_gateway_json();
            let prepared = match event.gateway_path() {
                "/events/user" => accept::<UserEvent>(json),
                "/events/booking" => accept::<BookingEvent>(json),
                "/events/clickstream" => accept::<ClickstreamEvent>(json),
                "/events/logs" => accept::<LogEvent>(json),
                "/events/external" => accept::<ExternalEvent>(json),
                other => panic!("{other}"),
            };
            assert_eq!(prepared.topic, event.topic_spec());
            assert_eq!(prepared.id, event.id());
            assert_eq!(prepared.record, event);
            let schema = event_schema(3, event.schema_text());
            assert_eq!(
                prepared.record.encode(&schema, 5).unwrap(),
                event.encode(&schema, 5).unwrap()
            );
        }
    }

    /// The Avro symbols of the enum named `name` in a schema's JSON text.
    fn avro_symbols(schema_text: &str, name: &str) -> Vec<String> {
        fn find(value: &serde_json::Value, name: &str) -> Option<Vec<String>> {
            match value {
                serde_json::Value::Object(map)
                    if map.get("name").and_then(|n| n.as_str()) == Some(name)
                        && map.contains_key("symbols") =>
                {
                    Some(
                        map["symbols"]
                            .as_array()?
                            .iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect(),
                    )
                }
                serde_json::Value::Object(map) => map.values().find_map(|v| find(v, name)),
                serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, name)),
                _ => None,
            }
        }
        find(&serde_json::from_str(schema_text).unwrap(), name).unwrap()
    }

    #[test]
    fn enum_positions_match_the_avro_symbols() {
        // `symbol` relies on the declaration order being the schema's symbol order.
        let upper = |items: &[&str]| {
            items
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            avro_symbols(schemas::CLICKSTREAM, "Interaction"),
            upper(&["click", "tap", "scroll", "hover", "view", "input"])
        );
        assert_eq!(
            avro_symbols(schemas::APP_LOG, "LogLevel"),
            upper(&["debug", "info", "warn", "error", "fatal"])
        );
        assert_eq!(
            avro_symbols(schemas::APP_EVENT, "DeviceType"),
            upper(&[
                "ios",
                "android",
                "desktop",
                "tablet",
                "mobile_web",
                "server"
            ])
        );
        assert_eq!(
            avro_symbols(schemas::EXTERNAL_DATA, "ExternalSource"),
            upper(&[
                "weather",
                "maps",
                "social_media",
                "market_data",
                "news",
                "travel_trends",
                "other"
            ])
        );
        assert_eq!(
            (Interaction::Input as usize, LogLevel::Fatal as usize),
            (5, 4)
        );
        assert_eq!(
            (DeviceType::Server as usize, ExternalSource::Other as usize),
            (5, 6)
        );
    }

    #[test]
    fn timestamps_are_rfc3339_or_epoch_millis_and_nothing_else() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Timestamp>(v);
        assert_eq!(
            parse(serde_json::json!("1970-01-01T00:00:01Z")).unwrap(),
            Timestamp(1000)
        );
        assert_eq!(parse(serde_json::json!(5)).unwrap(), Timestamp(5));
        for bad in [
            serde_json::json!("yesterday"),
            serde_json::json!(1.5),
            serde_json::json!(u64::MAX),
            serde_json::json!(null),
        ] {
            let err = parse(bad.clone()).unwrap_err().to_string();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn checks_name_each_bad_field() {
        let event: UserEvent = serde_json::from_value(serde_json::json!({
            "event_id": " ", "event_type": "click", "session_id": "s", "app_type": "mobile",
            "timestamp": 1, "properties": {"": "x"}
        }))
        .unwrap();
        let mut errors = Vec::new();
        event.check(&RULES, "events[2].event", &mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "events[2].event.event_id",
                "events[2].event.timestamp",
                "events[2].event.properties[\"\"]"
            ]
        );
        assert!(
            errors[1].got.starts_with("1970-01-01T00:00:00.001Z"),
            "{:?}",
            errors[1]
        );
    }

    #[test]
    fn a_timestamp_beyond_the_allowed_skew_is_rejected() {
        let mut errors = Vec::new();
        check_time(
            &mut errors,
            &RULES,
            "",
            "timestamp",
            Timestamp(RULES.now_millis + 60_000),
        );
        assert!(errors.is_empty());
        check_time(
            &mut errors,
            &RULES,
            "",
            "timestamp",
            Timestamp(RULES.now_millis + 60_001),
        );
        assert_eq!(errors.len(), 1);
    }
}
