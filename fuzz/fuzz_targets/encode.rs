//! From column text to the Avro record, for every column type: each input is split into up to
//! eight column values (a selector byte picks the type and the declared `numeric` modifier, the
//! rest is the text), decoded as the connector decodes them, encoded in every
//! `--decimal-handling` mode, and the bytes must decode with apache-avro against the published
//! schema with nothing left over. A value the decoder or the encoder refuses is fine (an error
//! naming it); a panic, or a record the schema cannot read, is a bug.
#![no_main]

use std::sync::{Arc, OnceLock};

use cdc_connector::{
    changes::{ChangeEvent, Operation, Position},
    record::{
        self, ChangeLayout,
        decimal::{DecimalHandling, schema_with_decimals},
    },
};
use libfuzzer_sys::fuzz_target;
use pgoutput::row::{ColumnValue, TypeNames, typed_value};

/// The declared `numeric(p,s)` modifiers the selector can pick (besides none).
const DECLARED: [(u16, u16); 3] = [(10, 2), (38, 9), (1, 0)];

/// Built-in types with a dedicated conversion, arrays, ranges, and learned user types.
const OIDS: &[u32] = &[
    16, 17, 18, 20, 21, 23, 25, 26, 114, 600, 700, 701, 790, 1007, 1009, 1082, 1083, 1114,
    1184, 1185, 1186, 1231, 1266, 1560, 1562, 1700, 2950, 3802, 3904, 3906, 3908, 3910, 3912,
    3926, 70_000, 70_001, 70_002, 70_003, 70_004,
];

fn schema() -> &'static apache_avro::Schema {
    static SCHEMA: OnceLock<apache_avro::Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = schema_with_decimals(
            platform::schemas::CDC_CHANGE,
            &DECLARED.into_iter().collect(),
        )
        .expect("the schema grows");
        platform::schemas::parse(&text).expect("the grown schema parses")
    })
}

fn types() -> TypeNames {
    let mut types = TypeNames::new();
    types.learn(70_000, "public", "mood");
    types.learn_enum("public.mood");
    types.learn(70_001, "public", "hstore");
    types.learn(70_002, "public", "geometry");
    types.learn(70_003, "public", "floatrange");
    types.learn_range("public.floatrange", "float8");
    types.learn(70_004, "public", "_mood");
    types
}

fuzz_target!(|data: &[u8]| {
    let types = types();
    let mut after = Vec::new();
    for (index, chunk) in data.split(|&byte| byte == 0xff).take(8).enumerate() {
        let Some((&selector, text)) = chunk.split_first() else {
            continue;
        };
        let oid = OIDS[usize::from(selector) % OIDS.len()];
        let modifier = match usize::from(selector / 64) {
            0 => -1,
            k => {
                let (precision, scale) = DECLARED[k - 1];
                ((i32::from(precision) << 16) | i32::from(scale)) + 4
            }
        };
        if let Ok(value) = typed_value(oid, modifier, text, &types) {
            after.push((Arc::from(format!("c{index}")), ColumnValue::Value(value)));
        }
    }
    let event = ChangeEvent {
        table: Arc::from("public.fuzz"),
        operation: Operation::Insert,
        primary_key: after.first().cloned().into_iter().collect(),
        before: None,
        after: Some(after),
        position: Position {
            commit_lsn: 1,
            event_lsn: 1,
            xid: 1,
            sequence: 0,
            commit_time_unix_micros: 0,
        },
        table_schema: None,
    };
    let key = record::kafka_key(&event);
    for mode in [
        DecimalHandling::Text,
        DecimalHandling::Precise,
        DecimalHandling::String,
        DecimalHandling::Double,
    ] {
        let layout = ChangeLayout::from_schema(schema())
            .expect("the layout of the grown schema")
            .with_decimal_handling(mode);
        let mut out = Vec::new();
        // A declared decimal whose text does not fit its declaration (PostgreSQL never sends
        // one) is an error naming the column, not a record.
        if record::encode_change(&event, &key, &layout, 1, "db", "slot", 0, &mut out).is_err() {
            continue;
        }
        let mut body = &out[5..];
        apache_avro::from_avro_datum(schema(), &mut body, None)
            .expect("what the encoder writes decodes with the schema");
        assert!(body.is_empty(), "{} bytes left over", body.len());
    }
});
