use apache_avro::{Schema, reader::datum::GenericDatumReader, schema::SchemaKind, types::Value};
use serde_json::{Value as Json, json};

use super::*;
use crate::avro::{RegisteredSchema, split_wire_format, to_json};

mod oracle;
mod properties;

/// The topic's schema with `id`, read for writing.
fn event_schema(id: u32, schema: Schema) -> (RegisteredSchema, EventSchema) {
    let registered = RegisteredSchema { id, schema };
    let layout = EventSchema::new(&registered);
    (registered, layout)
}

const T: i64 = 1_780_000_000_000;

fn parsed(text: &str) -> Schema {
    schemas::parse(text).unwrap()
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn app(source: EventSource, device: Option<Device>) -> AppEvent {
    AppEvent {
        event_id: "e1".into(),
        event_type: "search".into(),
        source,
        user_id: some("u-42"),
        session_id: some("s-9001"),
        booking_id: None,
        device,
        timestamp_ms: T,
        properties: props(&[("query", "Da Nang")]),
    }
}

fn device(device_type: DeviceType) -> Device {
    Device {
        device_type,
        os_version: some("iOS 18.1"),
        app_version: None,
        user_agent: some("Mozilla/5.0"),
    }
}

fn click(interaction: Interaction, device_type: DeviceType) -> ClickEvent {
    ClickEvent {
        event_id: "c1".into(),
        session_id: "s".into(),
        user_id: None,
        interaction,
        page_url: "/hotels".into(),
        element_id: some("book-now"),
        x: 320,
        y: 640,
        viewport_width: Some(1280),
        viewport_height: None,
        device_type,
        referrer: None,
        timestamp_ms: T,
    }
}

fn log(level: LogLevel) -> LogEvent {
    LogEvent {
        log_id: "l1".into(),
        service: "booking-api".into(),
        level,
        message: "payment declined".into(),
        logger: some("payments"),
        host: None,
        trace_id: some("4bf92f3577b34da6"),
        request_id: None,
        user_id: some("u-42"),
        session_id: None,
        booking_id: some("BK1"),
        attributes: props(&[("code", "51")]),
        timestamp_ms: T,
    }
}

fn external(source_type: ExternalSource) -> ExternalRecord {
    ExternalRecord {
        record_id: "x1".into(),
        source_type,
        pipeline: "weather-hourly".into(),
        location: some("Da Nang"),
        observed_at_ms: T,
        fetched_at_ms: T + 1,
        payload_json: r#"{"temp_c":31.5}"#.into(),
        quality_warnings: vec!["late".into()],
    }
}

/// A representative event of each kind, every enum value of each, optional fields both set
/// and unset.
fn every_event() -> Vec<Event> {
    let mut events = Vec::new();
    for source in EventSource::ALL {
        events.push(Event::App(app(*source, None)));
    }
    for device_type in DeviceType::ALL {
        events.push(Event::App(app(
            EventSource::WebApp,
            Some(device(*device_type)),
        )));
        events.push(Event::Click(click(Interaction::Click, *device_type)));
    }
    for interaction in Interaction::ALL {
        events.push(Event::Click(click(*interaction, DeviceType::Desktop)));
    }
    for level in LogLevel::ALL {
        events.push(Event::Log(log(*level)));
    }
    events.push(Event::Log(LogEvent {
        logger: None,
        trace_id: None,
        user_id: None,
        booking_id: None,
        host: some("web-1"),
        request_id: some("r-1"),
        session_id: some("s-1"),
        ..log(LogLevel::Info)
    }));
    for source in ExternalSource::ALL {
        events.push(Event::External(external(*source)));
    }
    events.push(Event::External(ExternalRecord {
        location: None,
        quality_warnings: vec![],
        ..external(ExternalSource::Other)
    }));
    events
}

/// The enum called `name` anywhere in `schema`.
fn enum_symbols<'a>(schema: &'a Schema, name: &str) -> Option<&'a [String]> {
    match schema {
        Schema::Enum(e) if e.name.name() == name => Some(&e.symbols),
        Schema::Record(r) => r.fields.iter().find_map(|f| enum_symbols(&f.schema, name)),
        Schema::Union(u) => u.variants().iter().find_map(|v| enum_symbols(v, name)),
        Schema::Map(m) => enum_symbols(&m.types, name),
        Schema::Array(a) => enum_symbols(&a.items, name),
        _ => None,
    }
}

