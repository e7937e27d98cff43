//! The record against the published schema: every value kind encodes and decodes back, the
//! layout is read by name, the schema stays backward compatible, keys and ids are stable.

use std::sync::Arc;

use platform::avro::RegisteredSchema;
use serde_json::json;

use super::*;
use crate::changes::Position;

fn every_kind_of_value() -> Columns {
    let typed = |name: &str, value: TypedValue| {
        (std::sync::Arc::<str>::from(name), ColumnValue::Value(value))
    };
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
        table_schema: None,
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
            .encode(to_avro(&event(operation), &layout(), "travel", "slot", 5).unwrap())
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
    let current: serde_json::Value = serde_json::from_str(platform::schemas::CDC_CHANGE).unwrap();
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
                "com.travel.cdc.Array",
                "com.travel.cdc.EnumValue",
                "com.travel.cdc.Money",
                "com.travel.cdc.Hstore",
                "com.travel.cdc.Point",
                "com.travel.cdc.Bits",
                "com.travel.cdc.Geometry",
                "com.travel.cdc.Infinity",
                "com.travel.cdc.WideTimestamp",
                "com.travel.cdc.VariableDecimal",
                "com.travel.cdc.Range"
            ]
        );
        union.truncate(16);
    }
    let first = apache_avro::Schema::parse_str(&first.to_string()).unwrap();
    let current = platform::schemas::parse(platform::schemas::CDC_CHANGE).unwrap();
    assert_eq!(
        apache_avro::schema_compatibility::SchemaCompatibility::can_read(&first, &current).unwrap(),
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
    .encode(to_avro(&old_event, &layout(), "travel", "slot", 5).unwrap())
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
