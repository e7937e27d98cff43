//! A change as a `CDCChange` Avro record (schemas/CDCChange.avsc) and its Kafka key.

use std::collections::HashMap;

use apache_avro::{Schema, types::Value};
use pgoutput::row::{ColumnValue, TypedValue};

use crate::changes::{ChangeEvent, Columns, Operation};

/// Where each value goes in the `CDCChange` schema: union branch indexes and enum symbol
/// positions, looked up by name in the schema the connector registered, so the schema file stays
/// the single source of truth (a reordered or extended union cannot silently shift values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLayout {
    null: u32,
    boolean: u32,
    int: u32,
    long: u32,
    float: u32,
    double: u32,
    string: u32,
    bytes: u32,
    numeric: u32,
    json: u32,
    uuid: u32,
    date: u32,
    timestamp: u32,
    timestamp_tz: u32,
    unavailable: u32,
    other: u32,
    time: u32,
    time_tz: u32,
    interval: u32,
    array: u32,
    /// `before_values`/`after_values`: the null and the map branch.
    absent_columns: u32,
    present_columns: u32,
    /// Positions of `Operation` symbols, in the order of [`Operation`]'s variants.
    operations: [(u32, &'static str); 5],
    unchanged_toast: u32,
    not_in_replica_identity: u32,
}

impl ChangeLayout {
    /// Reads the layout from a parsed `CDCChange` schema; an error names what is missing.
    pub fn from_schema(schema: &Schema) -> Result<Self, String> {
        let Schema::Record(change) = schema else {
            return Err("CDCChange is not a record".into());
        };
        let field = |name: &str| {
            change
                .fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| &f.schema)
                .ok_or_else(|| format!("CDCChange has no field {name}"))
        };
        let Schema::Map(key) = field("primary_key")? else {
            return Err("primary_key is not a map".into());
        };
        let Schema::Union(values) = key.types.as_ref() else {
            return Err("the column value is not a union".into());
        };
        let branch = |name: &str| position(values.variants(), name, "the column-value union");
        let Schema::Union(optional) = field("before_values")? else {
            return Err("before_values is not a union".into());
        };
        let Schema::Enum(operation) = field("operation")? else {
            return Err("operation is not an enum".into());
        };
        let operation_symbol = |symbol: &'static str| {
            symbol_position(&operation.symbols, symbol).map(|index| (index, symbol))
        };
        let reasons = values
            .variants()
            .iter()
            .find_map(|variant| match variant {
                Schema::Record(record) if record.name.name() == "Unavailable" => {
                    record.fields.iter().find_map(|f| match &f.schema {
                        Schema::Enum(reason) if f.name == "reason" => Some(&reason.symbols),
                        _ => None,
                    })
                }
                _ => None,
            })
            .ok_or("the Unavailable record has no reason enum")?;
        Ok(Self {
            null: branch("null")?,
            boolean: branch("boolean")?,
            int: branch("int")?,
            long: branch("long")?,
            float: branch("float")?,
            double: branch("double")?,
            string: branch("string")?,
            bytes: branch("bytes")?,
            numeric: branch("Numeric")?,
            json: branch("Json")?,
            uuid: branch("Uuid")?,
            date: branch("Date")?,
            timestamp: branch("Timestamp")?,
            timestamp_tz: branch("TimestampTz")?,
            unavailable: branch("Unavailable")?,
            other: branch("Other")?,
            time: branch("Time")?,
            time_tz: branch("TimeTz")?,
            interval: branch("Interval")?,
            array: branch("Array")?,
            absent_columns: position(optional.variants(), "null", "before_values")?,
            present_columns: position(optional.variants(), "map", "before_values")?,
            operations: [
                operation_symbol(Operation::Insert.as_str())?,
                operation_symbol(Operation::Update.as_str())?,
                operation_symbol(Operation::Delete.as_str())?,
                operation_symbol(Operation::Truncate.as_str())?,
                operation_symbol(Operation::Read.as_str())?,
            ],
            unchanged_toast: symbol_position(reasons, "UNCHANGED_TOAST")?,
            not_in_replica_identity: symbol_position(reasons, "NOT_IN_REPLICA_IDENTITY")?,
        })
    }

    fn operation(&self, operation: Operation) -> Value {
        let index = match operation {
            Operation::Insert => 0,
            Operation::Update => 1,
            Operation::Delete => 2,
            Operation::Truncate => 3,
            Operation::Read => 4,
        };
        let (position, symbol) = self.operations[index];
        Value::Enum(position, symbol.into())
    }
}

