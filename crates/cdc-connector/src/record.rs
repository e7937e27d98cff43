//! A change as a `CDCChange` Avro record (schemas/CDCChange.avsc) and its Kafka key.

use std::collections::HashMap;

use apache_avro::{Schema, types::Value};
use pgoutput::row::{ColumnValue, TypedValue};

use crate::changes::{ChangeEvent, Columns, Operation};

/// The record schema, compiled in from the single source of truth.
pub const CDC_CHANGE_SCHEMA: &str = include_str!("../../../schemas/CDCChange.avsc");

pub fn cdc_change_schema() -> Result<Schema, apache_avro::Error> {
    Schema::parse_str(CDC_CHANGE_SCHEMA)
}

/// Branch indexes of the column-value union, in the order CDCChange.avsc lists them.
mod branch {
    pub const NULL: u32 = 0;
    pub const BOOLEAN: u32 = 1;
    pub const INT: u32 = 2;
    pub const LONG: u32 = 3;
    pub const FLOAT: u32 = 4;
    pub const DOUBLE: u32 = 5;
    pub const STRING: u32 = 6;
    pub const BYTES: u32 = 7;
    pub const NUMERIC: u32 = 8;
    pub const JSON: u32 = 9;
    pub const UUID: u32 = 10;
    pub const DATE: u32 = 11;
    pub const TIMESTAMP: u32 = 12;
    pub const TIMESTAMP_TZ: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const OTHER: u32 = 15;
}

/// Deterministic from the source position: a replayed change gets the same id.
pub fn change_id(event: &ChangeEvent) -> String {
    format!("{:016X}-{:08}", event.position.commit_lsn, event.position.sequence)
}

/// `schema.table` plus the key columns as a JSON object: all changes of one row share a key,
/// so Kafka keeps them in order on one partition.
pub fn kafka_key(event: &ChangeEvent) -> String {
    let key: serde_json::Map<String, serde_json::Value> = event
        .primary_key
        .iter()
        .map(|(name, value)| (name.clone(), key_json(value)))
        .collect();
    format!("{}/{}", event.table, serde_json::Value::Object(key))
}

fn key_json(value: &ColumnValue) -> serde_json::Value {
    match value {
        ColumnValue::Value(TypedValue::Int(i)) => (*i).into(),
        ColumnValue::Value(TypedValue::Long(i)) => (*i).into(),
        ColumnValue::Value(TypedValue::Bool(b)) => (*b).into(),
        ColumnValue::Value(typed) => text_of(typed).into(),
        _ => serde_json::Value::Null,
    }
}

fn text_of(value: &TypedValue) -> String {
    match value {
        TypedValue::Text(s) | TypedValue::Numeric(s) | TypedValue::Json(s) | TypedValue::Uuid(s) => s.clone(),
        TypedValue::Other { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

pub fn to_avro(event: &ChangeEvent, source_database: &str, slot_name: &str, now_unix_millis: i64) -> Value {
    let operation = match event.operation {
        Operation::Insert => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Truncate => 3,
    };
    let position = &event.position;
    Value::Record(vec![
        ("change_id".into(), Value::String(change_id(event))),
        ("table_name".into(), Value::String(event.table.to_string())),
        ("operation".into(), Value::Enum(operation, event.operation.as_str().into())),
        ("primary_key".into(), columns_map(&event.primary_key)),
        ("before_values".into(), optional_columns(event.before.as_ref())),
        ("after_values".into(), optional_columns(event.after.as_ref())),
        ("timestamp".into(), Value::TimestampMillis(now_unix_millis)),
        ("source_database".into(), Value::String(source_database.into())),
        (
            "source".into(),
            Value::Record(vec![
                ("commit_lsn".into(), Value::Long(lsn_long(position.commit_lsn))),
                ("event_lsn".into(), Value::Long(lsn_long(position.event_lsn))),
                ("transaction_id".into(), Value::Long(i64::from(position.xid))),
                ("sequence".into(), Value::Int(i32::try_from(position.sequence).unwrap_or(i32::MAX))),
                ("commit_timestamp".into(), Value::TimestampMicros(position.commit_time_unix_micros)),
                ("slot_name".into(), Value::String(slot_name.into())),
            ]),
        ),
    ])
}

/// LSNs are unsigned 64-bit; Avro longs are signed. Real LSNs stay far below 2^63.
fn lsn_long(lsn: u64) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

fn optional_columns(columns: Option<&Columns>) -> Value {
    match columns {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(columns) => Value::Union(1, Box::new(columns_map(columns))),
    }
}

fn columns_map(columns: &Columns) -> Value {
    Value::Map(
        columns
            .iter()
            .map(|(name, value)| (name.clone(), column_value(value)))
            .collect::<HashMap<_, _>>(),
    )
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn column_value(value: &ColumnValue) -> Value {
    let (index, inner) = match value {
        ColumnValue::Null => (branch::NULL, Value::Null),
        ColumnValue::UnchangedToast => (
            branch::UNAVAILABLE,
            record(vec![("reason", Value::Enum(0, "UNCHANGED_TOAST".into()))]),
        ),
        ColumnValue::NotInReplicaIdentity => (
            branch::UNAVAILABLE,
            record(vec![("reason", Value::Enum(1, "NOT_IN_REPLICA_IDENTITY".into()))]),
        ),
        ColumnValue::Value(typed) => typed_value(typed),
    };
    Value::Union(index, Box::new(inner))
}

fn typed_value(value: &TypedValue) -> (u32, Value) {
    match value {
        TypedValue::Bool(b) => (branch::BOOLEAN, Value::Boolean(*b)),
        TypedValue::Int(i) => (branch::INT, Value::Int(*i)),
        TypedValue::Long(i) => (branch::LONG, Value::Long(*i)),
        TypedValue::Float(f) => (branch::FLOAT, Value::Float(*f)),
        TypedValue::Double(f) => (branch::DOUBLE, Value::Double(*f)),
        TypedValue::Text(s) => (branch::STRING, Value::String(s.clone())),
        TypedValue::Bytes(b) => (branch::BYTES, Value::Bytes(b.clone())),
        TypedValue::Numeric(s) => (branch::NUMERIC, record(vec![("value", Value::String(s.clone()))])),
        TypedValue::Json(s) => (branch::JSON, record(vec![("value", Value::String(s.clone()))])),
        TypedValue::Uuid(s) => (branch::UUID, record(vec![("value", Value::String(s.clone()))])),
        TypedValue::Date(days) => (branch::DATE, record(vec![("days", Value::Date(*days))])),
        TypedValue::Timestamp(micros) => (
            branch::TIMESTAMP,
            record(vec![("micros", Value::LocalTimestampMicros(*micros))]),
        ),
        TypedValue::TimestampTz(micros) => (
            branch::TIMESTAMP_TZ,
            record(vec![("micros", Value::TimestampMicros(*micros))]),
        ),
        TypedValue::Other { type_name, text } => (
            branch::OTHER,
            record(vec![
                ("type_name", Value::String(type_name.clone())),
                ("text", Value::String(text.clone())),
            ]),
        ),
    }
}
