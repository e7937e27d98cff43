//! The binary encoder against apache-avro as the oracle: for any change (every value kind,
//! nested arrays, NaN, extreme numbers, any text), what `encode_change` writes decodes with the
//! published schema to exactly the value `to_avro` builds; where no map has two entries (so map
//! order cannot differ) the bytes are identical.

use std::{collections::BTreeMap, sync::Arc};

use apache_avro::{Schema, types::Value};
use pgoutput::row::{ColumnValue, TypedValue};
use proptest::{collection, option, prelude::*};

use super::{
    ChangeLayout,
    decimal::{DecimalHandling, schema_with_decimals},
    encode_change, to_avro,
};
use crate::changes::{ChangeEvent, Columns, Operation, Position};

/// The declared decimals the test schema has branches for (precise mode).
const DECIMALS: [(u16, u16); 3] = [(10, 2), (1, 0), (38, 9)];

fn schema() -> Schema {
    let text = schema_with_decimals(
        platform::schemas::CDC_CHANGE,
        &DECIMALS.into_iter().collect(),
    )
    .unwrap();
    platform::schemas::parse(&text).unwrap()
}

fn decimal_handling() -> impl Strategy<Value = DecimalHandling> {
    prop_oneof![
        Just(DecimalHandling::Text),
        Just(DecimalHandling::Precise),
        Just(DecimalHandling::String),
        Just(DecimalHandling::Double),
    ]
}

/// A value of a `numeric(p,s)` column: at most p - s integer digits and exactly s fraction
/// digits, or a special value.
fn declared_decimal() -> impl Strategy<Value = TypedValue> {
    (
        proptest::sample::select(DECIMALS.to_vec()),
        any::<bool>(),
        any::<u128>(),
        0u8..4,
    )
        .prop_map(|((precision, scale), negative, digits, special)| {
            let text = match special {
                0 => "NaN".to_owned(),
                1 => "-Infinity".to_owned(),
                _ => {
                    let digits = format!(
                        "{:0width$}",
                        digits % 10u128.pow(u32::from(precision)),
                        width = usize::from(precision)
                    );
                    let (integer, fraction) = digits.split_at(usize::from(precision - scale));
                    let integer = integer.trim_start_matches('0');
                    let integer = if integer.is_empty() { "0" } else { integer };
                    let sign = if negative { "-" } else { "" };
                    if scale == 0 {
                        format!("{sign}{integer}")
                    } else {
                        format!("{sign}{integer}.{fraction}")
                    }
                }
            };
            if matches!(text.as_str(), "NaN" | "-Infinity") {
                TypedValue::Numeric(text)
            } else {
                TypedValue::Decimal {
                    text,
                    precision,
                    scale,
                }
            }
        })
}

/// `max_map`: the most entries of an hstore (its map's order is the decoder's to choose).
fn scalar_extras(max_map: usize) -> impl Strategy<Value = TypedValue> {
    prop_oneof![
        declared_decimal(),
        ("[a-z.]{1,10}", ".{0,8}")
            .prop_map(|(type_name, label)| TypedValue::Enum { type_name, label }),
        any::<i64>().prop_map(TypedValue::Money),
        // hstore keys are unique.
        collection::btree_map(".{0,6}", option::of(".{0,6}"), 0..=max_map)
            .prop_map(|pairs| TypedValue::Hstore(pairs.into_iter().collect())),
        (any::<f64>(), any::<f64>()).prop_map(|(x, y)| TypedValue::Point { x, y }),
        collection::vec(any::<u8>(), 0..4).prop_map(|bytes| TypedValue::Bits {
            length: bytes.len() as u32 * 8,
            bytes
        }),
        (
            "geometry|geography",
            collection::vec(any::<u8>(), 0..24),
            option::of(any::<i32>())
        )
            .prop_map(|(type_name, wkb, srid)| TypedValue::Geometry {
                type_name,
                wkb,
                srid
            }),
        (
            proptest::sample::select(vec!["date", "timestamp", "timestamptz"]),
            any::<bool>()
        )
            .prop_map(|(type_name, negative)| TypedValue::Infinity {
                type_name,
                negative
            }),
        (any::<i64>(), 0u32..1_000_000).prop_map(|(epoch_seconds, micros_of_second)| {
            TypedValue::WideTimestamp {
                type_name: "timestamp",
                epoch_seconds,
                micros_of_second,
            }
        }),
    ]
}