/// The index of the union branch called `name` (a primitive's type name, a record's simple name,
/// or `map`/`array`).
fn position(variants: &[Schema], name: &str, union: &str) -> Result<u32, String> {
    variants
        .iter()
        .position(|variant| branch_name(variant) == Some(name))
        .map(|index| index as u32)
        .ok_or_else(|| format!("{union} has no {name} branch"))
}

fn branch_name(schema: &Schema) -> Option<&str> {
    Some(match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::String => "string",
        Schema::Bytes => "bytes",
        Schema::Map(_) => "map",
        Schema::Array(_) => "array",
        Schema::Record(record) => record.name.name(),
        Schema::Ref { name } => name.name(),
        _ => return None,
    })
}

fn symbol_position(symbols: &[String], symbol: &str) -> Result<u32, String> {
    symbols
        .iter()
        .position(|s| s == symbol)
        .map(|index| index as u32)
        .ok_or_else(|| format!("the enum has no symbol {symbol}"))
}

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

/// `schema.table` plus the key columns as a JSON object: all changes of one row share a key,
/// so Kafka keeps them in order on one partition. Integers and booleans are JSON numbers and
/// booleans, every other value its canonical text (`TypedValue::canonical_text`, documented in
/// the README), so the key of a row never depends on how the code names things.
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
        ColumnValue::Value(typed) => typed.canonical_text().into(),
        _ => serde_json::Value::Null,
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
mod tests {
    use std::sync::Arc;

    use platform::avro::RegisteredSchema;
    use serde_json::json;

    use super::*;
    use crate::changes::Position;

    fn every_kind_of_value() -> Columns {
        let typed = |name: &str, value: TypedValue| (name.to_string(), ColumnValue::Value(value));
        vec![
            ("null".into(), ColumnValue::Null),
            ("toast".into(), ColumnValue::UnchangedToast),
            ("not_key".into(), ColumnValue::NotInReplicaIdentity),
            typed("bool", TypedValue::Bool(true)),
            typed("int", TypedValue::Int(-3)),
            typed("long", TypedValue::Long(1 << 40)),
            typed("float", TypedValue::Float(f32::NAN)),
            typed("double", TypedValue::Double(f64::INFINITY)),
            typed("text", TypedValue::Text("Hà Nội".into())),
            typed("bytes", TypedValue::Bytes(vec![0, 255])),
            typed(
                "numeric",
                TypedValue::Numeric("123456789012345678901234567890.000000001".into()),
            ),
            typed("json", TypedValue::Json("{\"a\": 1}".into())),
            typed(
                "uuid",
                TypedValue::Uuid("0f0f6215-19aa-45df-8fb8-eeb389f7620c".into()),
            ),
            typed("date", TypedValue::Date(i32::MAX)),
            typed("timestamp", TypedValue::Timestamp(-1)),
            typed("timestamptz", TypedValue::TimestampTz(i64::MIN)),
            typed(
                "other",
                TypedValue::Other {
                    type_name: "inet".into(),
                    text: "10.0.0.1".into(),
                },
            ),
            typed("time", TypedValue::Time(86_400_000_000)),
            typed(
                "timetz",
                TypedValue::TimeTz {
                    micros: 1,
                    offset_seconds: -12_600,
                },
            ),
            typed(
                "interval",
                TypedValue::Interval {
                    months: -14,
                    days: 3,
                    micros: i64::MIN,
                },
            ),
            typed("array", matrix()),
        ]
    }

    /// `'[0:1]={{1,NULL},{NULL,"x"}}'::text[]`-like: two levels, NULL elements, a nested element
    /// of another branch.
    fn matrix() -> TypedValue {
        let row = |elements| TypedValue::Array {
            type_name: "_text".into(),
            lower_bound: 1,
            elements,
        };
        TypedValue::Array {
            type_name: "_text".into(),
            lower_bound: 0,
            elements: vec![
                Some(row(vec![Some(TypedValue::Text("1".into())), None])),
                Some(row(vec![
                    None,
                    Some(TypedValue::Interval {
                        months: 1,
                        days: 0,
                        micros: 0,
                    }),
                ])),
            ],
        }
    }

    fn event(operation: Operation) -> ChangeEvent {
        ChangeEvent {
            table: Arc::from("public.bookings"),
            operation,
            primary_key: vec![(
                "booking_id".into(),
                ColumnValue::Value(TypedValue::Long(42)),
            )],
            before: Some(every_kind_of_value()),
            after: Some(every_kind_of_value()),
            position: Position {
                commit_lsn: 0x1959CD8,
                event_lsn: 0x1959C00,
                xid: 739,
                sequence: 3,
                commit_time_unix_micros: 1,
            },
        }
    }

