//! Avro encoding of a CDCChange record in the Confluent wire format, with the connector's own
//! code, two ways side by side: `binary` is what the session does for every change
//! (`record::encode_change`, straight into bytes); `value_tree` is the apache-avro path it
//! replaced and that stays the test oracle (`record::to_avro` builds a `Value`,
//! `RegisteredSchema::encode` validates and serialises it).
//!
//! `cargo bench -p bench --bench cdc_change_encode`

use std::{hint::black_box, sync::Arc};

use cdc_connector::{
    changes::{ChangeEvent, Columns, Operation, Position},
    record::{self, ChangeLayout},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgoutput::row::{ColumnValue, TypedValue};
use platform::avro::RegisteredSchema;

fn column(name: &str, value: TypedValue) -> (std::sync::Arc<str>, ColumnValue) {
    (name.into(), ColumnValue::Value(value))
}

/// A `public.bookings` row as the connector types it.
fn booking(status: &str) -> Columns {
    vec![
        column("booking_id", TypedValue::Long(4_200_042)),
        column(
            "booking_ref",
            TypedValue::Uuid("0f0f6215-19aa-45df-8fb8-eeb389f7620c".into()),
        ),
        column("user_id", TypedValue::Long(1_337)),
        column("destination", TypedValue::Text("Đà Nẵng".into())),
        column("hotel_name", TypedValue::Text("Bench Hotel".into())),
        column("check_in_date", TypedValue::Date(20_270)),
        column("check_out_date", TypedValue::Date(20_273)),
        column("guests", TypedValue::Int(2)),
        column("total_amount", TypedValue::Numeric("4200000.00".into())),
        column("currency", TypedValue::Text("VND".into())),
        column(
            "status",
            TypedValue::Other {
                type_name: "public.booking_status".into(),
                text: status.into(),
            },
        ),
        column(
            "details",
            TypedValue::Json(r#"{"seat": "aisle", "breakfast": true}"#.into()),
        ),
        column("created_at", TypedValue::TimestampTz(1_751_328_000_000_000)),
        column("updated_at", TypedValue::TimestampTz(1_751_328_123_456_789)),
    ]
}

/// An UPDATE with old and new rows (the largest common record), or an INSERT.
fn change(operation: Operation) -> ChangeEvent {
    ChangeEvent {
        table: Arc::from("public.bookings"),
        operation,
        primary_key: vec![column("booking_id", TypedValue::Long(4_200_042))],
        before: (operation == Operation::Update).then(|| booking("pending")),
        after: Some(booking("confirmed")),
        position: Position {
            commit_lsn: 0x1959CD8,
            event_lsn: 0x1959C00,
            xid: 739,
            sequence: 3,
            commit_time_unix_micros: 1_751_328_123_456_789,
        },
        table_schema: None,
    }
}

fn encode(c: &mut Criterion) {
    let schema = RegisteredSchema {
        id: 1,
        schema: platform::schemas::parse(platform::schemas::CDC_CHANGE)
            .expect("CDCChange.avsc parses"),
    };
    let layout = ChangeLayout::from_schema(&schema.schema).expect("the layout of CDCChange");
    let value_tree = |event: &ChangeEvent| {
        let value = record::to_avro(event, &layout, "travel", "cdc_connector", 1_751_328_123_457)
            .expect("the layout writes every value");
        schema.encode(value).expect("the record fits the schema")
    };
    let binary = |event: &ChangeEvent| {
        let mut out = Vec::with_capacity(512);
        record::encode_change(
            event,
            &record::kafka_key(event),
            &layout,
            schema.id,
            "travel",
            "cdc_connector",
            1_751_328_123_457,
            &mut out,
        )
        .expect("the layout writes every value");
        out
    };
    let mut group = c.benchmark_group("cdc_change_encode");
    group.throughput(Throughput::Elements(1));
    for (name, event) in [
        ("insert", change(Operation::Insert)),
        ("update_with_old_row", change(Operation::Update)),
    ] {
        println!(
            "cdc_change_encode/{name}: {} bytes on the wire",
            binary(&event).len()
        );
        group.bench_function(format!("{name}/binary"), |b| {
            b.iter(|| black_box(binary(black_box(&event))))
        });
        group.bench_function(format!("{name}/value_tree"), |b| {
            b.iter(|| black_box(value_tree(black_box(&event))))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
