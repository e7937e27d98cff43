//! A change as a `CDCChange` Avro record (schemas/CDCChange.avsc) and its Kafka key.

use std::collections::HashMap;

mod binary;
mod key;
mod layout;

use apache_avro::types::Value;
use pgoutput::row::{ColumnValue, TypedValue};

pub use self::{binary::encode_change, key::kafka_key, layout::ChangeLayout};
use crate::changes::{ChangeEvent, Columns, Operation};

/// Deterministic from the source position: a replayed change gets the same id.
///
/// A snapshot row has no transaction of its own: its id is the snapshot's consistent point and
/// the row's key, so the same snapshot read twice gives the same ids.
pub fn change_id(event: &ChangeEvent) -> String {
    change_id_with_key(event, &kafka_key(event))
}

/// [`change_id`] for a change whose Kafka key is already known (it is computed once per change).
pub fn change_id_with_key(event: &ChangeEvent, key: &str) -> String {
    match event.operation {
        Operation::Read => format!("{:016X}-READ-{key}", event.position.commit_lsn),
        _ => format!(
            "{:016X}-{:08}",
            event.position.commit_lsn, event.position.sequence
        ),
    }
}

pub fn to_avro(
    event: &ChangeEvent,
    layout: &ChangeLayout,
    source_database: &str,
    slot_name: &str,
    now_unix_millis: i64,
) -> Value {
    let position = &event.position;
    Value::Record(vec![
        ("change_id".into(), Value::String(change_id(event))),
        ("table_name".into(), Value::String(event.table.to_string())),
        ("operation".into(), layout.operation(event.operation)),
        (
            "primary_key".into(),
            columns_map(layout, &event.primary_key),
        ),
        (
            "before_values".into(),
            optional_columns(layout, event.before.as_ref()),
        ),
        (
            "after_values".into(),
            optional_columns(layout, event.after.as_ref()),
        ),
        ("timestamp".into(), Value::TimestampMillis(now_unix_millis)),
        (
            "source_database".into(),
            Value::String(source_database.into()),
        ),
        (
            "source".into(),
            Value::Record(vec![
                (
                    "commit_lsn".into(),
                    Value::Long(lsn_long(position.commit_lsn)),
                ),
                (
                    "event_lsn".into(),
                    Value::Long(lsn_long(position.event_lsn)),
                ),
                (
                    "transaction_id".into(),
                    Value::Long(i64::from(position.xid)),
                ),
                (
                    "sequence".into(),
                    Value::Int(i32::try_from(position.sequence).unwrap_or(i32::MAX)),
                ),
                (
                    "commit_timestamp".into(),
                    Value::TimestampMicros(position.commit_time_unix_micros),
                ),
                ("slot_name".into(), Value::String(slot_name.into())),
            ]),
        ),
    ])
}

/// LSNs are unsigned 64-bit; Avro longs are signed. Real LSNs stay far below 2^63.
fn lsn_long(lsn: u64) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

fn optional_columns(layout: &ChangeLayout, columns: Option<&Columns>) -> Value {
    match columns {
        None => Value::Union(layout.absent_columns, Box::new(Value::Null)),
        Some(columns) => Value::Union(
            layout.present_columns,
            Box::new(columns_map(layout, columns)),
        ),
    }
}

fn columns_map(layout: &ChangeLayout, columns: &Columns) -> Value {
    Value::Map(
        columns
            .iter()
            .map(|(name, value)| (name.clone(), column_value(layout, value)))
            .collect::<HashMap<_, _>>(),
    )
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn column_value(layout: &ChangeLayout, value: &ColumnValue) -> Value {
    let (index, inner) = match value {
        ColumnValue::Null => (layout.null, Value::Null),
        ColumnValue::UnchangedToast => (
            layout.unavailable,
            record(vec![(
                "reason",
                Value::Enum(layout.unchanged_toast, "UNCHANGED_TOAST".into()),
            )]),
        ),
        ColumnValue::NotInReplicaIdentity => (
            layout.unavailable,
            record(vec![(
                "reason",
                Value::Enum(
                    layout.not_in_replica_identity,
                    "NOT_IN_REPLICA_IDENTITY".into(),
                ),
            )]),
        ),
        ColumnValue::Value(typed) => typed_value(layout, typed),
    };
    Value::Union(index, Box::new(inner))
}

fn array_element(layout: &ChangeLayout, element: &Option<TypedValue>) -> Value {
    let (index, inner) = match element {
        None => (layout.null, Value::Null),
        Some(typed) => typed_value(layout, typed),
    };
    Value::Union(index, Box::new(inner))
}

fn typed_value(layout: &ChangeLayout, value: &TypedValue) -> (u32, Value) {
    match value {
        TypedValue::Bool(b) => (layout.boolean, Value::Boolean(*b)),
        TypedValue::Int(i) => (layout.int, Value::Int(*i)),
        TypedValue::Long(i) => (layout.long, Value::Long(*i)),
        TypedValue::Float(f) => (layout.float, Value::Float(*f)),
        TypedValue::Double(f) => (layout.double, Value::Double(*f)),
        TypedValue::Text(s) => (layout.string, Value::String(s.clone())),
        TypedValue::Bytes(b) => (layout.bytes, Value::Bytes(b.clone())),
        TypedValue::Numeric(s) => (
            layout.numeric,
            record(vec![("value", Value::String(s.clone()))]),
        ),
        TypedValue::Json(s) => (
            layout.json,
            record(vec![("value", Value::String(s.clone()))]),
        ),
        TypedValue::Uuid(s) => (
            layout.uuid,
            record(vec![("value", Value::String(s.clone()))]),
        ),
        TypedValue::Date(days) => (layout.date, record(vec![("days", Value::Date(*days))])),
        TypedValue::Timestamp(micros) => (
            layout.timestamp,
            record(vec![("micros", Value::LocalTimestampMicros(*micros))]),
        ),
        TypedValue::TimestampTz(micros) => (
            layout.timestamp_tz,
            record(vec![("micros", Value::TimestampMicros(*micros))]),
        ),
        TypedValue::Time(micros) => (
            layout.time,
            record(vec![("micros", Value::TimeMicros(*micros))]),
        ),
        TypedValue::TimeTz {
            micros,
            offset_seconds,
        } => (
            layout.time_tz,
            record(vec![
                ("micros", Value::TimeMicros(*micros)),
                ("offset_seconds", Value::Int(*offset_seconds)),
            ]),
        ),
        TypedValue::Interval {
            months,
            days,
            micros,
        } => (
            layout.interval,
            record(vec![
                ("months", Value::Int(*months)),
                ("days", Value::Int(*days)),
                ("micros", Value::Long(*micros)),
            ]),
        ),
        TypedValue::Array {
            type_name,
            lower_bound,
            elements,
        } => (
            layout.array,
            record(vec![
                ("type_name", Value::String(type_name.clone())),
                ("lower_bound", Value::Int(*lower_bound)),
                // Elements use the column-value union itself (a NULL element is its null branch).
                (
                    "elements",
                    Value::Array(
                        elements
                            .iter()
                            .map(|element| array_element(layout, element))
                            .collect(),
                    ),
                ),
            ]),
        ),
        TypedValue::Other { type_name, text } => (
            layout.other,
            record(vec![
                ("type_name", Value::String(type_name.clone())),
                ("text", Value::String(text.clone())),
            ]),
        ),
    }
}

#[cfg(test)]
mod binary_tests;
#[cfg(test)]
mod tests;