    #[test]
    fn every_value_kind_encodes_against_the_published_schema_and_decodes_back() {
        let schema = RegisteredSchema {
            id: 1,
            schema: platform::schemas::parse(platform::schemas::CDC_CHANGE).unwrap(),
        };
        for operation in [
            Operation::Insert,
            Operation::Update,
            Operation::Delete,
            Operation::Truncate,
            Operation::Read,
        ] {
            let framed = schema
                .encode(to_avro(&event(operation), &layout(), "travel", "slot", 5))
                .unwrap();
            let (_, mut datum) = platform::avro::split_wire_format(&framed).unwrap();
            let decoded = apache_avro::reader::datum::GenericDatumReader::builder(&schema.schema)
                .build()
                .unwrap()
                .read_value(&mut datum)
                .unwrap();
            let json = platform::avro::to_json(&decoded);
            assert_eq!(json["operation"], operation.as_str());
            assert_eq!(
                json["after_values"]["numeric"]["value"],
                "123456789012345678901234567890.000000001"
            );
            assert_eq!(json["after_values"]["toast"]["reason"], "UNCHANGED_TOAST");
            assert_eq!(
                json["after_values"]["not_key"]["reason"],
                "NOT_IN_REPLICA_IDENTITY"
            );
            assert_eq!(json["after_values"]["null"], serde_json::Value::Null);
            assert_eq!(json["after_values"]["date"]["days"], i32::MAX);
            assert_eq!(json["source"]["commit_lsn"], 0x1959CD8);
            for values in [&json["before_values"], &json["after_values"]] {
                assert_eq!(values["time"], json!({"micros": 86_400_000_000_i64}));
                assert_eq!(
                    values["timetz"],
                    json!({"micros": 1, "offset_seconds": -12_600})
                );
                assert_eq!(
                    values["interval"],
                    json!({"months": -14, "days": 3, "micros": i64::MIN})
                );
                assert_eq!(
                    values["array"],
                    json!({"type_name": "_text", "lower_bound": 0, "elements": [
                        {"type_name": "_text", "lower_bound": 1, "elements": ["1", null]},
                        {"type_name": "_text", "lower_bound": 1, "elements": [null, {"months": 1, "days": 0, "micros": 0}]},
                    ]})
                );
            }
            // The branch each value was written as, not just its JSON look.
            let Value::Record(fields) = &decoded else {
                panic!("{decoded:?}")
            };
            let after = fields
                .iter()
                .find(|(name, _)| name == "after_values")
                .map(|(_, value)| value);
            let Some(Value::Union(1, map)) = after else {
                panic!("{after:?}")
            };
            let Value::Map(map) = map.as_ref() else {
                panic!("{map:?}")
            };
            for (column, value) in map {
                let Value::Union(index, _) = value else {
                    panic!("{column}: {value:?}")
                };
                let expected = expected_branch(column);
                assert_eq!(*index, expected, "{column}");
            }
            assert_eq!(map.len(), 21, "one column per branch (Unavailable twice)");
        }
    }

    /// The branch each test column must land in: the schema's order, written out here as the
    /// oracle the by-name layout is checked against.
    fn layout() -> ChangeLayout {
        ChangeLayout::from_schema(&platform::schemas::parse(platform::schemas::CDC_CHANGE).unwrap())
            .unwrap()
    }

    #[test]
    fn the_layout_names_every_branch_and_symbol_of_the_schema() {
        let layout = layout();
        assert_eq!((layout.null, layout.array), (0, 19));
        assert_eq!(layout.operations[4], (4, "READ"));
        assert_eq!((layout.absent_columns, layout.present_columns), (0, 1));
        assert_eq!(
            (layout.unchanged_toast, layout.not_in_replica_identity),
            (0, 1)
        );
        let mut reordered: serde_json::Value =
            serde_json::from_str(platform::schemas::CDC_CHANGE).unwrap();
        let symbols = &mut reordered["fields"][2]["type"]["symbols"];
        symbols.as_array_mut().unwrap().reverse();
        let schema = apache_avro::Schema::parse(&reordered).unwrap();
        let reordered = ChangeLayout::from_schema(&schema).unwrap();
        assert_eq!(reordered.operations[0], (4, "INSERT"), "looked up by name");
    }