#[test]
fn each_enum_has_exactly_the_symbols_of_its_schema() {
    fn check(schema_text: &str, name: &str, symbols: &[&str]) {
        let schema = parsed(schema_text);
        let mut declared: Vec<&str> = enum_symbols(&schema, name)
            .unwrap_or_else(|| panic!("no enum {name}"))
            .iter()
            .map(String::as_str)
            .collect();
        let mut ours = symbols.to_vec();
        declared.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, declared, "{name}");
    }
    check(
        schemas::APP_EVENT,
        EventSource::AVRO_NAME,
        EventSource::SYMBOLS,
    );
    check(
        schemas::APP_EVENT,
        DeviceType::AVRO_NAME,
        DeviceType::SYMBOLS,
    );
    check(
        schemas::CLICKSTREAM,
        Interaction::AVRO_NAME,
        Interaction::SYMBOLS,
    );
    check(schemas::APP_LOG, LogLevel::AVRO_NAME, LogLevel::SYMBOLS);
    check(
        schemas::EXTERNAL_DATA,
        ExternalSource::AVRO_NAME,
        ExternalSource::SYMBOLS,
    );
    // Symbols and JSON spellings name the same values.
    for (symbol, text) in DeviceType::ALL.iter().map(|d| (d.symbol(), d.as_str())) {
        assert_eq!(symbol, text.to_ascii_uppercase());
        assert_eq!(DeviceType::from_symbol(symbol).unwrap().as_str(), text);
    }
    for source in ExternalSource::ALL {
        assert_eq!(source.symbol(), source.as_str().to_ascii_uppercase());
        assert_eq!(ExternalSource::from_symbol(source.symbol()), Some(*source));
    }
    assert_eq!(ExternalSource::from_symbol("weather"), None);
}

/// Checks, independently of `place`, that every enum index of `value` is its symbol's position
/// in `schema` and every union index a branch of the value's type; counts what it checked.
fn assert_positions(value: &Value, schema: &Schema, at: &str, checked: &mut usize) {
    match (value, schema) {
        (Value::Record(fields), Schema::Record(record)) => {
            assert_eq!(fields.len(), record.fields.len(), "{at}: every field");
            for (name, field) in fields {
                let index = record.lookup[name.as_str()];
                assert_positions(field, &record.fields[index].schema, name, checked);
            }
        }
        (Value::Enum(index, symbol), Schema::Enum(e)) => {
            assert_eq!(&e.symbols[*index as usize], symbol, "{at}");
            *checked += 1;
        }
        (Value::Union(index, inner), Schema::Union(u)) => {
            let branch = &u.variants()[*index as usize];
            assert_eq!(SchemaKind::from(branch), SchemaKind::from(&**inner), "{at}");
            assert_eq!(
                u.variants()
                    .iter()
                    .filter(|v| SchemaKind::from(*v) == SchemaKind::from(&**inner))
                    .count(),
                1,
                "{at}: one branch of this type"
            );
            *checked += 1;
            assert_positions(inner, branch, at, checked);
        }
        (Value::Map(entries), Schema::Map(m)) => {
            for entry in entries.values() {
                assert_positions(entry, &m.types, at, checked);
            }
        }
        (Value::Array(items), Schema::Array(a)) => {
            for item in items {
                assert_positions(item, &a.items, at, checked);
            }
        }
        (Value::Enum(..) | Value::Union(..) | Value::Record(_), _) => {
            panic!("{at}: {value:?} where the schema has {schema:?}")
        }
        _ => {}
    }
}

#[test]
fn every_enum_and_union_position_matches_the_schema() {
    let mut checked = 0;
    for event in every_event() {
        let schema = parsed(event.schema_text());
        let value = oracle::into_avro(&event, &schema, T).unwrap();
        assert_positions(&value, &schema, event.topic(), &mut checked);
    }
    assert!(checked > 200, "only {checked} positions checked");
}

