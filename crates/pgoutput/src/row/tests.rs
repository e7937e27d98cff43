use super::*;
use crate::message::{Column, ReplicaIdentity};

const INT4: u32 = 23;
const TEXT: u32 = 25;

fn typed(type_id: u32, text: &str) -> Result<TypedValue, DecodeError> {
    typed_value(type_id, -1, text.as_bytes(), &TypeNames::new())
}

fn ok(type_id: u32, text: &str) -> TypedValue {
    typed(type_id, text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
}

fn users_relation() -> Relation {
    let column = |name: &str, type_id, is_key| Column {
        is_key,
        name: name.into(),
        type_id,
        type_modifier: -1,
    };
    Relation {
        id: 16_384,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", INT4, true),
            column("name", TEXT, false),
            column("bio", TEXT, false),
        ],
    }
}

fn text(value: &str) -> TupleValue {
    TupleValue::Text(value.as_bytes().to_vec())
}

#[test]
fn new_tuple_maps_every_value_kind() {
    let tuple = TupleData(vec![
        text("7"),
        TupleValue::Null,
        TupleValue::UnchangedToast,
    ]);
    assert_eq!(
        decode_tuple(&users_relation(), &tuple, false, &TypeNames::new()).unwrap(),
        vec![
            ("id".into(), ColumnValue::Value(TypedValue::Int(7))),
            ("name".into(), ColumnValue::Null),
            ("bio".into(), ColumnValue::UnchangedToast),
        ]
    );
}

#[test]
fn key_tuple_marks_non_key_nulls_as_not_in_replica_identity() {
    let tuple = TupleData(vec![text("7"), TupleValue::Null, TupleValue::Null]);
    assert_eq!(
        decode_tuple(&users_relation(), &tuple, true, &TypeNames::new()).unwrap(),
        vec![
            ("id".into(), ColumnValue::Value(TypedValue::Int(7))),
            ("name".into(), ColumnValue::NotInReplicaIdentity),
            ("bio".into(), ColumnValue::NotInReplicaIdentity),
        ]
    );
}

#[test]
fn key_tuple_keeps_real_null_in_key_column_and_unchanged_toast() {
    let mut relation = users_relation();
    relation.columns[1].is_key = true;
    let tuple = TupleData(vec![
        text("7"),
        TupleValue::Null,
        TupleValue::UnchangedToast,
    ]);
    assert_eq!(
        decode_tuple(&relation, &tuple, true, &TypeNames::new()).unwrap(),
        vec![
            ("id".into(), ColumnValue::Value(TypedValue::Int(7))),
            ("name".into(), ColumnValue::Null),
            ("bio".into(), ColumnValue::UnchangedToast),
        ]
    );
}

#[test]
fn binary_values_are_kept_as_hex() {
    let tuple = TupleData(vec![
        TupleValue::Binary(vec![0, 0, 0, 7]),
        text("a"),
        TupleValue::Null,
    ]);
    let row = decode_tuple(&users_relation(), &tuple, false, &TypeNames::new()).unwrap();
    assert_eq!(
        row[0].1,
        ColumnValue::Value(TypedValue::Other {
            type_name: "int4".into(),
            text: "\\x00000007".into()
        })
    );
}

#[test]
fn column_count_mismatch_is_an_error() {
    let tuple = TupleData(vec![text("7")]);
    let error = decode_tuple(&users_relation(), &tuple, false, &TypeNames::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "tuple has 1 columns but relation 16384 (public.users) has 3"
    );
}

#[test]
fn bad_value_error_names_the_column() {
    let tuple = TupleData(vec![text("seven"), TupleValue::Null, TupleValue::Null]);
    let error = decode_tuple(&users_relation(), &tuple, false, &TypeNames::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "column id of public.users: invalid int4 text value \"seven\": not a 32-bit integer"
    );
}

/// Decodes `tuple` into the row `warm` was decoded into (whose string values are then reused)
/// and checks that the result, or the error, is the fresh decoding's.
fn assert_reused_decodes_as_fresh(
    relation: &Relation,
    warm: &TupleData,
    tuple: &TupleData,
    key_only: bool,
) {
    let types = TypeNames::new();
    let mut row = Vec::new();
    decode_tuple_into(relation, warm, false, &types, &mut row).unwrap();
    let fresh = decode_tuple(relation, tuple, key_only, &types);
    let reused = decode_tuple_into(relation, tuple, key_only, &types, &mut row);
    match (fresh, reused) {
        (Ok(fresh), Ok(())) => assert_eq!(fresh, row, "{tuple:?}"),
        (Err(fresh), Err(reused)) => {
            assert_eq!(fresh.to_string(), reused.to_string(), "{tuple:?}")
        }
        (fresh, reused) => panic!("{tuple:?}: {fresh:?} but reused {reused:?}"),
    }
}