fn typed_value(max_map: usize) -> impl Strategy<Value = TypedValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(TypedValue::Bool),
        any::<i32>().prop_map(TypedValue::Int),
        any::<i64>().prop_map(TypedValue::Long),
        any::<f32>().prop_map(TypedValue::Float),
        any::<f64>().prop_map(TypedValue::Double),
        ".{0,12}".prop_map(TypedValue::Text),
        collection::vec(any::<u8>(), 0..12).prop_map(TypedValue::Bytes),
        "-?[0-9]{1,30}(\\.[0-9]{1,10})?|NaN|-?Infinity".prop_map(TypedValue::Numeric),
        ".{0,12}".prop_map(TypedValue::Json),
        "[0-9a-f-]{36}".prop_map(TypedValue::Uuid),
        any::<i32>().prop_map(TypedValue::Date),
        any::<i64>().prop_map(TypedValue::Timestamp),
        any::<i64>().prop_map(TypedValue::TimestampTz),
        (0i64..=86_400_000_000).prop_map(TypedValue::Time),
        (0i64..=86_400_000_000, -57_599i32..=57_599).prop_map(|(micros, offset_seconds)| {
            TypedValue::TimeTz {
                micros,
                offset_seconds,
            }
        }),
        (any::<i32>(), any::<i32>(), any::<i64>()).prop_map(|(months, days, micros)| {
            TypedValue::Interval {
                months,
                days,
                micros,
            }
        }),
        ("[a-z_.]{1,12}", ".{0,12}")
            .prop_map(|(type_name, text)| TypedValue::Other { type_name, text }),
        scalar_extras(max_map),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                "[a-z_]{1,8}",
                any::<i32>(),
                collection::vec(option::of(inner.clone()), 0..4),
            )
                .prop_map(|(type_name, lower_bound, elements)| TypedValue::Array {
                    type_name,
                    lower_bound,
                    elements,
                }),
            (
                "[a-z_]{1,8}",
                option::of((
                    option::of((inner.clone(), any::<bool>())),
                    option::of((inner, any::<bool>()))
                ))
            )
                .prop_map(|(type_name, bounds)| TypedValue::Range {
                    type_name,
                    bounds: bounds.map(|(lower, upper)| {
                        let bound = |b: Option<(TypedValue, bool)>| {
                            b.map(|(value, inclusive)| pgoutput::row::RangeBound {
                                value,
                                inclusive,
                            })
                        };
                        Box::new(pgoutput::row::RangeBounds {
                            lower: bound(lower),
                            upper: bound(upper),
                        })
                    }),
                }),
        ]
    })
}

fn column_value(max_map: usize) -> impl Strategy<Value = ColumnValue> {
    prop_oneof![
        Just(ColumnValue::Null),
        Just(ColumnValue::UnchangedToast),
        Just(ColumnValue::NotInReplicaIdentity),
        typed_value(max_map).prop_map(ColumnValue::Value),
    ]
}

fn columns(max: usize) -> impl Strategy<Value = Columns> {
    collection::btree_map("[a-z_]{1,10}", column_value(max), 0..=max).prop_map(
        |map: BTreeMap<String, ColumnValue>| {
            map.into_iter()
                .map(|(name, value)| (name.into(), value))
                .collect()
        },
    )
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::Insert),
        Just(Operation::Update),
        Just(Operation::Delete),
        Just(Operation::Truncate),
        Just(Operation::Read),
    ]
}

