//! A change straight into Avro binary in the Confluent wire format, without building an
//! `apache_avro::types::Value` tree: zig-zag varints, length-prefixed strings, maps and arrays as
//! one counted block. The schema stays the single source of truth: union branches and enum
//! symbols come from the [`ChangeLayout`] read by name from it, the field order is checked
//! against it at start ([`FIELDS`], [`SOURCE_FIELDS`]), and a property test decodes what this
//! writes with apache-avro and compares it with the value `to_avro` builds, for every type of the
//! type matrix.

use pgoutput::row::{ColumnValue, RangeBound, TypedValue};
use platform::avro::binary::{bytes, frame, long, string};

use super::{
    ChangeLayout,
    decimal::{self, NumericForm},
};
use crate::changes::{ChangeEvent, Columns, Operation};

/// The fields of `CDCChange`, in the order they are written.
pub const FIELDS: [&str; 10] = [
    "change_id",
    "table_name",
    "operation",
    "primary_key",
    "before_values",
    "after_values",
    "timestamp",
    "source_database",
    "source",
    "table_schema",
];

/// The fields of its `source` record, in the order they are written.
pub const SOURCE_FIELDS: [&str; 6] = [
    "commit_lsn",
    "event_lsn",
    "transaction_id",
    "sequence",
    "commit_timestamp",
    "slot_name",
];

/// Appends the change, framed for the registry's schema `schema_id` (magic byte, id), to `out`;
/// `key` is its Kafka key ([`super::kafka_key`]), part of a snapshot row's `change_id`. An error
/// names the column whose value the layout cannot write (a `numeric(p,s)` in precise mode
/// without its `Decimal_p_s` branch); `out` then holds a partial record.
#[allow(
    clippy::too_many_arguments,
    reason = "the record's parts, passed as the session has them"
)]
pub fn encode_change(
    event: &ChangeEvent,
    key: &str,
    layout: &ChangeLayout,
    schema_id: u32,
    source_database: &str,
    slot_name: &str,
    now_unix_millis: i64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    frame(out, schema_id);
    change_id(out, event, key);
    string(out, &event.table);
    long(out, i64::from(layout.operation_symbol(event.operation).0));
    columns(out, layout, &event.primary_key)?;
    optional_columns(out, layout, event.before.as_ref())?;
    optional_columns(out, layout, event.after.as_ref())?;
    long(out, now_unix_millis);
    string(out, source_database);
    let position = &event.position;
    long(out, super::lsn_long(position.commit_lsn));
    long(out, super::lsn_long(position.event_lsn));
    long(out, i64::from(position.xid));
    long(
        out,
        i64::from(i32::try_from(position.sequence).unwrap_or(i32::MAX)),
    );
    long(out, position.commit_time_unix_micros);
    string(out, slot_name);
    // table_schema is ["null", "string"].
    match &event.table_schema {
        None => long(out, 0),
        Some(id) => {
            long(out, 1);
            string(out, id);
        }
    }
    Ok(())
}

/// [`super::change_id`] as an Avro string, written in place with the key already made (it is
/// written for every change, so without `core::fmt`: that took ~3 % of the session's CPU).
fn change_id(out: &mut Vec<u8>, event: &ChangeEvent, key: &str) {
    let commit_lsn = upper_hex16(event.position.commit_lsn);
    match event.operation {
        Operation::Read => {
            // `{commit_lsn:016X}-READ-{key}`: 16 hex digits, 6 bytes, the key.
            long(out, (16 + 6 + key.len()) as i64);
            out.extend_from_slice(&commit_lsn);
            out.extend_from_slice(b"-READ-");
            out.extend_from_slice(key.as_bytes());
        }
        _ => {
            // `{commit_lsn:016X}-{sequence:08}`.
            let mut digits = itoa::Buffer::new();
            let sequence = digits.format(event.position.sequence).as_bytes();
            let padding = 8usize.saturating_sub(sequence.len());
            long(out, (16 + 1 + padding + sequence.len()) as i64);
            out.extend_from_slice(&commit_lsn);
            out.push(b'-');
            out.extend(std::iter::repeat_n(b'0', padding));
            out.extend_from_slice(sequence);
        }
    }
}

/// `value` as `format!("{value:016X}")` has it.
fn upper_hex16(value: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut hex = [0u8; 16];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = DIGITS[((value >> (60 - 4 * i)) & 0xF) as usize];
    }
    hex
}