#[test]
fn a_tuple_decoded_into_a_previous_rows_strings_decodes_as_a_fresh_one() {
    let mut varchar_key = users_relation();
    varchar_key.columns[1].type_id = 1043;
    varchar_key.columns[1].is_key = true;
    let cases = [
        (TupleData(vec![text("7"), text("Trần"), text("")]), false),
        (
            TupleData(vec![text("7"), text("x"), TupleValue::Null]),
            true,
        ),
        (
            TupleData(vec![
                text("7"),
                TupleValue::Null,
                TupleValue::UnchangedToast,
            ]),
            true,
        ),
        (
            TupleData(vec![
                TupleValue::Binary(vec![7]),
                TupleValue::Binary(b"a".to_vec()),
                text("b"),
            ]),
            false,
        ),
        // Invalid UTF-8 in a text column, and in an integer one: the same errors.
        (
            TupleData(vec![
                text("7"),
                TupleValue::Text(vec![0xff, b'a']),
                text("b"),
            ]),
            false,
        ),
        (
            TupleData(vec![TupleValue::Text(vec![0xc3]), text("a"), text("b")]),
            false,
        ),
        (TupleData(vec![text("seven"), text("a"), text("b")]), false),
        (TupleData(vec![text("7")]), false),
    ];
    let warm = TupleData(vec![text("1"), text("warm"), text("warm")]);
    for relation in [users_relation(), varchar_key] {
        for (tuple, key_only) in &cases {
            assert_reused_decodes_as_fresh(&relation, &warm, tuple, *key_only);
        }
    }
    // The other string kinds whose buffer is reused: uuid (checked) and jsonb.
    let mut strings = users_relation();
    strings.columns[1].type_id = 2950;
    strings.columns[2].type_id = 3802;
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    for (external_id, preferences) in [
        (text(uuid), text("{\"seat\": \"aisle\"}")),
        (text(&uuid.to_uppercase()), text("")),
        (text("0f8fad5b-d9cb-469f-a165-70867728950"), text("{}")),
        (text("0f8fad5b+d9cb-469f-a165-70867728950e"), text("{}")),
        (text("0f8fad5b-d9cb-469f-a165-70867728950g"), text("{}")),
        (text(uuid), TupleValue::Text(vec![b'{', 0xff])),
        (TupleValue::Null, TupleValue::UnchangedToast),
    ] {
        let tuple = TupleData(vec![text("7"), external_id, preferences]);
        let warm = TupleData(vec![text("1"), text(uuid), text("{}")]);
        assert_reused_decodes_as_fresh(&strings, &warm, &tuple, false);
    }
    let tuple = TupleData(vec![text("7"), TupleValue::Text(vec![0xff]), text("b")]);
    let mut row = Vec::new();
    decode_tuple_into(&users_relation(), &warm, false, &TypeNames::new(), &mut row).unwrap();
    let error = decode_tuple_into(
        &users_relation(),
        &tuple,
        false,
        &TypeNames::new(),
        &mut row,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("column name of public.users") && error.contains("UTF-8"),
        "{error}"
    );
}

#[test]
fn rows_decoded_into_one_buffer_decode_as_fresh_ones() {
    const UUID: u32 = 2950;
    const JSONB: u32 = 3802;
    let mut wide = users_relation();
    wide.columns[1].type_id = 1043;
    wide.columns[1].is_key = true;
    wide.columns.push(Column {
        is_key: false,
        name: "external_id".into(),
        type_id: UUID,
        type_modifier: -1,
    });
    wide.columns.push(Column {
        is_key: false,
        name: "preferences".into(),
        type_id: JSONB,
        type_modifier: -1,
    });
    let narrow = users_relation();
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let rows = [
        (
            &wide,
            vec![text("1"), text("Trần"), text("a"), text(uuid), text("{}")],
        ),
        // Shorter and longer strings into the same buffers, a NULL and back.
        (
            &wide,
            vec![
                text("2"),
                text("x"),
                TupleValue::Null,
                text(uuid),
                text("{\"k\": [1, 2]}"),
            ],
        ),
        (
            &wide,
            vec![
                text("3"),
                text("a much longer name than before"),
                text("b"),
                TupleValue::Null,
                text("[]"),
            ],
        ),
        (
            &wide,
            vec![
                text("4"),
                text(""),
                text("c"),
                text(&uuid.to_uppercase()),
                text("1"),
            ],
        ),
        // Invalid values where a buffer could be reused: the same errors as a fresh decode.
        (
            &wide,
            vec![
                text("5"),
                text("y"),
                text("d"),
                text("not-a-uuid"),
                text("{}"),
            ],
        ),
        (
            &wide,
            vec![
                text("6"),
                TupleValue::Text(vec![0xff]),
                text("d"),
                text(uuid),
                text("{}"),
            ],
        ),
        (
            &wide,
            vec![text("seven"), text("z"), text("e"), text(uuid), text("{}")],
        ),
        (
            &wide,
            vec![
                text("8"),
                text("z"),
                text("e"),
                text(uuid),
                TupleValue::UnchangedToast,
            ],
        ),
        // Another relation's row, then the first relation's again.
        (&narrow, vec![text("9"), text("n"), text("o")]),
        (
            &wide,
            vec![text("10"), text("p"), text("q"), text(uuid), text("{}")],
        ),
        (&wide, vec![text("11"), text("p")]),
    ];
    let types = TypeNames::new();
    for key_only in [false, true] {
        let mut row = Vec::new();
        for (relation, values) in &rows {
            let tuple = TupleData(values.clone());
            let fresh = decode_tuple(relation, &tuple, key_only, &types);
            let into = decode_tuple_into(relation, &tuple, key_only, &types, &mut row);
            match (fresh, into) {
                (Ok(fresh), Ok(())) => assert_eq!(fresh, row, "{tuple:?}"),
                (Err(fresh), Err(into)) => {
                    assert_eq!(fresh.to_string(), into.to_string(), "{tuple:?}")
                }
                (fresh, into) => panic!("{tuple:?}: {fresh:?} but into {into:?}"),
            }
        }
    }
    // A row whose names are other `Arc`s (a filtered or hand-built row) is rebuilt.
    let mut row = vec![
        ("id".into(), ColumnValue::Null),
        (
            "name".into(),
            ColumnValue::Value(TypedValue::Text("stale".into())),
        ),
        ("bio".into(), ColumnValue::Null),
    ];
    let tuple = TupleData(vec![text("1"), text("fresh"), text("b")]);
    decode_tuple_into(&narrow, &tuple, false, &types, &mut row).unwrap();
    assert_eq!(row, decode_tuple(&narrow, &tuple, false, &types).unwrap());
    assert!(std::sync::Arc::ptr_eq(&row[1].0, &narrow.columns[1].name));
}

