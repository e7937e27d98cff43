//! Avro encoding of a CDCChange record in the Confluent wire format, as the connector does it for
//! every change (`RegisteredSchema::encode` on the value `record::to_avro` builds). The value is
//! built here with the same shape as the connector's: `to_avro` lives in the connector's binary
//! crate, which a bench cannot link.
//!
//! `cargo bench -p bench --bench cdc_change_encode`

use std::collections::HashMap;
use std::hint::black_box;

use apache_avro::types::Value;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use platform::avro::RegisteredSchema;

/// A column-value union branch (indexes of CDCChange.avsc).
fn branch(index: u32, value: Value) -> Value {
    Value::Union(index, Box::new(value))
}

fn wrapped(index: u32, field: &str, value: Value) -> Value {
    branch(index, Value::Record(vec![(field.to_string(), value)]))
}

/// A `public.bookings` row as the connector types it.
fn booking(status: &str) -> Value {
    let columns: Vec<(&str, Value)> = vec![
        ("booking_id", branch(3, Value::Long(4_200_042))),
        (
            "booking_ref",
            wrapped(
                10,
                "value",
                Value::String("0f0f6215-19aa-45df-8fb8-eeb389f7620c".into()),
            ),
        ),
        ("user_id", branch(3, Value::Long(1_337))),
        ("destination", branch(6, Value::String("Đà Nẵng".into()))),
        ("hotel_name", branch(6, Value::String("Bench Hotel".into()))),
        ("check_in_date", wrapped(11, "days", Value::Date(20_270))),
        ("check_out_date", wrapped(11, "days", Value::Date(20_273))),
        ("guests", branch(2, Value::Int(2))),
        (
            "total_amount",
            wrapped(8, "value", Value::String("4200000.00".into())),
        ),
        ("currency", branch(6, Value::String("VND".into()))),
        (
            "status",
            branch(
                15,
                Value::Record(vec![
                    (
                        "type_name".into(),
                        Value::String("public.booking_status".into()),
                    ),
                    ("text".into(), Value::String(status.into())),
                ]),
            ),
        ),
        (
            "details",
            wrapped(
                9,
                "value",
                Value::String(r#"{"seat": "aisle", "breakfast": true}"#.into()),
            ),
        ),
        (
            "created_at",
            wrapped(13, "micros", Value::TimestampMicros(1_751_328_000_000_000)),
        ),
        (
            "updated_at",
            wrapped(13, "micros", Value::TimestampMicros(1_751_328_123_456_789)),
        ),
    ];
    Value::Map(
        columns
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
    )
}

/// An UPDATE with old and new rows, the largest common record.
fn update_record() -> Value {
    Value::Record(vec![
        (
            "change_id".into(),
            Value::String("0000000001959CD8-00000003".into()),
        ),
        ("table_name".into(), Value::String("public.bookings".into())),
        ("operation".into(), Value::Enum(1, "UPDATE".into())),
        (
            "primary_key".into(),
            Value::Map(HashMap::from([(
                "booking_id".to_string(),
                branch(3, Value::Long(4_200_042)),
            )])),
        ),
        (
            "before_values".into(),
            Value::Union(1, Box::new(booking("pending"))),
        ),
        (
            "after_values".into(),
            Value::Union(1, Box::new(booking("confirmed"))),
        ),
        (
            "timestamp".into(),
            Value::TimestampMillis(1_751_328_123_457),
        ),
        ("source_database".into(), Value::String("travel".into())),
        (
            "source".into(),
            Value::Record(vec![
                ("commit_lsn".into(), Value::Long(0x1959CD8)),
                ("event_lsn".into(), Value::Long(0x1959C00)),
                ("transaction_id".into(), Value::Long(739)),
                ("sequence".into(), Value::Int(3)),
                (
                    "commit_timestamp".into(),
                    Value::TimestampMicros(1_751_328_123_456_789),
                ),
                ("slot_name".into(), Value::String("cdc_connector".into())),
            ]),
        ),
    ])
}

/// An INSERT (no old row).
fn insert_record() -> Value {
    let Value::Record(mut fields) = update_record() else {
        unreachable!("update_record builds a record")
    };
    fields[2].1 = Value::Enum(0, "INSERT".into());
    fields[4].1 = Value::Union(0, Box::new(Value::Null));
    Value::Record(fields)
}

fn encode(c: &mut Criterion) {
    let schema = RegisteredSchema {
        id: 1,
        schema: platform::schemas::parse(platform::schemas::CDC_CHANGE)
            .expect("CDCChange.avsc parses"),
    };
    let mut group = c.benchmark_group("cdc_change_encode");
    group.throughput(Throughput::Elements(1));
    for (name, record) in [
        ("insert", insert_record()),
        ("update_with_old_row", update_record()),
    ] {
        let bytes = schema
            .encode(record.clone())
            .expect("the record fits the schema");
        println!(
            "cdc_change_encode/{name}: {} bytes on the wire",
            bytes.len()
        );
        group.bench_function(name, |b| {
            b.iter_batched(
                || record.clone(),
                |value| black_box(schema.encode(value).expect("the record fits the schema")),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
