//! A change as a `CDCChange` Avro record (schemas/CDCChange.avsc) and its Kafka key.

use std::collections::HashMap;

pub(crate) mod binary;
pub mod decimal;
mod key;
mod layout;

use apache_avro::types::Value;
use pgoutput::row::{ColumnValue, TypedValue};

pub use self::{
    binary::encode_change,
    key::{kafka_key, write_kafka_key},
    layout::ChangeLayout,
};
use crate::changes::{ChangeEvent, Columns, Operation};

/// Deterministic from the source position: a replayed change gets the same id.
///
/// A snapshot row has no transaction of its own: its id is the snapshot's consistent point and
/// the row's key, so the same snapshot read twice gives the same ids.
pub fn change_id(event: &ChangeEvent) -> String {
    match event.operation {
        Operation::Read => format!(
            "{:016X}-READ-{}",
            event.position.commit_lsn,
            kafka_key(event)
        ),
        _ => format!(
            "{:016X}-{:08}",
            event.position.commit_lsn, event.position.sequence
        ),
    }
}

/// The change as an apache-avro value: the oracle the binary encoder is tested against.
pub fn to_avro(
    event: &ChangeEvent,
    layout: &ChangeLayout,
    source_database: &str,
    slot_name: &str,
    now_unix_millis: i64,
) -> Result<Value, String> {
    let position = &event.position;
    Ok(Value::Record(vec![
        ("change_id".into(), Value::String(change_id(event))),
        ("table_name".into(), Value::String(event.table.to_string())),
        ("operation".into(), layout.operation(event.operation)),
        (
            "primary_key".into(),
            columns_map(layout, &event.primary_key)?,
        ),
        (
            "before_values".into(),
            optional_columns(layout, event.before.as_ref())?,
        ),
        (
            "after_values".into(),
            optional_columns(layout, event.after.as_ref())?,
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
        (
            "table_schema".into(),
            match &event.table_schema {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(id) => Value::Union(1, Box::new(Value::String(id.to_string()))),
            },
        ),
    ]))
}

/// LSNs are unsigned 64-bit; Avro longs are signed. Real LSNs stay far below 2^63.
fn lsn_long(lsn: u64) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

fn optional_columns(layout: &ChangeLayout, columns: Option<&Columns>) -> Result<Value, String> {
    Ok(match columns {
        None => Value::Union(layout.absent_columns, Box::new(Value::Null)),
        Some(columns) => Value::Union(
            layout.present_columns,
            Box::new(columns_map(layout, columns)?),
        ),
    })
}

fn columns_map(layout: &ChangeLayout, columns: &Columns) -> Result<Value, String> {
    Ok(Value::Map(
        columns
            .iter()
            .map(|(name, value)| Ok((name.to_string(), column_value(layout, value)?)))
            .collect::<Result<HashMap<_, _>, String>>()?,
    ))
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn column_value(layout: &ChangeLayout, value: &ColumnValue) -> Result<Value, String> {
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
        ColumnValue::Value(typed) => typed_value(layout, typed)?,
    };
    Ok(Value::Union(index, Box::new(inner)))
}

fn optional_value(layout: &ChangeLayout, value: Option<&TypedValue>) -> Result<Value, String> {
    let (index, inner) = match value {
        None => (layout.null, Value::Null),
        Some(typed) => typed_value(layout, typed)?,
    };
    Ok(Value::Union(index, Box::new(inner)))
}

fn text_record(text: &str) -> Value {
    record(vec![("value", Value::String(text.to_owned()))])
}

fn typed_value(layout: &ChangeLayout, value: &TypedValue) -> Result<(u32, Value), String> {
    Ok(match value {
        TypedValue::Bool(b) => (layout.boolean, Value::Boolean(*b)),
        TypedValue::Int(i) => (layout.int, Value::Int(*i)),
        TypedValue::Long(i) => (layout.long, Value::Long(*i)),
        TypedValue::Float(f) => (layout.float, Value::Float(*f)),
        TypedValue::Double(f) => (layout.double, Value::Double(*f)),
        TypedValue::Text(s) => (layout.string, Value::String(s.clone())),
        TypedValue::Bytes(b) => (layout.bytes, Value::Bytes(b.clone())),
        TypedValue::Numeric(text) => numeric(layout, text, None)?,
        TypedValue::Decimal {
            text,
            precision,
            scale,
        } => numeric(layout, text, Some((*precision, *scale)))?,
        TypedValue::Json(s) => (layout.json, text_record(s)),
        TypedValue::Uuid(s) => (layout.uuid, text_record(s)),
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
                            .map(|element| optional_value(layout, element.as_ref()))
                            .collect::<Result<_, _>>()?,
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
        TypedValue::Enum { type_name, label } => (
            layout.enum_value,
            record(vec![
                ("type_name", Value::String(type_name.clone())),
                ("label", Value::String(label.clone())),
            ]),
        ),
        TypedValue::Money(minor_units) => (
            layout.money,
            record(vec![("minor_units", Value::Long(*minor_units))]),
        ),
        TypedValue::Hstore(pairs) => (
            layout.hstore,
            record(vec![(
                "entries",
                Value::Map(
                    pairs
                        .iter()
                        .map(|(key, value)| {
                            let value = match value {
                                None => Value::Union(0, Box::new(Value::Null)),
                                Some(value) => {
                                    Value::Union(1, Box::new(Value::String(value.clone())))
                                }
                            };
                            (key.clone(), value)
                        })
                        .collect(),
                ),
            )]),
        ),
        TypedValue::Point { x, y } => (
            layout.point,
            record(vec![("x", Value::Double(*x)), ("y", Value::Double(*y))]),
        ),
        TypedValue::Bits { length, bytes } => (
            layout.bits,
            record(vec![
                ("length", Value::Int(*length as i32)),
                ("bits", Value::Bytes(bytes.clone())),
            ]),
        ),
        TypedValue::Geometry {
            type_name,
            wkb,
            srid,
        } => (
            layout.geometry,
            record(vec![
                ("type_name", Value::String(type_name.clone())),
                ("wkb", Value::Bytes(wkb.clone())),
                (
                    "srid",
                    match srid {
                        None => Value::Union(0, Box::new(Value::Null)),
                        Some(srid) => Value::Union(1, Box::new(Value::Int(*srid))),
                    },
                ),
            ]),
        ),
        TypedValue::Infinity {
            type_name,
            negative,
        } => (
            layout.infinity,
            record(vec![
                ("type_name", Value::String((*type_name).to_owned())),
                ("negative", Value::Boolean(*negative)),
            ]),
        ),
        TypedValue::WideTimestamp {
            type_name,
            epoch_seconds,
            micros_of_second,
        } => (
            layout.wide_timestamp,
            record(vec![
                ("type_name", Value::String((*type_name).to_owned())),
                ("epoch_seconds", Value::Long(*epoch_seconds)),
                ("micros_of_second", Value::Int(*micros_of_second as i32)),
            ]),
        ),
        TypedValue::Range { type_name, bounds } => {
            let (lower, upper) = match bounds {
                Some(bounds) => (bounds.lower.as_ref(), bounds.upper.as_ref()),
                None => (None, None),
            };
            let mut fields = vec![
                ("type_name", Value::String(type_name.clone())),
                ("empty", Value::Boolean(bounds.is_none())),
            ];
            for (value, inclusive, infinite, bound) in [
                ("lower", "lower_inclusive", "lower_infinite", lower),
                ("upper", "upper_inclusive", "upper_infinite", upper),
            ] {
                fields.push((value, optional_value(layout, bound.map(|b| &b.value))?));
                fields.push((
                    inclusive,
                    Value::Boolean(bound.is_some_and(|b| b.inclusive)),
                ));
                fields.push((
                    infinite,
                    Value::Boolean(bounds.is_some() && bound.is_none()),
                ));
            }
            (layout.range, record(fields))
        }
    })
}

/// A numeric as `--decimal-handling` says (see [`decimal`]).
fn numeric(
    layout: &ChangeLayout,
    text: &str,
    declared: Option<decimal::DecimalType>,
) -> Result<(u32, Value), String> {
    Ok(match decimal::numeric_form(layout, text, declared)? {
        decimal::NumericForm::Text(text) => (layout.numeric, text_record(text)),
        decimal::NumericForm::String(text) => (layout.string, Value::String(text.to_owned())),
        decimal::NumericForm::Double(value) => (layout.double, Value::Double(value)),
        decimal::NumericForm::Fixed { branch, unscaled } => {
            (branch, Value::Decimal(apache_avro::Decimal::from(unscaled)))
        }
        decimal::NumericForm::Variable { scale, unscaled } => (
            layout.variable_decimal,
            record(vec![
                ("scale", Value::Int(i32::from(scale))),
                ("value", Value::Bytes(unscaled)),
            ]),
        ),
    })
}

#[cfg(test)]
mod binary_tests;
#[cfg(test)]
mod tests;
