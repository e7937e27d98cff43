//! Property test of the direct writer: for arbitrary events (any text, empty and many-entry
//! maps, absent and present optionals, extreme numbers), what `Event::encode` writes decodes with
//! apache-avro to the value the oracle builds from the schema, under the schemas as written and
//! with every enum's symbols and every union's branches reversed.

use proptest::{collection, option, prelude::*};

use super::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "\\PC{0,24}", "[a-z0-9-]{1,200}"]
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    option::of(text())
}

fn strings() -> impl Strategy<Value = BTreeMap<String, String>> {
    collection::btree_map(text(), text(), 0..6)
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    (0..all.len()).prop_map(move |i| all[i])
}

fn device() -> impl Strategy<Value = Device> {
    (
        pick(DeviceType::ALL),
        optional_text(),
        optional_text(),
        optional_text(),
    )
        .prop_map(
            |(device_type, os_version, app_version, user_agent)| Device {
                device_type,
                os_version,
                app_version,
                user_agent,
            },
        )
}

fn app() -> impl Strategy<Value = Event> {
    (
        (text(), text(), pick(EventSource::ALL)),
        (optional_text(), optional_text(), optional_text()),
        (option::of(device()), any::<i64>(), strings()),
    )
        .prop_map(
            |(
                (event_id, event_type, source),
                (user_id, session_id, booking_id),
                (device, timestamp_ms, properties),
            )| {
                Event::App(AppEvent {
                    event_id,
                    event_type,
                    source,
                    user_id,
                    session_id,
                    booking_id,
                    device,
                    timestamp_ms,
                    properties,
                })
            },
        )
}

fn click() -> impl Strategy<Value = Event> {
    (
        (text(), text(), optional_text(), pick(Interaction::ALL)),
        (text(), optional_text(), any::<i32>(), any::<i32>()),
        (option::of(any::<i32>()), option::of(any::<i32>())),
        (pick(DeviceType::ALL), optional_text(), any::<i64>()),
    )
        .prop_map(
            |(
                (event_id, session_id, user_id, interaction),
                (page_url, element_id, x, y),
                (viewport_width, viewport_height),
                (device_type, referrer, timestamp_ms),
            )| {
                Event::Click(ClickEvent {
                    event_id,
                    session_id,
                    user_id,
                    interaction,
                    page_url,
                    element_id,
                    x,
                    y,
                    viewport_width,
                    viewport_height,
                    device_type,
                    referrer,
                    timestamp_ms,
                })
            },
        )
}

fn log_line() -> impl Strategy<Value = Event> {
    (
        (text(), text(), pick(LogLevel::ALL), text()),
        (optional_text(), optional_text(), optional_text()),
        (
            optional_text(),
            optional_text(),
            optional_text(),
            optional_text(),
        ),
        (strings(), any::<i64>()),
    )
        .prop_map(
            |(
                (log_id, service, level, message),
                (logger, host, trace_id),
                (request_id, user_id, session_id, booking_id),
                (attributes, timestamp_ms),
            )| {
                Event::Log(LogEvent {
                    log_id,
                    service,
                    level,
                    message,
                    logger,
                    host,
                    trace_id,
                    request_id,
                    user_id,
                    session_id,
                    booking_id,
                    attributes,
                    timestamp_ms,
                })
            },
        )
}

fn external_record() -> impl Strategy<Value = Event> {
    (
        (text(), pick(ExternalSource::ALL), text(), optional_text()),
        (any::<i64>(), any::<i64>(), text()),
        collection::vec(text(), 0..5),
    )
        .prop_map(
            |(
                (record_id, source_type, pipeline, location),
                (observed_at_ms, fetched_at_ms, payload_json),
                quality_warnings,
            )| {
                Event::External(ExternalRecord {
                    record_id,
                    source_type,
                    pipeline,
                    location,
                    observed_at_ms,
                    fetched_at_ms,
                    payload_json,
                    quality_warnings,
                })
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![app(), click(), log_line(), external_record()]
}

/// `schema` with every enum's symbols and every union's branches in reverse order (a union's
/// `null` default goes: a default must be of the first branch).
fn reversed(schema: &Json) -> Json {
    match schema {
        Json::Array(branches) => Json::Array(branches.iter().rev().map(reversed).collect()),
        Json::Object(object) => Json::Object(
            object
                .iter()
                .filter(|(k, v)| !(k.as_str() == "default" && v.is_null()))
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("symbols", Json::Array(symbols)) => {
                            Json::Array(symbols.iter().rev().cloned().collect())
                        }
                        ("fields", Json::Array(fields)) => {
                            Json::Array(fields.iter().map(reversed).collect())
                        }
                        ("type" | "items" | "values", v) => reversed(v),
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn schemas_of(event: &Event) -> [Schema; 2] {
    let text = event.schema_text();
    let json: Json = serde_json::from_str(text).unwrap();
    [parsed(text), parsed(&reversed(&json).to_string())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn what_the_writer_writes_is_what_apache_avro_reads_as_the_oracles_value(
        event in event(),
        received_at in any::<i64>(),
    ) {
        for schema in schemas_of(&event) {
            let (registered, layout) = event_schema(9, schema);
            let bytes = event.encode(&layout, received_at).unwrap();
            let expected = oracle::into_avro(&event, &registered.schema, received_at).unwrap();
            prop_assert_eq!(decode(&registered.schema, &bytes), expected.clone());
            // Byte for byte too, where apache-avro's map order (a HashMap's) cannot differ.
            let maps = match &event {
                Event::App(e) => e.properties.len(),
                Event::Log(e) => e.attributes.len(),
                _ => 0,
            };
            if maps <= 1 {
                prop_assert_eq!(&bytes, &registered.encode(expected).unwrap());
            }
        }
    }
}

#[test]
fn the_reversed_schemas_really_reverse_positions() {
    let event = Event::Log(log(LogLevel::Debug));
    let [as_written, reversed] = schemas_of(&event);
    let first = |schema: Schema| {
        let (_, layout) = event_schema(1, schema);
        event.encode(&layout, T).unwrap()
    };
    assert_ne!(first(as_written), first(reversed));
}
