//! The decoder's hot path, per change: a pgoutput Insert or Update message into tuples
//! (`decode_message`), tuples into named typed values (`decode_tuple`, and into the buffers of
//! the change decoded before, as the connector decodes one), and single values
//! (`typed_value`) of the types the travel schema uses.
//!
//! `cargo bench -p pgoutput --bench decode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgoutput::message::{
    Column, LogicalMessage, Relation, ReplicaIdentity, TupleData, TuplePool, decode_message,
    decode_message_reusing,
};
use pgoutput::row::{RowPool, TypeNames, decode_tuple, decode_tuple_into, typed_value};

const BOOKING_STATUS_OID: u32 = 16_390;

/// `public.bookings` as its Relation message describes it: (name, type OID, key).
const COLUMNS: [(&str, u32, bool); 14] = [
    ("booking_id", 20, true),
    ("booking_ref", 2950, false),
    ("user_id", 20, false),
    ("destination", 25, false),
    ("hotel_name", 25, false),
    ("check_in_date", 1082, false),
    ("check_out_date", 1082, false),
    ("guests", 21, false),
    ("total_amount", 1700, false),
    ("currency", 1042, false),
    ("status", BOOKING_STATUS_OID, false),
    ("details", 3802, false),
    ("created_at", 1184, false),
    ("updated_at", 1184, false),
];

/// A row in PostgreSQL's text output, as pgoutput sends it.
const ROW: [&str; 14] = [
    "4200042",
    "0f0f6215-19aa-45df-8fb8-eeb389f7620c",
    "1337",
    "Đà Nẵng",
    "Bench Hotel",
    "2025-07-01",
    "2025-07-04",
    "2",
    "4200000.00",
    "VND",
    "confirmed",
    r#"{"seat": "aisle", "breakfast": true}"#,
    "2025-07-01 00:00:00+00",
    "2025-07-01 00:02:03.456789+00",
];

const RELATION_ID: u32 = 16_400;

fn relation() -> Relation {
    Relation {
        id: RELATION_ID,
        namespace: "public".into(),
        name: "bookings".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: COLUMNS
            .iter()
            .map(|(name, type_id, is_key)| Column {
                is_key: *is_key,
                name: (*name).into(),
                type_id: *type_id,
                type_modifier: -1,
            })
            .collect(),
    }
}

fn types() -> TypeNames {
    let mut types = TypeNames::new();
    types.learn(BOOKING_STATUS_OID, "public", "booking_status");
    types
}

/// TupleData: column count, then per column `t` + length + text, or `n` for a null.
fn tuple(values: &[Option<&str>]) -> Vec<u8> {
    let mut out = (values.len() as u16).to_be_bytes().to_vec();
    for value in values {
        match value {
            Some(text) => {
                out.push(b't');
                out.extend_from_slice(&(text.len() as i32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            None => out.push(b'n'),
        }
    }
    out
}

fn insert_message() -> Vec<u8> {
    let mut out = vec![b'I'];
    out.extend_from_slice(&RELATION_ID.to_be_bytes());
    out.push(b'N');
    out.extend(tuple(&ROW.map(Some)));
    out
}

/// A key-changing UPDATE: old key tuple ('K', non-key columns null), then the new row.
fn update_message() -> Vec<u8> {
    let mut out = vec![b'U'];
    out.extend_from_slice(&RELATION_ID.to_be_bytes());
    out.push(b'K');
    let mut key: Vec<Option<&str>> = vec![None; ROW.len()];
    key[0] = Some("4200041");
    out.extend(tuple(&key));
    out.push(b'N');
    out.extend(tuple(&ROW.map(Some)));
    out
}

/// The new tuple of an Insert message, decoded.
fn new_tuple(insert: &[u8]) -> TupleData {
    let LogicalMessage::Insert { new, .. } = decode_message(insert, false).expect("a valid insert")
    else {
        unreachable!("an I message decodes to an Insert")
    };
    new
}

fn decode(c: &mut Criterion) {
    let relation = relation();
    let types = types();
    let insert = insert_message();
    let update = update_message();
    let insert_tuple = new_tuple(&insert);

    let mut group = c.benchmark_group("pgoutput");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_message/insert", |b| {
        b.iter(|| decode_message(black_box(&insert), false).expect("valid"))
    });
    group.bench_function("decode_message/update_with_key", |b| {
        b.iter(|| decode_message(black_box(&update), false).expect("valid"))
    });
    group.bench_function("decode_tuple/bookings_row", |b| {
        b.iter(|| decode_tuple(&relation, black_box(&insert_tuple), false, &types).expect("valid"))
    });
    group.bench_function("insert_to_typed_row", |b| {
        b.iter(|| {
            decode_tuple(&relation, &new_tuple(black_box(&insert)), false, &types).expect("valid")
        })
    });
    // As the connector decodes a change: into the buffers of the change published before.
    group.bench_function("insert_into_reused_row", |b| {
        let (mut tuples, mut rows) = (TuplePool::default(), RowPool::default());
        b.iter(|| {
            let LogicalMessage::Insert { new, .. } =
                decode_message_reusing(black_box(&insert), false, &mut tuples).expect("valid")
            else {
                unreachable!("an I message decodes to an Insert")
            };
            let mut row = rows.take(&relation);
            decode_tuple_into(&relation, &new, false, &types, &mut row).expect("valid");
            tuples.give(new);
            rows.give(black_box(row));
        })
    });
    group.finish();

    let mut values = c.benchmark_group("typed_value");
    for (name, type_id, text) in [
        ("int8", 20, "4200042"),
        ("text", 25, "Đà Nẵng"),
        ("numeric", 1700, "4200000.00"),
        ("uuid", 2950, "0f0f6215-19aa-45df-8fb8-eeb389f7620c"),
        ("date", 1082, "2025-07-01"),
        ("timestamptz", 1184, "2025-07-01 00:02:03.456789+00"),
        ("jsonb", 3802, r#"{"seat": "aisle", "breakfast": true}"#),
        ("enum", BOOKING_STATUS_OID, "confirmed"),
    ] {
        values.bench_function(name, |b| {
            b.iter(|| typed_value(type_id, -1, black_box(text.as_bytes()), &types).expect("valid"))
        });
    }
    // Random UUIDs, as gen_random_uuid() makes them: their digits defeat branch prediction,
    // which the one UUID above, checked again and again, does not show.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let random_uuids: Vec<String> = (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bits = u128::from(state) << 64 | u128::from(state.rotate_left(29));
            let hex = format!("{bits:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        })
        .collect();
    let mut next = random_uuids.iter().cycle();
    values.bench_function("uuid_random", |b| {
        b.iter(|| {
            let text = next.next().expect("a cycle never ends");
            typed_value(2950, -1, black_box(text.as_bytes()), &types).expect("valid")
        })
    });
    values.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