type Written = Result<(), String>;

fn optional_columns(out: &mut Vec<u8>, layout: &ChangeLayout, values: Option<&Columns>) -> Written {
    match values {
        None => long(out, i64::from(layout.absent_columns)),
        Some(values) => {
            long(out, i64::from(layout.present_columns));
            columns(out, layout, values)?;
        }
    }
    Ok(())
}

/// A map as one block: its count, the entries, then the empty block that ends it.
fn columns(out: &mut Vec<u8>, layout: &ChangeLayout, values: &Columns) -> Written {
    if !values.is_empty() {
        long(out, values.len() as i64);
        for (name, value) in values {
            string(out, name);
            column_value(out, layout, value).map_err(|e| format!("column {name}: {e}"))?;
        }
    }
    long(out, 0);
    Ok(())
}

fn column_value(out: &mut Vec<u8>, layout: &ChangeLayout, value: &ColumnValue) -> Written {
    match value {
        ColumnValue::Null => long(out, i64::from(layout.null)),
        ColumnValue::UnchangedToast => {
            long(out, i64::from(layout.unavailable));
            long(out, i64::from(layout.unchanged_toast));
        }
        ColumnValue::NotInReplicaIdentity => {
            long(out, i64::from(layout.unavailable));
            long(out, i64::from(layout.not_in_replica_identity));
        }
        ColumnValue::Value(typed) => typed_value(out, layout, typed)?,
    }
    Ok(())
}

/// A value of the column-value union, or its null branch.
fn optional_value(out: &mut Vec<u8>, layout: &ChangeLayout, value: Option<&TypedValue>) -> Written {
    match value {
        None => long(out, i64::from(layout.null)),
        Some(typed) => typed_value(out, layout, typed)?,
    }
    Ok(())
}

