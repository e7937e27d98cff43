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
use crate::{special, temporal};

pub use crate::special::numeric_modifier;

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
    /// Days since 1970-01-01 (±infinity are [`TypedValue::Infinity`]).
    Date(i32),
    /// Wall-clock microseconds since 1970-01-01 00:00 (no time zone); ±infinity are
    /// [`TypedValue::Infinity`], years after 294247 [`TypedValue::WideTimestamp`].
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00 UTC; ±infinity and years after 294247 as for
    /// [`TypedValue::Timestamp`].
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
    /// numeric with a declared precision and scale (`numeric(10,2)`, scale from 0 to the
    /// precision), as its exact text; its NaN and ±Infinity stay [`TypedValue::Numeric`].
    Decimal {
        text: String,
        precision: u16,
        scale: u16,
    },
    /// A label of an enum type (known from the catalog: [`TypeNames::learn_enum`]).
    Enum {
        type_name: String,
        label: String,
    },
    /// money as the stored count of the currency's minor units (cents), independent of
    /// `lc_monetary`.
    Money(i64),
    /// bit and varbit: the length in bits and the bits, first bit highest, last byte padded.
    Bits {
        length: u32,
        bytes: Vec<u8>,
    },
    Point {
        x: f64,
        y: f64,
    },
    /// A range; `bounds` is None for the empty range.
    Range {
        type_name: String,
        bounds: Option<Box<RangeBounds>>,
    },
    /// hstore's pairs in the order PostgreSQL prints them; a None value is NULL.
    Hstore(Vec<(String, Option<String>)>),
    /// PostGIS geometry or geography: WKB without the SRID, and the SRID (None when 0).
    Geometry {
        type_name: String,
        wkb: Vec<u8>,
        srid: Option<i32>,
    },
    /// `infinity` or `-infinity` of a date, timestamp or timestamptz: explicit, never a value
    /// that is also a real day or instant.
    Infinity {
        type_name: &'static str,
        negative: bool,
    },
    /// A timestamp or timestamptz whose microseconds since 1970 do not fit 64 bits (years after
    /// 294247): seconds since 1970 and the microseconds within the second (0 to 999,999).
    WideTimestamp {
        type_name: &'static str,
        epoch_seconds: i64,
        micros_of_second: u32,
    },
}

/// The two ends of a non-empty range; None is unbounded.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeBounds {
    pub lower: Option<RangeBound>,
    pub upper: Option<RangeBound>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RangeBound {
    pub value: TypedValue,
    pub inclusive: bool,
}

/// Type OID to name. Built-in types are known up front; others are learned
/// from the `Type` messages pgoutput sends before first use of a type.
#[derive(Debug, Clone, Default)]
pub struct TypeNames {
    learned: HashMap<u32, String>,
    /// Names of enum types, and of user-defined range types with their subtype's name: what
    /// pgoutput cannot tell, learned from the catalog.
    enums: std::collections::HashSet<String>,
    range_subtypes: HashMap<String, String>,
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

    /// Records that the type called `type_name` (as [`TypeNames::name`] spells it) is an enum,
    /// so its values become [`TypedValue::Enum`].
    pub fn learn_enum(&mut self, type_name: &str) {
        self.enums.insert(type_name.to_owned());
    }

    /// Records a user-defined range type and its subtype (both as [`TypeNames::name`] spells
    /// them); built-in ranges are known.
    pub fn learn_range(&mut self, type_name: &str, subtype_name: &str) {
        self.range_subtypes
            .insert(type_name.to_owned(), subtype_name.to_owned());
    }

    fn range_subtype<'a>(&'a self, type_name: &str) -> Option<&'a str> {
        special::builtin_range_subtype(type_name)
            .or_else(|| self.range_subtypes.get(type_name).map(String::as_str))
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