    fn expected_branch(column: &str) -> u32 {
        match column {
            "null" => 0,
            "toast" | "not_key" => 14,
            "bool" => 1,
            "int" => 2,
            "long" => 3,
            "float" => 4,
            "double" => 5,
            "text" => 6,
            "bytes" => 7,
            "numeric" => 8,
            "json" => 9,
            "uuid" => 10,
            "date" => 11,
            "timestamp" => 12,
            "timestamptz" => 13,
            "other" => 15,
            "time" => 16,
            "timetz" => 17,
            "interval" => 18,
            "array" => 19,
            other => panic!("no branch for test column {other}"),
        }
    }

    /// The branch names of the first published schema, in order.
    const FIRST_VERSION_BRANCHES: [&str; 16] = [
        "null",
        "boolean",
        "int",
        "long",
        "float",
        "double",
        "string",
        "bytes",
        "com.travel.cdc.Numeric",
        "com.travel.cdc.Json",
        "com.travel.cdc.Uuid",
        "com.travel.cdc.Date",
        "com.travel.cdc.Timestamp",
        "com.travel.cdc.TimestampTz",
        "com.travel.cdc.Unavailable",
        "com.travel.cdc.Other",
    ];

    fn branch_name(branch: &serde_json::Value) -> String {
        match branch {
            serde_json::Value::String(name) => name.clone(),
            record => format!("com.travel.cdc.{}", record["name"].as_str().unwrap()),
        }
    }

    /// The current schema reads everything written with the first version: that version's
    /// branches are an unchanged prefix of the union, and Avro's own resolution rules agree.
    #[test]
    fn the_schema_stays_backward_compatible_with_the_first_version() {
        let current: serde_json::Value =
            serde_json::from_str(platform::schemas::CDC_CHANGE).unwrap();
        let mut first = current.clone();
        let fields = first["fields"].as_array_mut().unwrap();
        for field in fields.iter_mut() {
            let union = match field["name"].as_str().unwrap() {
                "primary_key" => &mut field["type"]["values"],
                "before_values" | "after_values" => &mut field["type"][1]["values"],
                _ => continue,
            };
            let union = union.as_array_mut().unwrap();
            let names: Vec<String> = union.iter().map(branch_name).collect();
            assert_eq!(
                names[..16],
                FIRST_VERSION_BRANCHES,
                "{}: existing branches must not move",
                field["name"]
            );
            assert_eq!(
                names[16..],
                [
                    "com.travel.cdc.Time",
                    "com.travel.cdc.TimeTz",
                    "com.travel.cdc.Interval",
                    "com.travel.cdc.Array"
                ]
            );
            union.truncate(16);
        }
        let first = apache_avro::Schema::parse_str(&first.to_string()).unwrap();
        let current = platform::schemas::parse(platform::schemas::CDC_CHANGE).unwrap();
        assert_eq!(
            apache_avro::schema_compatibility::SchemaCompatibility::can_read(&first, &current)
                .unwrap(),
            apache_avro::schema_compatibility::Compatibility::Full,
            "the new schema reads data written with the first version"
        );
        // And a record written with the first version decodes with the current schema.
        let mut old_event = event(Operation::Update);
        old_event.after = Some(every_kind_of_value().into_iter().take(17).collect());
        old_event.before = None;
        let written = RegisteredSchema {
            id: 1,
            schema: first.clone(),
        }
        .encode(to_avro(&old_event, &layout(), "travel", "slot", 5))
        .unwrap();
        let (_, mut datum) = platform::avro::split_wire_format(&written).unwrap();
        let read = apache_avro::reader::datum::GenericDatumReader::builder(&first)
            .reader_schema(&current)
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap();
        assert_eq!(
            platform::avro::to_json(&read)["after_values"]["numeric"]["value"],
            "123456789012345678901234567890.000000001"
        );
    }

    #[test]
    fn change_id_depends_only_on_the_source_position() {
        let mut replayed = event(Operation::Insert);
        replayed.after = None;
        assert_eq!(change_id(&event(Operation::Insert)), change_id(&replayed));
        assert_eq!(change_id(&replayed), "0000000001959CD8-00000003");
        replayed.position.sequence = 4;
        assert_ne!(change_id(&event(Operation::Insert)), change_id(&replayed));
    }

    #[test]
    fn key_is_table_and_primary_key() {
        assert_eq!(
            kafka_key(&event(Operation::Update)),
            "public.bookings/{\"booking_id\":42}"
        );
    }
}