#[test]
fn positions_follow_the_schema_not_the_declaration_order() {
    // The same schema with LogLevel's symbols reversed and `logger`'s union the other way round.
    let reordered = schemas::APP_LOG
        .replace(
            r#""DEBUG",
          "INFO",
          "WARN",
          "ERROR",
          "FATAL""#,
            r#""FATAL", "ERROR", "WARN", "INFO", "DEBUG""#,
        )
        .replacen(
            r#""name": "logger",
      "type": [
        "null",
        "string"
      ],
      "default": null"#,
            r#""name": "logger", "type": ["string", "null"], "default": "-""#,
            1,
        );
    assert_ne!(reordered, schemas::APP_LOG);
    let schema = parsed(&reordered);
    assert_eq!(enum_symbols(&schema, "LogLevel").unwrap()[0], "FATAL");
    let (registered, layout) = event_schema(7, schema);
    let event = Event::Log(log(LogLevel::Debug));
    let bytes = event.encode(&layout, T).unwrap();
    let json = to_json(&decode(&registered.schema, &bytes));
    assert_eq!(json["level"], "DEBUG");
    assert_eq!(json["logger"], "payments");
    let value = oracle::into_avro(&event, &registered.schema, T).unwrap();
    let Value::Record(fields) = &value else {
        panic!("a record")
    };
    assert_eq!(fields[2].1, Value::Enum(4, "DEBUG".into()));
    assert_eq!(
        fields[4].1,
        Value::Union(0, Box::new(Value::String("payments".into())))
    );
    assert_eq!(decode(&registered.schema, &bytes), value);
}

#[test]
fn a_symbol_the_schema_lacks_is_an_error_naming_it() {
    let without_fatal = schemas::APP_LOG.replace(
        r#""ERROR",
          "FATAL""#,
        r#""ERROR""#,
    );
    let (_, layout) = event_schema(1, parsed(&without_fatal));
    let error = Event::Log(log(LogLevel::Fatal))
        .encode(&layout, T)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("FATAL") && error.contains("level") && error.contains("topic_app_logs"),
        "{error}"
    );
    assert!(Event::Log(log(LogLevel::Error)).encode(&layout, T).is_ok());
}

#[test]
fn a_schema_that_disagrees_with_the_event_is_an_error_naming_the_field() {
    let cases = [
        // Renamed, retyped, dropped, added (with a default), a union of three.
        (
            r#""name": "host""#,
            r#""name": "hostname""#,
            "host: the schema has hostname",
        ),
        (
            r#""name": "message",
      "type": "string""#,
            r#""name": "message",
      "type": "int""#,
            "message: the schema has int where the event has a string",
        ),
        (
            r#""name": "timestamp","#,
            r#""name": "extra", "type": "string", "default": ""}, {"name": "timestamp","#,
            "timestamp: the schema has extra in its place",
        ),
        (
            r#""name": "logger",
      "type": [
        "null",
        "string"
      ]"#,
            r#""name": "logger",
      "type": ["null", "string", "int"]"#,
            "logger: the schema has Union where the event has an optional value",
        ),
    ];
    for (from, to, expected) in cases {
        let text = schemas::APP_LOG.replacen(from, to, 1);
        assert_ne!(text, schemas::APP_LOG, "{from}");
        let (_, layout) = event_schema(1, parsed(&text));
        let error = Event::Log(log(LogLevel::Info))
            .encode(&layout, T)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("topic_app_logs"), "{error}");
    }
    // A field the event does not have, at the end.
    let text = schemas::EXTERNAL_DATA.replacen(
        r#""name": "received_at","#,
        r#""name": "region", "type": ["null", "string"], "default": null}, {"name": "received_at","#,
        1,
    );
    let (_, layout) = event_schema(1, parsed(&text));
    let error = Event::External(external(ExternalSource::News))
        .encode(&layout, T)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("received_at: the schema has region"),
        "{error}"
    );
    // Another topic's schema.
    let (_, layout) = event_schema(1, parsed(schemas::CLICKSTREAM));
    let error = Event::Log(log(LogLevel::Info))
        .encode(&layout, T)
        .unwrap_err()
        .to_string();
    assert!(error.contains("log_id: the schema has event_id"), "{error}");
}

fn decode(schema: &Schema, bytes: &[u8]) -> Value {
    let (_, mut datum) = split_wire_format(bytes).unwrap();
    let value = GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut datum)
        .unwrap();
    assert!(datum.is_empty(), "the whole datum is read");
    value
}