#[test]
fn a_value_cloned_into_a_slot_equals_its_clone_whatever_the_slot_held() {
    let values = [
        ColumnValue::Null,
        ColumnValue::UnchangedToast,
        ColumnValue::Value(TypedValue::Text("a longer text than the others".into())),
        ColumnValue::Value(TypedValue::Text(String::new())),
        ColumnValue::Value(TypedValue::Json("{}".into())),
        ColumnValue::Value(TypedValue::Uuid(
            "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
        )),
        ColumnValue::Value(TypedValue::Long(7)),
    ];
    for held in &values {
        for value in &values {
            let mut slot = held.clone();
            clone_into_reusing(value, &mut slot);
            assert_eq!(&slot, value, "{value:?} into {held:?}");
        }
    }
}

#[test]
fn type_names_builtin_learned_and_unknown() {
    let mut types = TypeNames::new();
    assert_eq!(types.name(1184), "timestamptz");
    assert_eq!(types.name(70_000), "oid:70000");
    types.learn(70_000, "public", "mood");
    types.learn(70_001, "", "int8");
    types.learn(70_002, "pg_catalog", "numeric");
    assert_eq!(types.name(70_000), "public.mood");
    assert_eq!(types.name(70_001), "int8");
    assert_eq!(types.name(70_002), "numeric");
}

#[test]
fn learned_domain_decodes_like_its_base_type() {
    let mut types = TypeNames::new();
    types.learn(70_001, "", "int8");
    types.learn(70_000, "public", "mood");
    assert_eq!(
        typed_value(70_001, -1, b"-5", &types).unwrap(),
        TypedValue::Long(-5)
    );
    assert_eq!(
        typed_value(70_000, -1, b"happy", &types).unwrap(),
        TypedValue::Other {
            type_name: "public.mood".into(),
            text: "happy".into()
        }
    );
    assert_eq!(
        typed_value(99_999, -1, b"x", &types).unwrap(),
        TypedValue::Other {
            type_name: "oid:99999".into(),
            text: "x".into()
        }
    );
}

#[test]
fn booleans() {
    assert_eq!(ok(16, "t"), TypedValue::Bool(true));
    assert_eq!(ok(16, "f"), TypedValue::Bool(false));
    assert!(typed(16, "yes").is_err());
}

#[test]
fn integers() {
    assert_eq!(ok(21, "-32768"), TypedValue::Int(-32_768));
    assert_eq!(ok(23, "2147483647"), TypedValue::Int(i32::MAX));
    assert_eq!(ok(23, "-2147483648"), TypedValue::Int(i32::MIN));
    assert_eq!(ok(20, "-9223372036854775808"), TypedValue::Long(i64::MIN));
    assert_eq!(ok(20, "9223372036854775807"), TypedValue::Long(i64::MAX));
    assert_eq!(ok(26, "4294967295"), TypedValue::Long(4_294_967_295));
    for (type_id, bad) in [
        (23, "2147483648"),
        (23, ""),
        (23, "1.0"),
        (20, "1e3"),
        (26, "-1"),
    ] {
        assert!(typed(type_id, bad).is_err(), "{type_id} {bad:?}");
    }
}

