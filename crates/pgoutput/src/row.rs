//! From a pgoutput tuple to named, typed column values.
//!
//! Values are expected in PostgreSQL's text output format under the session
//! settings the connector uses: `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=iso_8601`,
//! `extra_float_digits=3`, `bytea_output=hex` (escape output is accepted too).
//!
//! Binary-format values (`'b'`, only sent when the subscription asks for
//! `binary = true`, which the connector does not) are not interpreted: they
//! become [`TypedValue::Other`] whose text is the bytes in bytea hex form
//! (`\x...`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;

use crate::array;
use crate::error::DecodeError;
use crate::message::{Relation, TupleData, TupleValue};
use crate::temporal;

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    Null,
    /// A TOASTed value the change left untouched; PostgreSQL did not send it.
    UnchangedToast,
    /// A column outside the replica identity in an old-key tuple: its old
    /// value is unknown, which is not the same as NULL.
    NotInReplicaIdentity,
    Value(TypedValue),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypedValue {
    Bool(bool),
    /// int2, int4.
    Int(i32),
    /// int8, oid.
    Long(i64),
    /// float4, NaN and infinities included.
    Float(f32),
    /// float8, NaN and infinities included.
    Double(f64),
    /// text, varchar, bpchar (blank padding kept), name, "char".
    Text(String),
    /// bytea.
    Bytes(Vec<u8>),
    /// The exact decimal text, or `NaN`, `Infinity`, `-Infinity`.
    Numeric(String),
    /// json and jsonb, as PostgreSQL printed them.
    Json(String),
    /// Lower-case hyphenated form, as PostgreSQL printed it.
    Uuid(String),
    /// Days since 1970-01-01; `infinity` is `i32::MAX`, `-infinity` `i32::MIN`.
    Date(i32),
    /// Wall-clock microseconds since 1970-01-01 00:00 (no time zone);
    /// `infinity` is `i64::MAX`, `-infinity` `i64::MIN`.
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00 UTC; `infinity` is `i64::MAX`,
    /// `-infinity` `i64::MIN`.
    TimestampTz(i64),
    /// time: microseconds since midnight, up to 24:00:00 inclusive.
    Time(i64),
    /// timetz: the local time of day and its UTC offset in seconds east of
    /// Greenwich (`+05:30` is 19800), as printed.
    TimeTz {
        micros: i64,
        offset_seconds: i32,
    },
    /// interval, field by field as PostgreSQL stores it: months and days do
    /// not convert to microseconds without a calendar.
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    /// A one-dimensional array, or one level of a multi-dimensional one
    /// (whose elements are then arrays of the same `type_name`). `None` is a
    /// NULL element. `lower_bound` is the index of the first element (1
    /// unless the array was built otherwise, e.g. `'[0:1]={1,2}'`).
    Array {
        type_name: String,
        lower_bound: i32,
        elements: Vec<Option<TypedValue>>,
    },
    /// Every other type, with PostgreSQL's text output kept verbatim.
    Other {
        type_name: String,
        text: String,
    },
}

/// Type OID to name. Built-in types are known up front; others are learned
/// from the `Type` messages pgoutput sends before first use of a type.
#[derive(Debug, Clone, Default)]
pub struct TypeNames {
    learned: HashMap<u32, String>,
}

impl TypeNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a `Type` message. pgoutput describes a domain by its base
    /// type's namespace and name, so a domain over `int4` is learned as
    /// `int4` and decoded like one. Types outside pg_catalog are kept
    /// qualified (`public.mood`) so they never shadow a built-in name.
    pub fn learn(&mut self, type_id: u32, namespace: &str, name: &str) {
        let qualified = if namespace.is_empty() || namespace == "pg_catalog" {
            name.to_owned()
        } else {
            format!("{namespace}.{name}")
        };
        self.learned.insert(type_id, qualified);
    }

    /// The type's name, or `oid:1234` for a type never described. Borrowed for every known
    /// type: it is looked up for every value decoded.
    pub fn name(&self, oid: u32) -> std::borrow::Cow<'_, str> {
        if let Some(name) = self.learned.get(&oid) {
            return std::borrow::Cow::Borrowed(name);
        }
        match builtin_type_name(oid) {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => std::borrow::Cow::Owned(format!("oid:{oid}")),
        }
    }
}

