//! The test oracle: the event as an apache-avro `Value` with its enum and union positions found
//! in the schema by a walk of its own (the encoder before the direct writer), so that what
//! `Event::encode` writes can be compared with what apache-avro makes of the same event.

use std::collections::{BTreeMap, HashMap};

use apache_avro::{Schema, types::Value};

use crate::events::{Event, avro::find_named};

/// The record of `event` with positions from `schema`, or what does not fit.
pub fn into_avro(event: &Event, schema: &Schema, received_at_ms: i64) -> Result<Value, String> {
    let mut value = record(event.clone(), received_at_ms);
    place(&mut value, schema, schema, "")?;
    Ok(value)
}

/// The record with symbols and branch values but no positions yet (see [`place`]).
fn record(event: Event, received_at_ms: i64) -> Value {
    let received_at = (
        "received_at".to_string(),
        Value::TimestampMillis(received_at_ms),
    );
    match event {
        Event::App(e) => Value::Record(vec![
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
        Event::Click(e) => Value::Record(vec![
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
        Event::Log(e) => Value::Record(vec![
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
        Event::External(e) => Value::Record(vec![
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