fn change(max_columns: usize) -> impl Strategy<Value = ChangeEvent> {
    (
        "[a-z_]{1,8}\\.[a-z_]{1,12}",
        operation(),
        columns(max_columns),
        option::of(columns(max_columns)),
        option::of(columns(max_columns)),
        (
            // Small positions and sequences as well: the change id pads them with zeros.
            prop_oneof![any::<u64>(), 0u64..0x1_0000_0000],
            any::<u64>(),
            any::<u32>(),
            prop_oneof![any::<u32>(), 0u32..1_000, 99_999_990u32..100_000_010],
            any::<i64>(),
        ),
    )
        .prop_map(
            |(table, operation, primary_key, before, after, position)| ChangeEvent {
                table: Arc::from(table.as_str()),
                operation,
                primary_key,
                before,
                after,
                position: Position {
                    commit_lsn: position.0,
                    event_lsn: position.1,
                    xid: position.2,
                    sequence: position.3,
                    commit_time_unix_micros: position.4,
                },
                table_schema: (position.3 % 2 == 0)
                    .then(|| Arc::from(format!("{table}/00ff").as_str())),
            },
        )
}

/// A rendering in which maps are sorted and floats compared by their bits (NaN included), so
/// two decoded values compare equal exactly when they hold the same data.
fn canonical(value: &Value) -> String {
    match value {
        Value::Map(map) => {
            let sorted: BTreeMap<_, _> = map.iter().map(|(k, v)| (k, canonical(v))).collect();
            format!("Map{sorted:?}")
        }
        Value::Record(fields) => format!(
            "Record[{}]",
            fields
                .iter()
                .map(|(k, v)| format!("{k}={}", canonical(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Union(index, inner) => format!("Union({index},{})", canonical(inner)),
        Value::Array(items) => format!(
            "Array[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Float(f) => format!("Float({:08x})", f.to_bits()),
        Value::Double(f) => format!("Double({:016x})", f.to_bits()),
        // The decoder reads a fixed decimal's bytes as they are; compare their integer value.
        Value::Decimal(decimal) => {
            let bytes: Vec<u8> = decimal.try_into().expect("decimal bytes");
            let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
            let significant: Vec<u8> = bytes
                .iter()
                .copied()
                .skip_while(|&b| b == if negative { 0xff } else { 0 })
                .collect();
            format!("Decimal({negative},{significant:02x?})")
        }
        other => format!("{other:?}"),
    }
}

fn decode(schema: &Schema, framed: &[u8]) -> Value {
    assert_eq!(framed[0], 0, "magic byte");
    assert_eq!(&framed[1..5], &7u32.to_be_bytes(), "schema id");
    let mut body = &framed[5..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|reader| reader.read_value(&mut body))
        .expect("decodes");
    assert!(body.is_empty(), "{} bytes left over", body.len());
    value
}

fn oracle(schema: &Schema, event: &ChangeEvent, layout: &ChangeLayout) -> Vec<u8> {
    let registered = platform::avro::RegisteredSchema {
        id: 7,
        schema: schema.clone(),
    };
    registered
        .encode(to_avro(event, layout, "travel", "slot", 1_751_328_123_457).expect("writable"))
        .expect("the oracle's value fits the schema")
}

fn ours(event: &ChangeEvent, layout: &ChangeLayout) -> Vec<u8> {
    let mut out = Vec::new();
    encode_change(
        event,
        &super::kafka_key(event),
        layout,
        7,
        "travel",
        "slot",
        1_751_328_123_457,
        &mut out,
    )
    .expect("writable");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_binary_encoder_writes_what_apache_avro_would(event in change(4), mode in decimal_handling()) {
        let schema = schema();
        let layout = ChangeLayout::from_schema(&schema).unwrap().with_decimal_handling(mode);
        let expected = decode(&schema, &oracle(&schema, &event, &layout));
        let actual = decode(&schema, &ours(&event, &layout));
        prop_assert_eq!(canonical(&actual), canonical(&expected));
    }

    #[test]
    fn with_single_entry_maps_the_bytes_are_identical(event in change(1), mode in decimal_handling()) {
        let schema = schema();
        let layout = ChangeLayout::from_schema(&schema).unwrap().with_decimal_handling(mode);
        prop_assert_eq!(ours(&event, &layout), oracle(&schema, &event, &layout));
    }
}