/// OIDs from pg_type.dat; pgoutput never sends `Type` messages for these.
fn builtin_type_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        16 => "bool",
        17 => "bytea",
        18 => "char",
        19 => "name",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        24 => "regproc",
        25 => "text",
        26 => "oid",
        27 => "tid",
        28 => "xid",
        29 => "cid",
        114 => "json",
        142 => "xml",
        199 => "_json",
        600 => "point",
        601 => "lseg",
        602 => "path",
        603 => "box",
        604 => "polygon",
        628 => "line",
        650 => "cidr",
        651 => "_cidr",
        700 => "float4",
        701 => "float8",
        718 => "circle",
        774 => "macaddr8",
        790 => "money",
        791 => "_money",
        829 => "macaddr",
        869 => "inet",
        1000 => "_bool",
        1001 => "_bytea",
        1002 => "_char",
        1003 => "_name",
        1005 => "_int2",
        1007 => "_int4",
        1009 => "_text",
        1014 => "_bpchar",
        1015 => "_varchar",
        1016 => "_int8",
        1020 => "_box",
        1021 => "_float4",
        1022 => "_float8",
        1028 => "_oid",
        1040 => "_macaddr",
        1041 => "_inet",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1083 => "time",
        1114 => "timestamp",
        1115 => "_timestamp",
        1182 => "_date",
        1183 => "_time",
        1184 => "timestamptz",
        1185 => "_timestamptz",
        1186 => "interval",
        1187 => "_interval",
        1231 => "_numeric",
        1266 => "timetz",
        1270 => "_timetz",
        1560 => "bit",
        1562 => "varbit",
        1700 => "numeric",
        2205 => "regclass",
        2206 => "regtype",
        2950 => "uuid",
        2951 => "_uuid",
        3220 => "pg_lsn",
        3614 => "tsvector",
        3615 => "tsquery",
        3802 => "jsonb",
        3807 => "_jsonb",
        3904 => "int4range",
        3906 => "numrange",
        3908 => "tsrange",
        3910 => "tstzrange",
        3912 => "daterange",
        3926 => "int8range",
        4072 => "jsonpath",
        _ => return None,
    })
}

/// Pairs each column of `relation` with its value in `tuple`.
///
/// `key_only` must be true for an [`crate::message::OldTuple::Key`] tuple:
/// PostgreSQL sends the columns outside the replica identity as null there,
/// and they become [`ColumnValue::NotInReplicaIdentity`].
pub fn decode_tuple(
    relation: &Relation,
    tuple: &TupleData,
    key_only: bool,
    types: &TypeNames,
) -> Result<Vec<(String, ColumnValue)>, DecodeError> {
    if tuple.0.len() != relation.columns.len() {
        return Err(DecodeError::ColumnCountMismatch {
            relation_id: relation.id,
            relation_name: qualified_relation_name(relation),
            relation_columns: relation.columns.len(),
            tuple_columns: tuple.0.len(),
        });
    }
    relation
        .columns
        .iter()
        .zip(&tuple.0)
        .map(|(column, value)| {
            let decoded = match value {
                TupleValue::Null if key_only && !column.is_key => ColumnValue::NotInReplicaIdentity,
                TupleValue::Null => ColumnValue::Null,
                TupleValue::UnchangedToast => ColumnValue::UnchangedToast,
                TupleValue::Text(text) => {
                    ColumnValue::Value(typed_value(column.type_id, text, types).map_err(
                        |source| DecodeError::InvalidColumn {
                            relation: qualified_relation_name(relation),
                            column: column.name.clone(),
                            source: Box::new(source),
                        },
                    )?)
                }
                TupleValue::Binary(bytes) => ColumnValue::Value(TypedValue::Other {
                    type_name: types.name(column.type_id).into_owned(),
                    text: bytea_hex(bytes),
                }),
            };
            Ok((column.name.clone(), decoded))
        })
        .collect()
}