/// The records as they were built before positions came from the schema: every index written
/// out by hand (null first in every union, symbols in declaration order).
fn legacy_record(event: &Event, received_at: i64) -> Value {
    let s = |v: &str| Value::String(v.to_string());
    let opt = |v: &Option<String>| match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(Value::String(v.clone()))),
    };
    let opt_int = |v: Option<i32>| match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(Value::Int(v))),
    };
    let map = |m: &BTreeMap<String, String>| {
        Value::Map(m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
    };
    match event {
        Event::App(e) => Value::Record(vec![
            ("event_id".into(), s(&e.event_id)),
            ("event_type".into(), s(&e.event_type)),
            (
                "source".into(),
                Value::Enum(e.source as u32, e.source.symbol().into()),
            ),
            ("user_id".into(), opt(&e.user_id)),
            ("session_id".into(), opt(&e.session_id)),
            ("booking_id".into(), opt(&e.booking_id)),
            (
                "device".into(),
                match &e.device {
                    None => Value::Union(0, Box::new(Value::Null)),
                    Some(d) => Value::Union(
                        1,
                        Box::new(Value::Record(vec![
                            (
                                "device_type".into(),
                                Value::Enum(d.device_type as u32, d.device_type.symbol().into()),
                            ),
                            ("os_version".into(), opt(&d.os_version)),
                            ("app_version".into(), opt(&d.app_version)),
                            ("user_agent".into(), opt(&d.user_agent)),
                        ])),
                    ),
                },
            ),
            ("timestamp".into(), Value::TimestampMillis(e.timestamp_ms)),
            ("received_at".into(), Value::TimestampMillis(received_at)),
            ("properties".into(), map(&e.properties)),
        ]),
        Event::Click(e) => Value::Record(vec![
            ("event_id".into(), s(&e.event_id)),
            ("session_id".into(), s(&e.session_id)),
            ("user_id".into(), opt(&e.user_id)),
            (
                "interaction".into(),
                Value::Enum(e.interaction as u32, e.interaction.symbol().into()),
            ),
            ("page_url".into(), s(&e.page_url)),
            ("element_id".into(), opt(&e.element_id)),
            ("x".into(), Value::Int(e.x)),
            ("y".into(), Value::Int(e.y)),
            ("viewport_width".into(), opt_int(e.viewport_width)),
            ("viewport_height".into(), opt_int(e.viewport_height)),
            ("device_type".into(), s(e.device_type.as_str())),
            ("referrer".into(), opt(&e.referrer)),
            ("timestamp".into(), Value::TimestampMillis(e.timestamp_ms)),
            ("received_at".into(), Value::TimestampMillis(received_at)),
        ]),
        Event::Log(e) => Value::Record(vec![
            ("log_id".into(), s(&e.log_id)),
            ("service".into(), s(&e.service)),
            (
                "level".into(),
                Value::Enum(e.level as u32, e.level.symbol().into()),
            ),
            ("message".into(), s(&e.message)),
            ("logger".into(), opt(&e.logger)),
            ("host".into(), opt(&e.host)),
            ("trace_id".into(), opt(&e.trace_id)),
            ("request_id".into(), opt(&e.request_id)),
            ("user_id".into(), opt(&e.user_id)),
            ("session_id".into(), opt(&e.session_id)),
            ("booking_id".into(), opt(&e.booking_id)),
            ("attributes".into(), map(&e.attributes)),
            ("timestamp".into(), Value::TimestampMillis(e.timestamp_ms)),
            ("received_at".into(), Value::TimestampMillis(received_at)),
        ]),
        Event::External(e) => Value::Record(vec![
            ("record_id".into(), s(&e.record_id)),
            (
                "source_type".into(),
                Value::Enum(e.source_type as u32, e.source_type.symbol().into()),
            ),
            ("pipeline".into(), s(&e.pipeline)),
            ("location".into(), opt(&e.location)),
            (
                "observed_at".into(),
                Value::TimestampMillis(e.observed_at_ms),
            ),
            ("fetched_at".into(), Value::TimestampMillis(e.fetched_at_ms)),
            ("payload_json".into(), s(&e.payload_json)),
            (
                "quality_warnings".into(),
                Value::Array(e.quality_warnings.iter().map(|w| s(w)).collect()),
            ),
            ("received_at".into(), Value::TimestampMillis(received_at)),
        ]),
    }
}