fn typed_value(out: &mut Vec<u8>, layout: &ChangeLayout, value: &TypedValue) -> Written {
    match value {
        TypedValue::Bool(b) => {
            long(out, i64::from(layout.boolean));
            out.push(u8::from(*b));
        }
        TypedValue::Int(i) => {
            long(out, i64::from(layout.int));
            long(out, i64::from(*i));
        }
        TypedValue::Long(i) => {
            long(out, i64::from(layout.long));
            long(out, *i);
        }
        TypedValue::Float(f) => {
            long(out, i64::from(layout.float));
            out.extend_from_slice(&f.to_le_bytes());
        }
        TypedValue::Double(f) => {
            long(out, i64::from(layout.double));
            out.extend_from_slice(&f.to_le_bytes());
        }
        TypedValue::Text(s) => {
            long(out, i64::from(layout.string));
            string(out, s);
        }
        TypedValue::Bytes(b) => {
            long(out, i64::from(layout.bytes));
            bytes(out, b);
        }
        TypedValue::Numeric(text) => numeric(out, layout, text, None)?,
        TypedValue::Decimal {
            text,
            precision,
            scale,
        } => numeric(out, layout, text, Some((*precision, *scale)))?,
        TypedValue::Json(s) => {
            long(out, i64::from(layout.json));
            string(out, s);
        }
        TypedValue::Uuid(s) => {
            long(out, i64::from(layout.uuid));
            string(out, s);
        }
        TypedValue::Date(days) => {
            long(out, i64::from(layout.date));
            long(out, i64::from(*days));
        }
        TypedValue::Timestamp(micros) => {
            long(out, i64::from(layout.timestamp));
            long(out, *micros);
        }
        TypedValue::TimestampTz(micros) => {
            long(out, i64::from(layout.timestamp_tz));
            long(out, *micros);
        }
        TypedValue::Time(micros) => {
            long(out, i64::from(layout.time));
            long(out, *micros);
        }
        TypedValue::TimeTz {
            micros,
            offset_seconds,
        } => {
            long(out, i64::from(layout.time_tz));
            long(out, *micros);
            long(out, i64::from(*offset_seconds));
        }
        TypedValue::Interval {
            months,
            days,
            micros,
        } => {
            long(out, i64::from(layout.interval));
            long(out, i64::from(*months));
            long(out, i64::from(*days));
            long(out, *micros);
        }
        TypedValue::Array {
            type_name,
            lower_bound,
            elements,
        } => {
            long(out, i64::from(layout.array));
            string(out, type_name);
            long(out, i64::from(*lower_bound));
            if !elements.is_empty() {
                long(out, elements.len() as i64);
                for element in elements {
                    optional_value(out, layout, element.as_ref())?;
                }
            }
            long(out, 0);
        }
        TypedValue::Other { type_name, text } => {
            long(out, i64::from(layout.other));
            string(out, type_name);
            string(out, text);
        }
        TypedValue::Enum { type_name, label } => {
            long(out, i64::from(layout.enum_value));
            string(out, type_name);
            string(out, label);
        }
        TypedValue::Money(minor_units) => {
            long(out, i64::from(layout.money));
            long(out, *minor_units);
        }
        TypedValue::Hstore(pairs) => {
            long(out, i64::from(layout.hstore));
            if !pairs.is_empty() {
                long(out, pairs.len() as i64);
                for (key, value) in pairs {
                    string(out, key);
                    // The entries' union is ["null", "string"].
                    match value {
                        None => long(out, 0),
                        Some(value) => {
                            long(out, 1);
                            string(out, value);
                        }
                    }
                }
            }
            long(out, 0);
        }
        TypedValue::Point { x, y } => {
            long(out, i64::from(layout.point));
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&y.to_le_bytes());
        }
        TypedValue::Bits {
            length,
            bytes: bits,
        } => {
            long(out, i64::from(layout.bits));
            long(out, i64::from(*length));
            bytes(out, bits);
        }
        TypedValue::Geometry {
            type_name,
            wkb,
            srid,
        } => {
            long(out, i64::from(layout.geometry));
            string(out, type_name);
            bytes(out, wkb);
            // srid is ["null", "int"].
            match srid {
                None => long(out, 0),
                Some(srid) => {
                    long(out, 1);
                    long(out, i64::from(*srid));
                }
            }
        }
        TypedValue::Infinity {
            type_name,
            negative,
        } => {
            long(out, i64::from(layout.infinity));
            string(out, type_name);
            out.push(u8::from(*negative));
        }
        TypedValue::WideTimestamp {
            type_name,
            epoch_seconds,
            micros_of_second,
        } => {
            long(out, i64::from(layout.wide_timestamp));
            string(out, type_name);
            long(out, *epoch_seconds);
            long(out, i64::from(*micros_of_second));
        }
        TypedValue::Range { type_name, bounds } => {
            long(out, i64::from(layout.range));
            string(out, type_name);
            out.push(u8::from(bounds.is_none()));
            let (lower, upper) = match bounds {
                Some(bounds) => (bounds.lower.as_ref(), bounds.upper.as_ref()),
                None => (None, None),
            };
            for bound in [lower, upper] {
                range_bound(out, layout, bound, bounds.is_some())?;
            }
        }
    }
    Ok(())
}

/// A bound's value (null when unbounded or empty), inclusivity, and whether it is unbounded.
fn range_bound(
    out: &mut Vec<u8>,
    layout: &ChangeLayout,
    bound: Option<&RangeBound>,
    non_empty: bool,
) -> Written {
    optional_value(out, layout, bound.map(|bound| &bound.value))?;
    out.push(u8::from(bound.is_some_and(|bound| bound.inclusive)));
    out.push(u8::from(non_empty && bound.is_none()));
    Ok(())
}

/// A numeric as `--decimal-handling` says; `declared` is the column's precision and scale.
fn numeric(
    out: &mut Vec<u8>,
    layout: &ChangeLayout,
    text: &str,
    declared: Option<decimal::DecimalType>,
) -> Written {
    match decimal::numeric_form(layout, text, declared)? {
        NumericForm::Text(text) => {
            long(out, i64::from(layout.numeric));
            string(out, text);
        }
        NumericForm::String(text) => {
            long(out, i64::from(layout.string));
            string(out, text);
        }
        NumericForm::Double(value) => {
            long(out, i64::from(layout.double));
            out.extend_from_slice(&value.to_le_bytes());
        }
        NumericForm::Fixed { branch, unscaled } => {
            long(out, i64::from(branch));
            out.extend_from_slice(&unscaled);
        }
        NumericForm::Variable { scale, unscaled } => {
            long(out, i64::from(layout.variable_decimal));
            long(out, i64::from(scale));
            bytes(out, &unscaled);
        }
    }
    Ok(())
}