fn qualified_relation_name(relation: &Relation) -> String {
    if relation.namespace.is_empty() {
        relation.name.clone()
    } else {
        format!("{}.{}", relation.namespace, relation.name)
    }
}

fn bytea_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Converts one value in PostgreSQL text output format to a [`TypedValue`],
/// choosing the conversion by the type's name in `types`.
///
/// Arrays are recognised by name: PostgreSQL names an array type after its
/// element type with a leading underscore (`_int4`, `public._mood`). For a
/// built-in array that is certain; a user type could be named `_x` without
/// being an array, so a learned `_` type whose text is not array output is
/// kept as [`TypedValue::Other`] instead of stopping the stream.
pub fn typed_value(
    type_id: u32,
    text: &[u8],
    types: &TypeNames,
) -> Result<TypedValue, DecodeError> {
    let type_name = types.name(type_id);
    let utf8 = std::str::from_utf8(text)
        .map_err(|_| DecodeError::invalid_value(&type_name, text, "not valid UTF-8"))?;
    let builtin = !types.learned.contains_key(&type_id) && builtin_type_name(type_id).is_some();
    match typed_text(&type_name, utf8, 0) {
        Err(_) if !builtin && array_element_type(&type_name).is_some() => Ok(TypedValue::Other {
            type_name: type_name.into_owned(),
            text: utf8.to_owned(),
        }),
        result => result,
    }
}

/// The element type of an array type name: `_int4` → `int4`,
/// `public._mood` → `public.mood`.
fn array_element_type(type_name: &str) -> Option<String> {
    match type_name.rsplit_once('.') {
        Some((namespace, name)) => name
            .strip_prefix('_')
            .map(|element| format!("{namespace}.{element}")),
        None => type_name.strip_prefix('_').map(str::to_owned),
    }
}