/// OIDs from pg_type.dat, with each type's name and its conversion if it has one of its own;
/// pgoutput never sends `Type` messages for these.
// Inlined into every caller, so each keeps only the half of the table it reads (criterion,
// against a call: `typed_value` int8 23 against 26 ns, jsonb 31 against 35).
#[inline(always)]
fn builtin_type(oid: u32) -> Option<(&'static str, Option<Scalar>)> {
    Some(match oid {
        16 => ("bool", Some(Scalar::Bool)),
        17 => ("bytea", Some(Scalar::Bytea)),
        18 => ("char", Some(Scalar::Text)),
        19 => ("name", Some(Scalar::Text)),
        20 => ("int8", Some(Scalar::Long)),
        21 => ("int2", Some(Scalar::Int)),
        23 => ("int4", Some(Scalar::Int)),
        24 => ("regproc", None),
        25 => ("text", Some(Scalar::Text)),
        26 => ("oid", Some(Scalar::Oid)),
        27 => ("tid", None),
        28 => ("xid", None),
        29 => ("cid", None),
        114 => ("json", Some(Scalar::Json)),
        142 => ("xml", None),
        199 => ("_json", None),
        600 => ("point", Some(Scalar::Point)),
        601 => ("lseg", None),
        602 => ("path", None),
        603 => ("box", None),
        604 => ("polygon", None),
        628 => ("line", None),
        650 => ("cidr", None),
        651 => ("_cidr", None),
        700 => ("float4", Some(Scalar::Float4)),
        701 => ("float8", Some(Scalar::Float8)),
        718 => ("circle", None),
        774 => ("macaddr8", None),
        790 => ("money", Some(Scalar::Money)),
        791 => ("_money", None),
        829 => ("macaddr", None),
        869 => ("inet", None),
        1000 => ("_bool", None),
        1001 => ("_bytea", None),
        1002 => ("_char", None),
        1003 => ("_name", None),
        1005 => ("_int2", None),
        1007 => ("_int4", None),
        1009 => ("_text", None),
        1014 => ("_bpchar", None),
        1015 => ("_varchar", None),
        1016 => ("_int8", None),
        1020 => ("_box", None),
        1021 => ("_float4", None),
        1022 => ("_float8", None),
        1028 => ("_oid", None),
        1040 => ("_macaddr", None),
        1041 => ("_inet", None),
        1042 => ("bpchar", Some(Scalar::Text)),
        1043 => ("varchar", Some(Scalar::Text)),
        1082 => ("date", Some(Scalar::Date)),
        1083 => ("time", Some(Scalar::Time)),
        1114 => ("timestamp", Some(Scalar::Timestamp)),
        1115 => ("_timestamp", None),
        1182 => ("_date", None),
        1183 => ("_time", None),
        1184 => ("timestamptz", Some(Scalar::TimestampTz)),
        1185 => ("_timestamptz", None),
        1186 => ("interval", Some(Scalar::Interval)),
        1187 => ("_interval", None),
        1231 => ("_numeric", None),
        1266 => ("timetz", Some(Scalar::TimeTz)),
        1270 => ("_timetz", None),
        1560 => ("bit", Some(Scalar::Bits)),
        1562 => ("varbit", Some(Scalar::Bits)),
        1700 => ("numeric", Some(Scalar::Numeric)),
        2205 => ("regclass", None),
        2206 => ("regtype", None),
        2950 => ("uuid", Some(Scalar::Uuid)),
        2951 => ("_uuid", None),
        3220 => ("pg_lsn", None),
        3614 => ("tsvector", None),
        3615 => ("tsquery", None),
        3802 => ("jsonb", Some(Scalar::Json)),
        3807 => ("_jsonb", None),
        3904 => ("int4range", None),
        3906 => ("numrange", None),
        3908 => ("tsrange", None),
        3910 => ("tstzrange", None),
        3912 => ("daterange", None),
        3926 => ("int8range", None),
        4072 => ("jsonpath", None),
        _ => return None,
    })
}

fn builtin_type_name(oid: u32) -> Option<&'static str> {
    builtin_type(oid).map(|(name, _)| name)
}

/// The types with a conversion of their own. Found with a built-in type's name in one jump
/// table by OID ([`builtin_type`]) for every value of the common case, instead of comparing the
/// type's name with each spelling (criterion's `typed_value` benchmarks: 4-6 ns less of 25-55
/// ns per value), and by name ([`Scalar::named`]) where only a name is known: array elements,
/// range subtypes, domains learned under their base type's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Bool,
    /// int2, int4.
    Int,
    Long,
    Oid,
    Float4,
    Float8,
    /// text, varchar, bpchar, name, "char".
    Text,
    Bytea,
    Numeric,
    Money,
    /// bit, varbit.
    Bits,
    Point,
    /// json, jsonb.
    Json,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    TimeTz,
    Interval,
}