#[test]
fn floats_including_special_values() {
    assert_eq!(ok(700, "1.5"), TypedValue::Float(1.5));
    assert_eq!(ok(700, "3.4028235e+38"), TypedValue::Float(f32::MAX));
    assert_eq!(ok(700, "Infinity"), TypedValue::Float(f32::INFINITY));
    assert_eq!(ok(700, "-Infinity"), TypedValue::Float(f32::NEG_INFINITY));
    assert!(matches!(ok(700, "NaN"), TypedValue::Float(value) if value.is_nan()));
    assert_eq!(ok(701, "0.1"), TypedValue::Double(0.1));
    assert_eq!(ok(701, "-0"), TypedValue::Double(-0.0));
    assert_eq!(ok(701, "1e-05"), TypedValue::Double(1e-5));
    assert_eq!(
        ok(701, "1.7976931348623157e+308"),
        TypedValue::Double(f64::MAX)
    );
    assert_eq!(ok(701, "Infinity"), TypedValue::Double(f64::INFINITY));
    assert_eq!(ok(701, "-Infinity"), TypedValue::Double(f64::NEG_INFINITY));
    assert!(matches!(ok(701, "NaN"), TypedValue::Double(value) if value.is_nan()));
    for bad in ["inf", "nan", "infinity", "", "1.2.3", "0x10", " 1"] {
        assert!(typed(701, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn text_like_types_keep_text() {
    for type_id in [25, 1043, 1042, 19, 18] {
        assert_eq!(ok(type_id, "héllo  "), TypedValue::Text("héllo  ".into()));
    }
    assert_eq!(ok(25, ""), TypedValue::Text(String::new()));
    assert!(typed_value(25, -1, b"\xff", &TypeNames::new()).is_err());
}

#[test]
fn bytea_hex_and_escape() {
    assert_eq!(ok(17, "\\x"), TypedValue::Bytes(Vec::new()));
    assert_eq!(
        ok(17, "\\xdeadBEEF00"),
        TypedValue::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF, 0])
    );
    assert_eq!(
        ok(17, "ab\\\\c\\000\\377"),
        TypedValue::Bytes(vec![b'a', b'b', b'\\', b'c', 0, 255])
    );
    for bad in ["\\xabc", "\\xzz", "\\8", "a\\", "\\400"] {
        assert!(typed(17, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn numeric_keeps_exact_text() {
    let huge = format!("-{}.{}", "9".repeat(131_072), "1".repeat(16_383));
    for exact in [
        "0",
        "-12.50",
        "0.000000000000000000001",
        "NaN",
        "Infinity",
        "-Infinity",
        &huge,
    ] {
        assert_eq!(ok(1700, exact), TypedValue::Numeric(exact.to_owned()));
    }
    for bad in ["", "-", "1.", ".5", "1e5", "+1", "nan", "1 ", "1.2.3"] {
        assert!(typed(1700, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn json_and_uuid() {
    assert_eq!(
        ok(114, "{\"a\": [1, 2]}"),
        TypedValue::Json("{\"a\": [1, 2]}".into())
    );
    assert_eq!(ok(3802, "null"), TypedValue::Json("null".into()));
    let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert_eq!(ok(2950, uuid), TypedValue::Uuid(uuid.into()));
    for bad in [
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99+9c0b-4ef8-bb6d-6bb9bd380a11",
    ] {
        assert!(typed(2950, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn dates_including_infinity_and_bc() {
    assert_eq!(ok(1082, "1970-01-01"), TypedValue::Date(0));
    assert_eq!(ok(1082, "1969-07-20"), TypedValue::Date(-165));
    assert_eq!(ok(1082, "1900-01-01"), TypedValue::Date(-25_567));
    assert_eq!(ok(1082, "0001-12-31 BC"), TypedValue::Date(-719_163));
    assert_eq!(ok(1082, "4714-11-24 BC"), TypedValue::Date(-2_440_588));
    assert_eq!(
        ok(1082, "infinity"),
        TypedValue::Infinity {
            type_name: "date",
            negative: false
        }
    );
    assert_eq!(
        ok(1082, "-infinity"),
        TypedValue::Infinity {
            type_name: "date",
            negative: true
        }
    );
    for bad in [
        "2023-02-29",
        "Infinity",
        "1970-01-01 00:00:00",
        "9999999-01-01",
    ] {
        assert!(typed(1082, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn timestamps_without_time_zone() {
    assert_eq!(ok(1114, "1970-01-01 00:00:00"), TypedValue::Timestamp(0));
    assert_eq!(
        ok(1114, "2024-03-01 12:34:56.789"),
        TypedValue::Timestamp(1_709_296_496_789_000)
    );
    assert_eq!(
        ok(1114, "1969-12-31 23:59:59.999999"),
        TypedValue::Timestamp(-1)
    );
    assert_eq!(
        ok(1114, "infinity"),
        TypedValue::Infinity {
            type_name: "timestamp",
            negative: false
        }
    );
    assert_eq!(
        ok(1114, "-infinity"),
        TypedValue::Infinity {
            type_name: "timestamp",
            negative: true
        }
    );
    // Real instants at the 64-bit ends stay timestamps; PostgreSQL's last years do not fit.
    assert_eq!(
        ok(1114, "294247-01-10 04:00:54.775807"),
        TypedValue::Timestamp(i64::MAX)
    );
    assert_eq!(
        ok(1114, "294276-12-31 23:59:59.999999"),
        TypedValue::WideTimestamp {
            type_name: "timestamp",
            epoch_seconds: 9_224_318_015_999,
            micros_of_second: 999_999
        }
    );
    assert!(typed(1114, "2024-03-01 12:34:56+00").is_err());
}

#[test]
fn timestamps_with_time_zone() {
    let expected = TypedValue::TimestampTz(1_709_296_496_789_000);
    assert_eq!(ok(1184, "2024-03-01 12:34:56.789+00"), expected);
    assert_eq!(ok(1184, "2024-03-01 18:04:56.789+05:30"), expected);
    assert_eq!(ok(1184, "2024-03-01 08:34:56.789-04"), expected);
    assert_eq!(
        ok(1184, "1900-01-01 00:00:00+00"),
        TypedValue::TimestampTz(-25_567 * 86_400_000_000)
    );
    assert_eq!(
        ok(1184, "0001-01-01 00:00:00+00 BC"),
        TypedValue::TimestampTz(-719_528 * 86_400_000_000)
    );
    assert_eq!(
        ok(1184, "infinity"),
        TypedValue::Infinity {
            type_name: "timestamptz",
            negative: false
        }
    );
    assert_eq!(
        ok(1184, "-infinity"),
        TypedValue::Infinity {
            type_name: "timestamptz",
            negative: true
        }
    );
    assert_eq!(
        ok(1184, "294276-12-31 23:59:59.999999+00"),
        TypedValue::WideTimestamp {
            type_name: "timestamptz",
            epoch_seconds: 9_224_318_015_999,
            micros_of_second: 999_999
        }
    );
    for bad in ["2024-03-01 12:34:56", "2024-03-01 12:34:56+00 AD"] {
        assert!(typed(1184, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn other_types_are_verbatim() {
    for (type_id, type_name, text) in [
        (869, "inet", "10.0.0.1/8"),
        (650, "cidr", "10.0.0.0/8"),
        (829, "macaddr", "08:00:2b:01:02:03"),
        (718, "circle", "<(1,2),3>"),
    ] {
        assert_eq!(
            ok(type_id, text),
            TypedValue::Other {
                type_name: type_name.into(),
                text: text.into()
            }
        );
    }
}

#[test]
fn times_of_day_with_and_without_zone() {
    assert_eq!(ok(1083, "12:00:00"), TypedValue::Time(43_200_000_000));
    assert_eq!(ok(1083, "24:00:00"), TypedValue::Time(86_400_000_000));
    assert_eq!(
        ok(1266, "00:00:00.000001-03:30"),
        TypedValue::TimeTz {
            micros: 1,
            offset_seconds: -12_600
        }
    );
    assert!(typed(1083, "12:00:00+00").is_err());
    assert!(typed(1266, "12:00:00").is_err());
}

#[test]
fn intervals_keep_their_three_fields() {
    assert_eq!(
        ok(1186, "P1Y2M3DT4H5M6.5S"),
        TypedValue::Interval {
            months: 14,
            days: 3,
            micros: 14_706_500_000
        }
    );
    assert_eq!(
        ok(1186, "PT-1S"),
        TypedValue::Interval {
            months: 0,
            days: 0,
            micros: -1_000_000
        }
    );
    // The postgres style is not what the connector asks for: a server that
    // ignored the session setting is reported, not guessed at.
    assert!(typed(1186, "1 day 02:03:04").is_err());
}

fn array(type_name: &str, lower_bound: i32, elements: Vec<Option<TypedValue>>) -> TypedValue {
    TypedValue::Array {
        type_name: type_name.into(),
        lower_bound,
        elements,
    }
}

#[test]
fn one_dimensional_arrays_have_typed_elements_and_nulls() {
    assert_eq!(
        ok(1007, "{1,-2,NULL}"),
        array(
            "_int4",
            1,
            vec![Some(TypedValue::Int(1)), Some(TypedValue::Int(-2)), None]
        )
    );
    assert_eq!(ok(1007, "{}"), array("_int4", 1, vec![]));
    assert_eq!(
        ok(1231, "{NaN,-Infinity,1.50}"),
        array(
            "_numeric",
            1,
            vec![
                Some(TypedValue::Numeric("NaN".into())),
                Some(TypedValue::Numeric("-Infinity".into())),
                Some(TypedValue::Numeric("1.50".into())),
            ]
        )
    );
    assert_eq!(
        ok(1185, "{\"2024-03-01 12:34:56.789+00\",infinity}"),
        array(
            "_timestamptz",
            1,
            vec![
                Some(TypedValue::TimestampTz(1_709_296_496_789_000)),
                Some(TypedValue::Infinity {
                    type_name: "timestamptz",
                    negative: false
                }),
            ]
        )
    );
    assert_eq!(
        ok(1001, "{\"\\\\x00ff\",NULL}"),
        array(
            "_bytea",
            1,
            vec![Some(TypedValue::Bytes(vec![0, 255])), None]
        )
    );
}

#[test]
fn quoted_text_elements_are_unescaped() {
    let text = r#"{"a,b","say \"hi\"","back\\slash","",NULL,"NULL","{x}"," pad ",héllo,"\é"}"#;
    let strings = |values: &[Option<&str>]| {
        values
            .iter()
            .map(|value| value.map(|text| TypedValue::Text(text.into())))
            .collect()
    };
    assert_eq!(
        ok(1009, text),
        array(
            "_text",
            1,
            strings(&[
                Some("a,b"),
                Some("say \"hi\""),
                Some("back\\slash"),
                Some(""),
                None,
                Some("NULL"),
                Some("{x}"),
                Some(" pad "),
                Some("héllo"),
                Some("é"),
            ])
        )
    );
}

#[test]
fn multi_dimensional_arrays_nest_by_level() {
    let row = |a: Option<i64>, b: Option<i64>| {
        Some(array(
            "_int8",
            1,
            vec![a.map(TypedValue::Long), b.map(TypedValue::Long)],
        ))
    };
    assert_eq!(
        ok(1016, "{{1,NULL},{NULL,4}}"),
        array("_int8", 1, vec![row(Some(1), None), row(None, Some(4))])
    );
    let deep = ok(1016, "{{{1}},{{2}}}");
    let TypedValue::Array { elements, .. } = &deep else {
        panic!("{deep:?}")
    };
    assert_eq!(elements.len(), 2);
    assert_eq!(
        elements[1],
        Some(array(
            "_int8",
            1,
            vec![Some(array("_int8", 1, vec![Some(TypedValue::Long(2))]))]
        ))
    );
}

#[test]
fn dimension_decoration_gives_the_lower_bounds() {
    assert_eq!(
        ok(1007, "[0:1]={7,8}"),
        array(
            "_int4",
            0,
            vec![Some(TypedValue::Int(7)), Some(TypedValue::Int(8))]
        )
    );
    assert_eq!(
        ok(1007, "[-1:0][3:3]={{1},{2}}"),
        array(
            "_int4",
            -1,
            vec![
                Some(array("_int4", 3, vec![Some(TypedValue::Int(1))])),
                Some(array("_int4", 3, vec![Some(TypedValue::Int(2))])),
            ]
        )
    );
}

#[test]
fn box_arrays_use_semicolons() {
    assert_eq!(
        ok(1020, "{(1,1),(0,0);(2,2),(1,1)}"),
        array(
            "_box",
            1,
            vec![
                Some(TypedValue::Other {
                    type_name: "box".into(),
                    text: "(1,1),(0,0)".into()
                }),
                Some(TypedValue::Other {
                    type_name: "box".into(),
                    text: "(2,2),(1,1)".into()
                }),
            ]
        )
    );
}

#[test]
fn malformed_arrays_are_errors() {
    for bad in [
        "",
        "1,2",
        "{1,2",
        "{1,,2}",
        "{1,2}x",
        "{{1,2},3}",
        "{1,{2}}",
        "{{1,2},{3}}",
        "{{}}",
        "{\"a}",
        "{a\"b}",
        "{seven}",
        "[1:3]={1,2}",
        "[1:2][1:1]={1,2}",
        "[1:2={1,2}",
        "[1:2]{1,2}",
        "[99999999999:1]={1}",
        "{{{{{{{1}}}}}}}",
        "[1:1][1:1][1:1][1:1][1:1][1:1][1:1]={{{{{{{1}}}}}}}",
    ] {
        assert!(typed(1007, bad).is_err(), "{bad:?}");
    }
    let error = typed(1007, "{1,x}").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid int4 text value \"x\": not a 32-bit integer"
    );
    assert!(typed(1009, "{\"unterminated\\\"}").is_err());
}

#[test]
fn user_arrays_type_their_elements_by_name_and_fall_back_to_text() {
    let mut types = TypeNames::new();
    types.learn(70_000, "public", "mood");
    types.learn(70_001, "public", "_mood");
    types.learn(70_002, "public", "_not_an_array");
    types.learn(70_003, "", "_int4");
    assert_eq!(
        typed_value(70_001, -1, b"{happy,NULL}", &types).unwrap(),
        array(
            "public._mood",
            1,
            vec![
                Some(TypedValue::Other {
                    type_name: "public.mood".into(),
                    text: "happy".into()
                }),
                None
            ]
        )
    );
    assert_eq!(
        typed_value(70_002, -1, b"(1,2)", &types).unwrap(),
        TypedValue::Other {
            type_name: "public._not_an_array".into(),
            text: "(1,2)".into()
        }
    );
    // A domain over int4[] is described by its base type and decodes as one.
    assert_eq!(
        typed_value(70_003, -1, b"{5}", &types).unwrap(),
        array("_int4", 1, vec![Some(TypedValue::Int(5))])
    );
}

#[test]
fn declared_numerics_keep_precision_and_scale() {
    let numeric_10_2 = (10 << 16 | 2) + 4;
    let types = TypeNames::new();
    assert_eq!(
        typed_value(1700, numeric_10_2, b"-12.50", &types).unwrap(),
        TypedValue::Decimal {
            text: "-12.50".into(),
            precision: 10,
            scale: 2
        }
    );
    // Special values and undeclared or unusual scales stay exact text.
    for (modifier, text) in [
        (numeric_10_2, "NaN"),
        (numeric_10_2, "-Infinity"),
        (-1, "1.5"),
        ((3 << 16 | (0x7ff & -2i32)) + 4, "1200"),
        ((2 << 16 | 5) + 4, "0.00012"),
    ] {
        assert_eq!(
            typed_value(1700, modifier, text.as_bytes(), &types).unwrap(),
            TypedValue::Numeric(text.into()),
            "{text}"
        );
    }
    // An array's elements share the column's modifier.
    assert_eq!(
        typed_value(1231, numeric_10_2, b"{1.00,NULL}", &types).unwrap(),
        TypedValue::Array {
            type_name: "_numeric".into(),
            lower_bound: 1,
            elements: vec![
                Some(TypedValue::Decimal {
                    text: "1.00".into(),
                    precision: 10,
                    scale: 2
                }),
                None
            ]
        }
    );
}

#[test]
fn money_bits_and_points_are_structured() {
    assert_eq!(ok(790, "-$1,234.56"), TypedValue::Money(-123_456));
    assert_eq!(
        ok(1560, "101"),
        TypedValue::Bits {
            length: 3,
            bytes: vec![0b1010_0000]
        }
    );
    assert_eq!(
        ok(1562, ""),
        TypedValue::Bits {
            length: 0,
            bytes: vec![]
        }
    );
    assert_eq!(ok(600, "(1.5,-2)"), TypedValue::Point { x: 1.5, y: -2.0 });
    for (type_id, bad) in [(790, "free"), (1560, "12"), (600, "1,2")] {
        assert!(typed(type_id, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ranges_have_typed_bounds() {
    use crate::row::{RangeBound, RangeBounds};
    let range = |type_name: &str, lower, upper| TypedValue::Range {
        type_name: type_name.into(),
        bounds: Some(Box::new(RangeBounds { lower, upper })),
    };
    let bound = |value, inclusive| Some(RangeBound { value, inclusive });
    assert_eq!(
        ok(3904, "[1,10)"),
        range(
            "int4range",
            bound(TypedValue::Int(1), true),
            bound(TypedValue::Int(10), false)
        )
    );
    assert_eq!(
        ok(3904, "empty"),
        TypedValue::Range {
            type_name: "int4range".into(),
            bounds: None
        }
    );
    assert_eq!(
        ok(3908, "[\"2020-01-01 00:00:00\",infinity]"),
        range(
            "tsrange",
            bound(TypedValue::Timestamp(1_577_836_800_000_000), true),
            bound(
                TypedValue::Infinity {
                    type_name: "timestamp",
                    negative: false
                },
                true
            )
        )
    );
    assert_eq!(
        ok(3906, "(,2.25]"),
        range(
            "numrange",
            None,
            bound(TypedValue::Numeric("2.25".into()), true)
        )
    );
    let mut types = TypeNames::new();
    types.learn(70_010, "public", "floatrange");
    types.learn_range("public.floatrange", "float8");
    assert_eq!(
        typed_value(70_010, -1, b"[1.5,2)", &types).unwrap(),
        range(
            "public.floatrange",
            bound(TypedValue::Double(1.5), true),
            bound(TypedValue::Double(2.0), false)
        )
    );
    for bad in ["[1,x)", "[1,2", "1,2"] {
        assert!(typed(3904, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn enums_hstore_and_geometry_by_learned_name() {
    let mut types = TypeNames::new();
    types.learn(70_000, "public", "mood");
    types.learn(70_001, "public", "_mood");
    types.learn(70_002, "public", "hstore");
    types.learn(70_003, "public", "geometry");
    types.learn(70_004, "public", "geography");
    types.learn_enum("public.mood");
    assert_eq!(
        typed_value(70_000, -1, b"happy", &types).unwrap(),
        TypedValue::Enum {
            type_name: "public.mood".into(),
            label: "happy".into()
        }
    );
    assert_eq!(
        typed_value(70_001, -1, b"{sad,NULL}", &types).unwrap(),
        TypedValue::Array {
            type_name: "public._mood".into(),
            lower_bound: 1,
            elements: vec![
                Some(TypedValue::Enum {
                    type_name: "public.mood".into(),
                    label: "sad".into()
                }),
                None
            ]
        }
    );
    assert_eq!(
        typed_value(70_002, -1, br#""a"=>"1", "b"=>NULL"#, &types).unwrap(),
        TypedValue::Hstore(vec![("a".into(), Some("1".into())), ("b".into(), None)])
    );
    assert_eq!(
        typed_value(
            70_004,
            -1,
            b"0101000020E6100000000000000000F03F0000000000000040",
            &types
        )
        .unwrap(),
        TypedValue::Geometry {
            type_name: "geography".into(),
            wkb: vec![
                1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40
            ],
            srid: Some(4326)
        }
    );
    assert!(typed_value(70_003, -1, b"POINT(1 2)", &types).is_err());
}

proptest::proptest! {
    /// The table-driven check agrees with reading the UUID character by character, for valid
    /// UUIDs in both cases and for ones with one character replaced.
    #[test]
    fn a_uuid_check_agrees_with_reading_it_character_by_character(
        digits in proptest::array::uniform32(proptest::sample::select(
            b"0123456789abcdefABCDEF".to_vec()
        )),
        replaced in proptest::option::of((
            0usize..36,
            proptest::sample::select(b"0123456789afAFgG-x /:@`".to_vec()),
        )),
    ) {
        let mut digits = digits.into_iter();
        let mut text: Vec<u8> = (0..36)
            .map(|index| match index {
                8 | 13 | 18 | 23 => b'-',
                _ => digits.next().expect("32 digits"),
            })
            .collect();
        if let Some((index, byte)) = replaced {
            text[index] = byte;
        }
        let text = String::from_utf8(text).expect("ASCII");
        let expected = text.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        });
        proptest::prop_assert_eq!(is_uuid_text(&text), expected, "{}", text);
    }
}

#[test]
fn a_uuid_is_hex_groups_of_8_4_4_4_12() {
    assert!(is_uuid_text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert!(is_uuid_text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"));
    for wrong in [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc999c0b-4ef8-bb6d-6bb9bd380a11-",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380é1",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1}",
        "",
    ] {
        assert!(!is_uuid_text(wrong), "{wrong}");
    }
    assert!(matches!(
        typed(2950, "a0eebc999c0b4ef8bb6d6bb9bd380a11"),
        Err(DecodeError::InvalidValue { .. })
    ));
}

#[test]
fn a_row_pool_gives_a_row_of_the_relation_and_keeps_no_huge_string() {
    let users = users_relation();
    let types = TypeNames::new();
    let tuple = TupleData(vec![text("1"), text("a"), text("b")]);
    let mut pool = RowPool::default();
    let mut users_row = Vec::new();
    decode_tuple_into(&users, &tuple, false, &types, &mut users_row).unwrap();
    let other_row = vec![("x".into(), ColumnValue::Null)];
    pool.give(users_row.clone());
    pool.give(other_row.clone());
    assert_eq!(
        pool.take(&users),
        users_row,
        "the row that lines up, not the last one"
    );
    assert_eq!(pool.take(&users), other_row, "then any");
    assert!(pool.take(&users).is_empty(), "then a new one");
    let huge = String::with_capacity(crate::message::KEPT_BUFFER_BYTES + 1);
    users_row[1].1 = ColumnValue::Value(TypedValue::Json(huge));
    pool.give(users_row);
    assert!(
        pool.take_any().is_empty(),
        "a row holding a huge string is dropped"
    );
}

#[test]
fn a_selection_copied_into_a_previous_one_equals_a_fresh_copy() {
    let value = |text: &str| ColumnValue::Value(TypedValue::Text(text.into()));
    let row: Vec<(std::sync::Arc<str>, ColumnValue)> = vec![
        ("a".into(), value("1")),
        ("b".into(), ColumnValue::Null),
        ("c".into(), value("3")),
    ];
    for held in [
        Vec::new(),
        vec![("x".into(), value("stale"))],
        row.clone(),
        vec![row[0].clone(), row[2].clone(), ("y".into(), value("more"))],
    ] {
        for pick in 0..8_usize {
            let mut selected = held.clone();
            copy_selected_into(&row, |index| pick & (1 << index) != 0, &mut selected);
            let fresh: Vec<_> = (0..3)
                .filter(|index| pick & (1 << index) != 0)
                .map(|index| row[index].clone())
                .collect();
            assert_eq!(selected, fresh, "pick {pick:b} into {held:?}");
        }
    }
}

#[test]
fn a_builtin_oid_has_the_kind_its_name_has() {
    // Every OID pg_type.dat could give a built-in type: the OID table's kinds and the name
    // table must agree, or a column would decode differently from its array's elements.
    let mut kinds = 0;
    for oid in 0..16_384 {
        let Some((name, kind)) = builtin_type(oid) else {
            continue;
        };
        assert_eq!(kind, Scalar::named(name), "OID {oid} ({name})");
        kinds += usize::from(kind.is_some());
    }
    assert_eq!(
        kinds, 27,
        "built-in types with a conversion of their own: a new one needs this count raised"
    );
}