/// `depth` counts the arrays this value is an element of.
fn typed_text(type_name: &str, utf8: &str, depth: usize) -> Result<TypedValue, DecodeError> {
    let invalid = |reason| DecodeError::invalid_value(type_name, utf8.as_bytes(), reason);
    if let Some(element_type) = array_element_type(type_name) {
        if depth > 0 {
            // PostgreSQL has no arrays of array types (a multi-dimensional
            // array has the scalar element type); refusing bounds the recursion.
            return Err(invalid("an array type as an array element"));
        }
        return array::parse_array(type_name, &element_type, utf8, |text| {
            typed_text(&element_type, text, depth + 1)
        })
        .map_err(|error| match error {
            array::ArrayError::Syntax(reason) => invalid(reason),
            array::ArrayError::Element(error) => error,
        });
    }
    let value = match type_name {
        "bool" => match utf8 {
            "t" | "true" => TypedValue::Bool(true),
            "f" | "false" => TypedValue::Bool(false),
            _ => return Err(invalid("expected t or f")),
        },
        "int2" | "int4" => {
            TypedValue::Int(utf8.parse().map_err(|_| invalid("not a 32-bit integer"))?)
        }
        "int8" => TypedValue::Long(utf8.parse().map_err(|_| invalid("not a 64-bit integer"))?),
        "oid" => {
            let oid: u32 = utf8
                .parse()
                .map_err(|_| invalid("not an unsigned 32-bit OID"))?;
            TypedValue::Long(i64::from(oid))
        }
        "float4" => TypedValue::Float(
            parse_float(utf8, f32::NAN, f32::INFINITY).ok_or_else(|| invalid("not a float4"))?,
        ),
        "float8" => TypedValue::Double(
            parse_float(utf8, f64::NAN, f64::INFINITY).ok_or_else(|| invalid("not a float8"))?,
        ),
        "text" | "varchar" | "bpchar" | "name" | "char" => TypedValue::Text(utf8.to_owned()),
        "bytea" => TypedValue::Bytes(
            parse_bytea(utf8).ok_or_else(|| invalid("not bytea hex or escape output"))?,
        ),
        "numeric" => {
            if !is_numeric_text(utf8) {
                return Err(invalid("not a plain decimal, NaN or Infinity"));
            }
            TypedValue::Numeric(utf8.to_owned())
        }
        "json" | "jsonb" => TypedValue::Json(utf8.to_owned()),
        "uuid" => {
            if !is_uuid_text(utf8) {
                return Err(invalid("not a hyphenated 36-character UUID"));
            }
            TypedValue::Uuid(utf8.to_owned())
        }
        "date" => TypedValue::Date(match utf8 {
            "infinity" => i32::MAX,
            "-infinity" => i32::MIN,
            _ => {
                let days = temporal::parse_date(utf8).map_err(invalid)?;
                i32::try_from(days).map_err(|_| invalid("outside the 32-bit day range"))?
            }
        }),
        "timestamp" => TypedValue::Timestamp(match utf8 {
            "infinity" => i64::MAX,
            "-infinity" => i64::MIN,
            _ => temporal::parse_timestamp(utf8).map_err(invalid)?,
        }),
        "timestamptz" => TypedValue::TimestampTz(match utf8 {
            "infinity" => i64::MAX,
            "-infinity" => i64::MIN,
            _ => temporal::parse_timestamptz(utf8).map_err(invalid)?,
        }),
        "time" => TypedValue::Time(temporal::parse_time(utf8).map_err(invalid)?),
        "timetz" => {
            let (micros, offset_seconds) = temporal::parse_timetz(utf8).map_err(invalid)?;
            TypedValue::TimeTz {
                micros,
                offset_seconds,
            }
        }
        "interval" => {
            let temporal::Interval {
                months,
                days,
                micros,
            } = temporal::parse_interval(utf8).map_err(invalid)?;
            TypedValue::Interval {
                months,
                days,
                micros,
            }
        }
        _ => TypedValue::Other {
            type_name: type_name.to_owned(),
            text: utf8.to_owned(),
        },
    };
    Ok(value)
}

/// PostgreSQL spells the special values `NaN`, `Infinity` and `-Infinity`;
/// Rust's parser would also take `inf` or `nan` in any case, which PostgreSQL
/// never sends, so those are rejected as corrupt rather than guessed at.
fn parse_float<F: FromStr + std::ops::Neg<Output = F>>(
    text: &str,
    nan: F,
    infinity: F,
) -> Option<F> {
    match text {
        "NaN" => Some(nan),
        "Infinity" => Some(infinity),
        "-Infinity" => Some(-infinity),
        _ if text.bytes().all(|byte| {
            byte.is_ascii_digit() || matches!(byte, b'+' | b'-' | b'.' | b'e' | b'E')
        }) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// numeric_out never uses exponents: `-?digits(.digits)?` or a special value.
fn is_numeric_text(text: &str) -> bool {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (unsigned, None),
    };
    let all_digits =
        |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    all_digits(integer) && fraction.is_none_or(all_digits)
}

fn is_uuid_text(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Hex output (`\x0a1b`) or, for servers left on `bytea_output=escape`,
/// escape output (printable bytes as-is, `\\` for a backslash, `\ooo` octal).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    match text.strip_prefix("\\x") {
        Some(hex) => parse_hex(hex.as_bytes()),
        None => parse_bytea_escape(text.as_bytes()),
    }
}

fn parse_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn parse_bytea_escape(text: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&first, after)) = rest.split_first() {
        if first != b'\\' {
            bytes.push(first);
            rest = after;
            continue;
        }
        match after {
            [b'\\', tail @ ..] => {
                bytes.push(b'\\');
                rest = tail;
            }
            [
                high @ b'0'..=b'3',
                middle @ b'0'..=b'7',
                low @ b'0'..=b'7',
                tail @ ..,
            ] => {
                bytes.push((high - b'0') << 6 | (middle - b'0') << 3 | (low - b'0'));
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests;