impl Scalar {
    /// The kind of the type called `type_name`, if it has one.
    fn named(type_name: &str) -> Option<Self> {
        Some(match type_name {
            "bool" => Self::Bool,
            "int2" | "int4" => Self::Int,
            "int8" => Self::Long,
            "oid" => Self::Oid,
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "text" | "varchar" | "bpchar" | "name" | "char" => Self::Text,
            "bytea" => Self::Bytea,
            "numeric" => Self::Numeric,
            "money" => Self::Money,
            "bit" | "varbit" => Self::Bits,
            "point" => Self::Point,
            "json" | "jsonb" => Self::Json,
            "uuid" => Self::Uuid,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::TimestampTz,
            "time" => Self::Time,
            "timetz" => Self::TimeTz,
            "interval" => Self::Interval,
            _ => return None,
        })
    }
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
) -> Result<Vec<(std::sync::Arc<str>, ColumnValue)>, DecodeError> {
    check_column_count(relation, tuple)?;
    // One allocation for the row: collecting through `Result` would grow the vector by doubling.
    let mut row = Vec::with_capacity(relation.columns.len());
    for (column, value) in relation.columns.iter().zip(&tuple.0) {
        row.push((
            column.name.clone(),
            decode_column(relation, column, value, key_only, types)?,
        ));
    }
    Ok(row)
}

/// [`decode_tuple`] into `row`, reusing what it holds: a snapshot decodes millions of rows of
/// one relation, and the names, the row's vector and the buffers of its string values
/// (`text`-like, `json`, `uuid`) then serve the next row instead of being allocated and freed
/// per row. `row` may hold anything (another relation's row, a filtered one): what does not
/// line up with `relation` is rebuilt. Decodes exactly like [`decode_tuple`]; after an error
/// `row` holds a partial row.
pub fn decode_tuple_into(
    relation: &Relation,
    tuple: &TupleData,
    key_only: bool,
    types: &TypeNames,
    row: &mut Vec<(std::sync::Arc<str>, ColumnValue)>,
) -> Result<(), DecodeError> {
    check_column_count(relation, tuple)?;
    if !lines_up(row, relation) {
        row.clear();
        row.extend(
            relation
                .columns
                .iter()
                .map(|column| (column.name.clone(), ColumnValue::Null)),
        );
    }
    for ((column, value), (_, slot)) in relation.columns.iter().zip(&tuple.0).zip(row.iter_mut()) {
        let reused = match (value, &mut *slot) {
            (TupleValue::Text(text), ColumnValue::Value(typed)) => {
                reuse_string(column.type_id, text, typed)
            }
            _ => false,
        };
        if !reused {
            *slot = decode_column(relation, column, value, key_only, types)?;
        }
    }
    Ok(())
}

/// Rows given back after use, decoded into again by [`decode_tuple_into`], which then reuses
/// their vectors, names and string buffers (see [`crate::message::TuplePool`]).
#[derive(Debug, Default)]
pub struct RowPool(Vec<Vec<(std::sync::Arc<str>, ColumnValue)>>);

impl RowPool {
    /// A change holds at most two rows and a key.
    const KEPT: usize = 4;

    pub fn give(&mut self, row: Vec<(std::sync::Arc<str>, ColumnValue)>) {
        let holds_huge_string = row.iter().any(|(_, value)| match value {
            ColumnValue::Value(
                TypedValue::Text(text) | TypedValue::Json(text) | TypedValue::Uuid(text),
            ) => text.capacity() > crate::message::KEPT_BUFFER_BYTES,
            _ => false,
        });
        if self.0.len() < Self::KEPT && !holds_huge_string {
            self.0.push(row);
        }
    }

    /// A row given back that [`lines_up`] with `relation` if there is one, else any, else a
    /// new one.
    pub fn take(&mut self, relation: &Relation) -> Vec<(std::sync::Arc<str>, ColumnValue)> {
        match self.0.iter().position(|row| lines_up(row, relation)) {
            Some(index) => self.0.swap_remove(index),
            None => self.take_any(),
        }
    }

    /// The row given back last, or a new one.
    pub fn take_any(&mut self) -> Vec<(std::sync::Arc<str>, ColumnValue)> {
        self.0.pop().unwrap_or_default()
    }
}

