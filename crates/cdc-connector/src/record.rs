//! A change as a `CDCChange` Avro record (schemas/CDCChange.avsc) and its Kafka key.

use std::collections::HashMap;

use apache_avro::types::Value;
use pgoutput::row::{ColumnValue, TypedValue};

use crate::changes::{ChangeEvent, Columns, Operation};

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
    // Appended after the first published version: existing indexes never move, so data written
    // with an older schema stays readable (BACKWARD compatible).
    pub const TIME: u32 = 16;
    pub const TIME_TZ: u32 = 17;
    pub const INTERVAL: u32 = 18;
    pub const ARRAY: u32 = 19;
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
        TypedValue::Text(s)
        | TypedValue::Numeric(s)
        | TypedValue::Json(s)
        | TypedValue::Uuid(s) => s.clone(),
        TypedValue::Other { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

pub fn to_avro(
    event: &ChangeEvent,
    source_database: &str,
    slot_name: &str,
    now_unix_millis: i64,
) -> Value {
    let operation = match event.operation {
        Operation::Insert => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Truncate => 3,
        Operation::Read => 4,
    };
    let position = &event.position;
    Value::Record(vec![
        ("change_id".into(), Value::String(change_id(event))),
        ("table_name".into(), Value::String(event.table.to_string())),
        (
            "operation".into(),
            Value::Enum(operation, event.operation.as_str().into()),
        ),
        ("primary_key".into(), columns_map(&event.primary_key)),
        (
            "before_values".into(),
            optional_columns(event.before.as_ref()),
        ),
        (
            "after_values".into(),
            optional_columns(event.after.as_ref()),
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
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
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
            record(vec![(
                "reason",
                Value::Enum(1, "NOT_IN_REPLICA_IDENTITY".into()),
            )]),
        ),
        ColumnValue::Value(typed) => typed_value(typed),
    };
    Value::Union(index, Box::new(inner))
}

fn array_element(element: &Option<TypedValue>) -> Value {
    let (index, inner) = match element {
        None => (branch::NULL, Value::Null),
        Some(typed) => typed_value(typed),
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
        TypedValue::Numeric(s) => (
            branch::NUMERIC,
            record(vec![("value", Value::String(s.clone()))]),
        ),
        TypedValue::Json(s) => (
            branch::JSON,
            record(vec![("value", Value::String(s.clone()))]),
        ),
        TypedValue::Uuid(s) => (
            branch::UUID,
            record(vec![("value", Value::String(s.clone()))]),
        ),
        TypedValue::Date(days) => (branch::DATE, record(vec![("days", Value::Date(*days))])),
        TypedValue::Timestamp(micros) => (
            branch::TIMESTAMP,
            record(vec![("micros", Value::LocalTimestampMicros(*micros))]),
        ),
        TypedValue::TimestampTz(micros) => (
            branch::TIMESTAMP_TZ,
            record(vec![("micros", Value::TimestampMicros(*micros))]),
        ),
        TypedValue::Time(micros) => (
            branch::TIME,
            record(vec![("micros", Value::TimeMicros(*micros))]),
        ),
        TypedValue::TimeTz {
            micros,
            offset_seconds,
        } => (
            branch::TIME_TZ,
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
            branch::INTERVAL,
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
            branch::ARRAY,
            record(vec![
                ("type_name", Value::String(type_name.clone())),
                ("lower_bound", Value::Int(*lower_bound)),
                // Elements use the column-value union itself (a NULL element is its null branch).
                (
                    "elements",
                    Value::Array(elements.iter().map(array_element).collect()),
                ),
            ]),
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
                .encode(to_avro(&event(operation), "travel", "slot", 5))
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

    fn expected_branch(column: &str) -> u32 {
        match column {
            "null" => branch::NULL,
            "toast" | "not_key" => branch::UNAVAILABLE,
            "bool" => branch::BOOLEAN,
            "int" => branch::INT,
            "long" => branch::LONG,
            "float" => branch::FLOAT,
            "double" => branch::DOUBLE,
            "text" => branch::STRING,
            "bytes" => branch::BYTES,
            "numeric" => branch::NUMERIC,
            "json" => branch::JSON,
            "uuid" => branch::UUID,
            "date" => branch::DATE,
            "timestamp" => branch::TIMESTAMP,
            "timestamptz" => branch::TIMESTAMP_TZ,
            "other" => branch::OTHER,
            "time" => branch::TIME,
            "timetz" => branch::TIME_TZ,
            "interval" => branch::INTERVAL,
            "array" => branch::ARRAY,
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
        .encode(to_avro(&old_event, "travel", "slot", 5))
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