#[test]
fn wire_output_is_byte_identical_and_decodes_with_the_schema() {
    for event in every_event() {
        let (registered, layout) = event_schema(258, parsed(event.schema_text()));
        let legacy = registered.encode(legacy_record(&event, T + 5)).unwrap();
        let bytes = event.encode(&layout, T + 5).unwrap();
        assert_eq!(bytes, legacy, "{event:?}");
        assert_eq!(&bytes[..5], &[0, 0, 0, 1, 2]);

        // Decoded with the schema, the record says what the event says.
        let json = to_json(&decode(&registered.schema, &bytes));
        let gateway = event.to_gateway_json();
        assert_eq!(json["received_at"], T + 5);
        match &event {
            Event::App(e) => {
                assert_eq!(json["event_id"], e.event_id.as_str());
                assert_eq!(json["source"], e.source.symbol());
                // The booking system's JSON has no session: compare with the event itself.
                assert_eq!(json["session_id"], json!(e.session_id));
                assert_eq!(json["user_id"], gateway["user_id"]);
                assert_eq!(json["properties"], gateway["properties"]);
                assert_eq!(json["timestamp"], e.timestamp_ms);
                match &e.device {
                    None => assert!(json["device"].is_null()),
                    Some(d) => {
                        assert_eq!(json["device"]["device_type"], d.device_type.symbol());
                        assert_eq!(
                            json["device"]["os_version"],
                            gateway["device"]["os_version"]
                        );
                        assert_eq!(json["device"]["app_version"], Json::Null);
                        assert_eq!(
                            json["device"]["user_agent"],
                            gateway["device"]["user_agent"]
                        );
                    }
                }
            }
            Event::Click(e) => {
                assert_eq!(json["interaction"], e.interaction.symbol());
                assert_eq!(json["device_type"], gateway["device_type"]);
                for field in [
                    "event_id",
                    "session_id",
                    "user_id",
                    "page_url",
                    "element_id",
                ] {
                    assert_eq!(json[field], gateway[field], "{field}");
                }
                for field in ["x", "y", "viewport_width", "viewport_height", "referrer"] {
                    assert_eq!(json[field], gateway[field], "{field}");
                }
            }
            Event::Log(e) => {
                assert_eq!(json["level"], e.level.symbol());
                for field in [
                    "log_id",
                    "service",
                    "message",
                    "logger",
                    "host",
                    "trace_id",
                    "request_id",
                    "user_id",
                    "session_id",
                    "booking_id",
                    "attributes",
                ] {
                    assert_eq!(json[field], gateway[field], "{field}");
                }
            }
            Event::External(e) => {
                assert_eq!(json["source_type"], e.source_type.symbol());
                assert_eq!(json["payload_json"], e.payload_json.as_str());
                for field in ["record_id", "pipeline", "location", "quality_warnings"] {
                    assert_eq!(json[field], gateway[field], "{field}");
                }
                assert_eq!(json["fetched_at"], e.fetched_at_ms);
            }
        }
    }
}

#[test]
fn the_gateway_json_names_the_endpoint_and_spells_times_in_rfc3339() {
    let booking = Event::App(app(EventSource::BookingSystem, None));
    assert_eq!(booking.gateway_path(), "/events/booking");
    assert!(booking.to_gateway_json().get("app_type").is_none());
    let mobile = Event::App(app(EventSource::MobileApp, Some(device(DeviceType::Ios))));
    assert_eq!(mobile.gateway_path(), "/events/user");
    let json = mobile.to_gateway_json();
    assert_eq!(json["app_type"], "mobile");
    assert_eq!(json["device"]["device_type"], "ios");
    assert_eq!(json["timestamp"], "2026-05-28T20:26:40.000Z");
    let external = Event::External(external(ExternalSource::TravelTrends));
    assert_eq!(external.to_gateway_json()["source_type"], "travel_trends");
    assert_eq!(external.to_gateway_json()["payload"]["temp_c"], 31.5);
    assert_eq!(external.topic(), "topic_external_data");
}