/// Whether `row` holds a row of `relation` (the same column names, shared), whose buffers
/// [`decode_tuple_into`] reuses for the next one.
fn lines_up(row: &[(std::sync::Arc<str>, ColumnValue)], relation: &Relation) -> bool {
    row.len() == relation.columns.len()
        && row
            .iter()
            .zip(&relation.columns)
            .all(|((name, _), column)| std::sync::Arc::ptr_eq(name, &column.name))
}

/// Writes `text` into the string of `slot` when `slot` already holds the string-valued kind a
/// built-in `type_id` decodes to ([`StringKind`]) and `text` is valid for it; false leaves
/// `slot` to be decoded anew (which reports what is invalid).
fn reuse_string(type_id: u32, text: &[u8], slot: &mut TypedValue) -> bool {
    let (Ok(text), Some(kind)) = (std::str::from_utf8(text), StringKind::of(type_id)) else {
        return false;
    };
    let buffer = match (kind, slot) {
        (StringKind::Text, TypedValue::Text(buffer))
        | (StringKind::Json, TypedValue::Json(buffer))
        | (StringKind::Uuid, TypedValue::Uuid(buffer))
            if kind.accepts(text) =>
        {
            buffer
        }
        _ => return false,
    };
    buffer.clear();
    buffer.push_str(text);
    true
}

/// `*slot = value.clone()`, reusing the string `slot` holds when both are the same
/// string-valued kind (text-like, json, uuid: the kinds [`decode_tuple_into`] reuses), e.g. a
/// row's key copied into the previous row's key.
pub fn clone_into_reusing(value: &ColumnValue, slot: &mut ColumnValue) {
    use TypedValue::{Json, Text, Uuid};
    match (value, &mut *slot) {
        (ColumnValue::Value(Text(text)), ColumnValue::Value(Text(held)))
        | (ColumnValue::Value(Json(text)), ColumnValue::Value(Json(held)))
        | (ColumnValue::Value(Uuid(text)), ColumnValue::Value(Uuid(held))) => held.clone_from(text),
        _ => *slot = value.clone(),
    }
}

/// Sets `selected` to the columns of `row` that `is_selected` picks by index, in order (a
/// change's key out of its row), reusing the names and string buffers `selected` held.
pub fn copy_selected_into(
    row: &[(std::sync::Arc<str>, ColumnValue)],
    mut is_selected: impl FnMut(usize) -> bool,
    selected: &mut Vec<(std::sync::Arc<str>, ColumnValue)>,
) {
    let mut count = 0;
    for (index, (name, value)) in row.iter().enumerate() {
        if !is_selected(index) {
            continue;
        }
        match selected.get_mut(count) {
            Some((held_name, slot)) => {
                if !std::sync::Arc::ptr_eq(held_name, name) {
                    *held_name = name.clone();
                }
                clone_into_reusing(value, slot);
            }
            None => selected.push((name.clone(), value.clone())),
        }
        count += 1;
    }
    selected.truncate(count);
}

/// The built-in types whose value is their text itself, as [`typed_value`] decodes them: a
/// decoder copies the text into the string of the previous row's value (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    /// `text`, `varchar`, `bpchar`, `name`, `"char"`: [`TypedValue::Text`].
    Text,
    /// `json`, `jsonb`: [`TypedValue::Json`].
    Json,
    /// `uuid`, once its text is checked: [`TypedValue::Uuid`].
    Uuid,
}

impl StringKind {
    fn of(type_id: u32) -> Option<Self> {
        match builtin_type(type_id)?.1? {
            Scalar::Text => Some(Self::Text),
            Scalar::Json => Some(Self::Json),
            Scalar::Uuid => Some(Self::Uuid),
            _ => None,
        }
    }

    /// Whether `text` is a value of this kind as it is (any text is, but a UUID's).
    fn accepts(self, text: &str) -> bool {
        self != Self::Uuid || is_uuid_text(text)
    }
}

fn check_column_count(relation: &Relation, tuple: &TupleData) -> Result<(), DecodeError> {
    if tuple.0.len() != relation.columns.len() {
        return Err(DecodeError::ColumnCountMismatch {
            relation_id: relation.id,
            relation_name: qualified_relation_name(relation),
            relation_columns: relation.columns.len(),
            tuple_columns: tuple.0.len(),
        });
    }
    Ok(())
}

fn decode_column(
    relation: &Relation,
    column: &crate::message::Column,
    value: &TupleValue,
    key_only: bool,
    types: &TypeNames,
) -> Result<ColumnValue, DecodeError> {
    Ok(match value {
        TupleValue::Null if key_only && !column.is_key => ColumnValue::NotInReplicaIdentity,
        TupleValue::Null => ColumnValue::Null,
        TupleValue::UnchangedToast => ColumnValue::UnchangedToast,
        TupleValue::Text(text) => ColumnValue::Value(
            typed_value(column.type_id, column.type_modifier, text, types).map_err(|source| {
                DecodeError::InvalidColumn {
                    relation: qualified_relation_name(relation),
                    column: column.name.to_string(),
                    source: Box::new(source),
                }
            })?,
        ),
        TupleValue::Binary(bytes) => ColumnValue::Value(TypedValue::Other {
            type_name: types.name(column.type_id).into_owned(),
            text: bytea_hex(bytes),
        }),
    })
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
///
/// `type_modifier` is the column's (`atttypmod`, -1 for none): a `numeric(p,s)` value (or
/// array element) becomes a [`TypedValue::Decimal`] with its declared precision and scale.
pub fn typed_value(
    type_id: u32,
    type_modifier: i32,
    text: &[u8],
    types: &TypeNames,
) -> Result<TypedValue, DecodeError> {
    let context = Context {
        types,
        type_modifier,
    };
    // The common case first, decided by the OID alone: a built-in type with a conversion of
    // its own (pgoutput describes no built-in type, so none is ever learned, and learned enums
    // are named with their schema).
    if let Some((type_name, Some(kind))) = builtin_type(type_id) {
        let utf8 = std::str::from_utf8(text)
            .map_err(|_| DecodeError::invalid_value(type_name, text, "not valid UTF-8"))?;
        return context.convert(kind, type_name, utf8);
    }
    let type_name = types.name(type_id);
    let utf8 = std::str::from_utf8(text)
        .map_err(|_| DecodeError::invalid_value(&type_name, text, "not valid UTF-8"))?;
    let builtin = !types.learned.contains_key(&type_id) && builtin_type_name(type_id).is_some();
    match context.typed_text(&type_name, utf8, 0) {
        Err(_) if !builtin && array_element_type(&type_name).is_some() => Ok(TypedValue::Other {
            type_name: type_name.into_owned(),
            text: utf8.to_owned(),
        }),
        result => result,
    }
}

/// The precision and scale with which values of `type_name` (or its array elements) decode as
/// [`TypedValue::Decimal`]: a `numeric(p,s)` modifier with 0 <= s <= p. The one rule the decoder
/// and the schema's decimal branches follow.
pub fn declared_decimal(type_name: &str, type_modifier: i32) -> Option<(u16, u16)> {
    let element = array_element_type(type_name);
    if element.as_deref().unwrap_or(type_name) != "numeric" {
        return None;
    }
    let (precision, scale) = special::numeric_modifier(type_modifier)?;
    let scale = u16::try_from(scale).ok()?;
    (scale <= precision).then_some((precision, scale))
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

/// What decoding one value needs beyond its text: the learned types, and the column's type
/// modifier (array elements share their column's).
struct Context<'a> {
    types: &'a TypeNames,
    type_modifier: i32,
}

/// The unqualified name of a learned extension type (`public.hstore` → `hstore`).
fn unqualified(type_name: &str) -> &str {
    type_name
        .rsplit_once('.')
        .map_or(type_name, |(_, name)| name)
}

impl Context<'_> {
    /// `depth` counts the arrays (or ranges) this value is an element of.
    fn typed_text(
        &self,
        type_name: &str,
        utf8: &str,
        depth: usize,
    ) -> Result<TypedValue, DecodeError> {
        let invalid = |reason| DecodeError::invalid_value(type_name, utf8.as_bytes(), reason);
        if let Some(element_type) = array_element_type(type_name) {
            if depth > 0 {
                // PostgreSQL has no arrays of array types (a multi-dimensional
                // array has the scalar element type); refusing bounds the recursion.
                return Err(invalid("an array type as an array element"));
            }
            return array::parse_array(type_name, &element_type, utf8, |text| {
                self.typed_text(&element_type, text, depth + 1)
            })
            .map_err(|error| match error {
                array::ArrayError::Syntax(reason) => invalid(reason),
                array::ArrayError::Element(error) => error,
            });
        }
        if let Some(subtype) = self.types.range_subtype(type_name) {
            if depth > 1 {
                return Err(invalid("a range nested too deep"));
            }
            return self
                .range(type_name, subtype, utf8, depth)
                .map_err(|error| match error {
                    RangeError::Syntax(reason) => invalid(reason),
                    RangeError::Bound(error) => error,
                });
        }
        if self.types.enums.contains(type_name) {
            return Ok(TypedValue::Enum {
                type_name: type_name.to_owned(),
                label: utf8.to_owned(),
            });
        }
        self.scalar(type_name, utf8)
    }

    /// A value of a type that is neither an array, a range nor an enum.
    fn scalar(&self, type_name: &str, utf8: &str) -> Result<TypedValue, DecodeError> {
        if let Some(kind) = Scalar::named(type_name) {
            return self.convert(kind, type_name, utf8);
        }
        let invalid = |reason| DecodeError::invalid_value(type_name, utf8.as_bytes(), reason);
        Ok(match unqualified(type_name) {
            "hstore" => TypedValue::Hstore(special::parse_hstore(utf8).map_err(invalid)?),
            "geometry" | "geography" => {
                let (wkb, srid) = special::parse_ewkb_hex(utf8).map_err(invalid)?;
                TypedValue::Geometry {
                    type_name: unqualified(type_name).to_owned(),
                    wkb,
                    srid,
                }
            }
            _ => TypedValue::Other {
                type_name: type_name.to_owned(),
                text: utf8.to_owned(),
            },
        })
    }

    /// A value of `kind`, whose type is called `type_name` (for errors and the
    /// values that carry their type's name).
    fn convert(
        &self,
        kind: Scalar,
        type_name: &str,
        utf8: &str,
    ) -> Result<TypedValue, DecodeError> {
        let invalid = |reason| DecodeError::invalid_value(type_name, utf8.as_bytes(), reason);
        let value = match kind {
            Scalar::Bool => match utf8 {
                "t" | "true" => TypedValue::Bool(true),
                "f" | "false" => TypedValue::Bool(false),
                _ => return Err(invalid("expected t or f")),
            },
            Scalar::Int => {
                TypedValue::Int(utf8.parse().map_err(|_| invalid("not a 32-bit integer"))?)
            }
            Scalar::Long => {
                TypedValue::Long(utf8.parse().map_err(|_| invalid("not a 64-bit integer"))?)
            }
            Scalar::Oid => {
                let oid: u32 = utf8
                    .parse()
                    .map_err(|_| invalid("not an unsigned 32-bit OID"))?;
                TypedValue::Long(i64::from(oid))
            }
            Scalar::Float4 => TypedValue::Float(
                parse_float(utf8, f32::NAN, f32::INFINITY)
                    .ok_or_else(|| invalid("not a float4"))?,
            ),
            Scalar::Float8 => TypedValue::Double(
                parse_float(utf8, f64::NAN, f64::INFINITY)
                    .ok_or_else(|| invalid("not a float8"))?,
            ),
            Scalar::Text => TypedValue::Text(utf8.to_owned()),
            Scalar::Bytea => TypedValue::Bytes(
                parse_bytea(utf8).ok_or_else(|| invalid("not bytea hex or escape output"))?,
            ),
            Scalar::Numeric => {
                if !is_numeric_text(utf8) {
                    return Err(invalid("not a plain decimal, NaN or Infinity"));
                }
                match declared_decimal("numeric", self.type_modifier) {
                    Some((precision, scale)) if !utf8.ends_with("Infinity") && utf8 != "NaN" => {
                        TypedValue::Decimal {
                            text: utf8.to_owned(),
                            precision,
                            scale,
                        }
                    }
                    _ => TypedValue::Numeric(utf8.to_owned()),
                }
            }
            Scalar::Money => TypedValue::Money(special::parse_money(utf8).map_err(invalid)?),
            Scalar::Bits => {
                let (length, bytes) = special::parse_bits(utf8).map_err(invalid)?;
                TypedValue::Bits { length, bytes }
            }
            Scalar::Point => {
                let (x, y) = special::parse_point(utf8).map_err(invalid)?;
                TypedValue::Point { x, y }
            }
            Scalar::Json => TypedValue::Json(utf8.to_owned()),
            Scalar::Uuid => {
                if !is_uuid_text(utf8) {
                    return Err(invalid("not a hyphenated 36-character UUID"));
                }
                TypedValue::Uuid(utf8.to_owned())
            }
            Scalar::Date => match infinity("date", utf8) {
                Some(value) => value,
                None => {
                    let days = temporal::parse_date(utf8).map_err(invalid)?;
                    TypedValue::Date(
                        i32::try_from(days).map_err(|_| invalid("outside the 32-bit day range"))?,
                    )
                }
            },
            Scalar::Timestamp => match infinity("timestamp", utf8) {
                Some(value) => value,
                None => timestamp(
                    "timestamp",
                    temporal::parse_timestamp(utf8).map_err(invalid)?,
                    TypedValue::Timestamp,
                ),
            },
            Scalar::TimestampTz => match infinity("timestamptz", utf8) {
                Some(value) => value,
                None => timestamp(
                    "timestamptz",
                    temporal::parse_timestamptz(utf8).map_err(invalid)?,
                    TypedValue::TimestampTz,
                ),
            },
            Scalar::Time => TypedValue::Time(temporal::parse_time(utf8).map_err(invalid)?),
            Scalar::TimeTz => {
                let (micros, offset_seconds) = temporal::parse_timetz(utf8).map_err(invalid)?;
                TypedValue::TimeTz {
                    micros,
                    offset_seconds,
                }
            }
            Scalar::Interval => {
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
        };
        Ok(value)
    }

    fn range(
        &self,
        type_name: &str,
        subtype: &str,
        utf8: &str,
        depth: usize,
    ) -> Result<TypedValue, RangeError> {
        let Some((lower, upper)) = special::parse_range(utf8).map_err(RangeError::Syntax)? else {
            return Ok(TypedValue::Range {
                type_name: type_name.to_owned(),
                bounds: None,
            });
        };
        // A range's subtype carries no type modifier: its bounds are plain numerics.
        let bounds = Context {
            types: self.types,
            type_modifier: -1,
        };
        let bound = |bound: special::BoundText| -> Result<Option<RangeBound>, RangeError> {
            bound
                .text
                .map(|text| {
                    Ok(RangeBound {
                        value: bounds
                            .typed_text(subtype, &text, depth + 1)
                            .map_err(RangeError::Bound)?,
                        inclusive: bound.inclusive,
                    })
                })
                .transpose()
        };
        Ok(TypedValue::Range {
            type_name: type_name.to_owned(),
            bounds: Some(Box::new(RangeBounds {
                lower: bound(lower)?,
                upper: bound(upper)?,
            })),
        })
    }
}

enum RangeError {
    Syntax(&'static str),
    Bound(DecodeError),
}

/// The explicit ±infinity of the date and timestamp types.
fn infinity(type_name: &'static str, utf8: &str) -> Option<TypedValue> {
    match utf8 {
        "infinity" => Some(TypedValue::Infinity {
            type_name,
            negative: false,
        }),
        "-infinity" => Some(TypedValue::Infinity {
            type_name,
            negative: true,
        }),
        _ => None,
    }
}

/// Microseconds since 1970 as `fits` when they fit 64 bits, else as a [`TypedValue::WideTimestamp`].
fn timestamp(type_name: &'static str, micros: i128, fits: fn(i64) -> TypedValue) -> TypedValue {
    match i64::try_from(micros) {
        Ok(micros) => fits(micros),
        Err(_) => TypedValue::WideTimestamp {
            type_name,
            // PostgreSQL's years stop at 294276 (and 4713 BC), far inside 64-bit seconds.
            epoch_seconds: micros.div_euclid(1_000_000) as i64,
            micros_of_second: micros.rem_euclid(1_000_000) as u32,
        },
    }
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

/// `8-4-4-4-12` hex digits, checked without a branch per character: the digits of random
/// UUIDs are as unpredictable to the branch predictor as they are random, and its misses cost
/// more than the check itself (criterion's `typed_value/uuid_random`: 142.6 ns a value checked
/// group by group, 58.4 ns through the table). It runs for every UUID value.
fn is_uuid_text(text: &str) -> bool {
    const HEX_DIGIT: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = (byte as u8).is_ascii_hexdigit();
            byte += 1;
        }
        table
    };
    let Ok(bytes) = <&[u8; 36]>::try_from(text.as_bytes()) else {
        return false;
    };
    let mut valid = true;
    for (index, byte) in bytes.iter().enumerate() {
        valid &= match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => HEX_DIGIT[usize::from(*byte)],
        };
    }
    valid
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
