//! `--decimal-handling precise|string|double` end to end, read by an independent client
//! (Python confluent-kafka's AvroDeserializer with the schemas from our registry, which gives
//! fastavro's own decoding of the Avro decimal logical type). For each mode, every numeric
//! value of every row, on every path that turns a row into a record (snapshot READ, streamed
//! INSERT, signalled re-snapshot READ), decodes in Python to the type the mode promises and to
//! exactly the value PostgreSQL returns for that row (`col::text`, queried, never copied from
//! the insert): `precise` gives `decimal.Decimal` with the declared scale for `numeric(p,s)`
//! (through the `Decimal_p_s` branches the connector adds to the registered schema),
//! `VariableDecimal` with the exact value and scale for an unconstrained numeric, and the
//! `Numeric` text for NaN and ±Infinity; `string` gives the exact text; `double` the nearest
//! double (NaN and ±Infinity included). Extremes of numeric(38,9), a 51-digit unconstrained
//! value, negative values, zero and NULLs are among the rows.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use e2e::{cdc_records, json_row, python_reader_lines, run_sql};
use local_stack::{Stack, StackOptions};
use serde_json::{Value, json};

const TABLE: &str = "public.prices";

const SETUP: &str = "CREATE TABLE prices (id integer PRIMARY KEY, fixed numeric(10,2), \
    wide numeric(38,9), free numeric, tiny numeric(1,0)); \
    ALTER PUBLICATION cdc_publication ADD TABLE prices;";

/// The numeric columns and whether each declares its precision and scale.
const COLUMNS: [(&str, bool); 4] = [
    ("fixed", true),
    ("wide", true),
    ("free", false),
    ("tiny", true),
];

/// Values of (fixed, wide, free, tiny), as SQL literals. Each row is inserted twice: before the
/// connector starts (id = index + 1, snapshot) and while it streams (id = index + 101).
const ROWS: &[[&str; 4]] = &[
    ["'12.50'", "'0'", "'0'", "'0'"],
    [
        "'-0.01'",
        "'99999999999999999999999999999.999999999'",
        "'123456789012345678901234567890.000000000000000000001'",
        "'9'",
    ],
    [
        "'99999999.99'",
        "'-99999999999999999999999999999.999999999'",
        "'-42'",
        "'-9'",
    ],
    ["'0'", "'0.000000001'", "'-123.4500'", "'-1'"],
    [
        "'-99999999.99'",
        "'-0.000000001'",
        "'-0.000000000000000000001'",
        "NULL",
    ],
    ["'NaN'", "'NaN'", "'NaN'", "'NaN'"],
    ["NULL", "NULL", "'Infinity'", "NULL"],
    ["'1'", "NULL", "'-Infinity'", "'5'"],
    ["NULL", "NULL", "NULL", "NULL"],
    ["NULL", "'1e20'", "'1e30'", "NULL"],
    [
        "'0.5'",
        "'-12345678901234567890.123456789'",
        "'0.00'",
        "'1'",
    ],
    [
        "NULL",
        "NULL",
        "'-98765432109876543210987654321098765432109876543210.5'",
        "NULL",
    ],
];

fn snapshot_ids() -> Vec<i64> {
    (1..=ROWS.len() as i64).collect()
}

fn stream_ids() -> Vec<i64> {
    (101..=100 + ROWS.len() as i64).collect()
}

async fn insert_rows(stack: &Stack, first_id: i64) {
    let values: Vec<String> = ROWS
        .iter()
        .zip(first_id..)
        .map(|(row, id)| format!("({id}, {})", row.join(", ")))
        .collect();
    run_sql(
        stack,
        &format!("INSERT INTO prices VALUES {}", values.join(", ")),
    )
    .await;
}

/// One record as the Python client decoded it (a line of `read_decimals.py`).
struct Decoded {
    id: i64,
    columns: serde_json::Map<String, Value>,
}

/// Runs `read_decimals.py` for `count` records; returns its lines for `public.prices`, grouped
/// by path: snapshot READs (the earliest commit LSN of READs), INSERTs, re-snapshot READs.
async fn python_records(stack: &Stack, count: usize) -> BTreeMap<&'static str, Vec<Decoded>> {
    let lines: Vec<Value> = python_reader_lines(stack, "read_decimals.py", count, 90)
        .await
        .into_iter()
        .filter(|line| line["table"] == TABLE)
        .collect();
    let snapshot_lsn = lines
        .iter()
        .filter(|l| l["operation"] == "READ")
        .filter_map(|l| l["commit_lsn"].as_i64())
        .min()
        .expect("READ records");
    let mut paths: BTreeMap<&'static str, Vec<Decoded>> = BTreeMap::new();
    for line in lines {
        let path = match (line["operation"].as_str(), line["commit_lsn"].as_i64()) {
            (Some("READ"), Some(lsn)) if lsn == snapshot_lsn => "snapshot",
            (Some("READ"), _) => "re-snapshot",
            (Some("INSERT"), _) => "stream",
            other => panic!("unexpected record {other:?}: {line}"),
        };
        paths.entry(path).or_default().push(Decoded {
            id: line["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("an id: {line}")),
            columns: line["columns"].as_object().expect("columns").clone(),
        });
    }
    paths
}

/// A double as Python's repr or PostgreSQL's text writes it (`nan`, `inf`, `NaN`, `Infinity`
/// parse too).
fn double(text: &str) -> f64 {
    text.parse()
        .unwrap_or_else(|e| panic!("not a double: {text}: {e}"))
}

/// Checks one decoded column against PostgreSQL's text for it (None for NULL).
fn assert_column(mode: &str, at: &str, decoded: &Value, postgres: Option<&str>, declared: bool) {
    let python_type = decoded["python_type"].as_str().unwrap_or_default();
    let value = &decoded["value"];
    let Some(text) = postgres else {
        assert_eq!(python_type, "NoneType", "{at}: NULL: {decoded}");
        assert_eq!(value, &Value::Null, "{at}: NULL: {decoded}");
        return;
    };
    let special = matches!(text, "NaN" | "Infinity" | "-Infinity");
    match mode {
        "precise" if special => {
            assert_eq!(python_type, "dict", "{at}: {text}: {decoded}");
            assert_eq!(value, &json!({"value": text}), "{at}: the Numeric text");
        }
        "precise" if declared => {
            assert_eq!(python_type, "Decimal", "{at}: {text}: {decoded}");
            // format(v, 'f') is str(v) without exponent notation (str gives 0E-9 for
            // 0.000000000): equal text means equal value and scale, trailing zeros included.
            assert_eq!(decoded["plain"], text, "{at}: {decoded}");
            if !value.as_str().unwrap_or_default().contains('E') {
                assert_eq!(value, text, "{at}: str(Decimal)");
            }
        }
        "precise" => {
            assert_eq!(python_type, "dict", "{at}: {text}: {decoded}");
            let fields: BTreeSet<&str> = value
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                fields,
                BTreeSet::from(["scale", "value"]),
                "{at}: a VariableDecimal: {decoded}"
            );
            let fraction_digits = text.split_once('.').map_or(0, |(_, f)| f.len());
            assert_eq!(
                value["scale"],
                json!(fraction_digits),
                "{at}: scale of {text}"
            );
            assert_eq!(decoded["decimal"], text, "{at}: {decoded}");
        }
        "string" => {
            assert_eq!(python_type, "str", "{at}: {text}: {decoded}");
            assert_eq!(value, text, "{at}");
        }
        "double" => {
            assert_eq!(python_type, "float", "{at}: {text}: {decoded}");
            let actual = double(value.as_str().expect("repr of a float"));
            let expected = double(text);
            if expected.is_nan() {
                assert_eq!(decoded["is_nan"], true, "{at}: {decoded}");
            } else {
                assert_eq!(decoded["is_nan"], false, "{at}: {decoded}");
                assert_eq!(
                    actual.to_bits(),
                    expected.to_bits(),
                    "{at}: {decoded} vs PostgreSQL {text}"
                );
            }
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Every record of one path, one per expected row, each column compared with PostgreSQL.
async fn assert_path_matches_postgres(
    stack: &Stack,
    mode: &str,
    path: &str,
    records: &[Decoded],
    ids: &[i64],
) {
    let seen: Vec<i64> = {
        let mut seen: Vec<i64> = records.iter().map(|r| r.id).collect();
        seen.sort_unstable();
        seen
    };
    assert_eq!(seen, ids, "{mode} {path}: one record per row");
    let expected_columns: BTreeSet<&str> = COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .chain(["id"])
        .collect();
    for record in records {
        let id = record.id;
        let columns: BTreeSet<&str> = record.columns.keys().map(String::as_str).collect();
        assert_eq!(columns, expected_columns, "{mode} {path}: row {id}");
        assert_eq!(
            record.columns["id"],
            json!({"python_type": "int", "value": id}),
            "{mode} {path}: row {id}"
        );
        let postgres = json_row(
            stack,
            &format!(
                "SELECT json_build_object('fixed', fixed::text, 'wide', wide::text, \
                 'free', free::text, 'tiny', tiny::text) FROM prices WHERE id = {id}"
            ),
        )
        .await;
        for (column, declared) in COLUMNS {
            assert_column(
                mode,
                &format!("{mode} {path}: row {id}, {column}"),
                &record.columns[column],
                postgres[column].as_str(),
                declared,
            );
        }
    }
}

/// Spot checks that the comparison is not vacuous: the decoded values of a few rows, written
/// out (rows 1, 2 and 7 of the snapshot).
fn spot_checks(mode: &str, snapshot: &[Decoded]) {
    let row = |id: i64| {
        &snapshot
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("row {id}"))
            .columns
    };
    match mode {
        "precise" => {
            assert_eq!(row(1)["fixed"]["value"], "12.50");
            assert_eq!(row(1)["wide"]["plain"], "0.000000000");
            assert_eq!(row(2)["fixed"]["value"], "-0.01");
            assert_eq!(row(2)["wide"]["python_type"], "Decimal");
            assert_eq!(
                row(2)["free"]["decimal"],
                "123456789012345678901234567890.000000000000000000001"
            );
            assert_eq!(row(2)["free"]["value"]["scale"], 21);
            assert_eq!(row(7)["free"]["value"], json!({"value": "Infinity"}));
        }
        "string" => {
            assert_eq!(
                row(1)["fixed"],
                json!({"python_type": "str", "value": "12.50"})
            );
            assert_eq!(row(7)["free"]["value"], "Infinity");
        }
        "double" => {
            assert_eq!(row(1)["fixed"]["value"], "12.5");
            assert_eq!(row(6)["free"]["is_nan"], true);
            assert_eq!(row(7)["free"]["value"], "inf");
            assert_eq!(row(8)["free"]["value"], "-inf");
        }
        _ => {}
    }
}

/// Snapshot, stream and re-snapshot of `prices` with the connector run in `mode`, each record
/// decoded by Python and compared with PostgreSQL.
async fn decimals_round_trip(mode: &str) {
    let mut options = StackOptions::for_tests(&format!("decimals-{mode}"));
    options.start_connector = false;
    options.connector_extra_args = vec!["--decimal-handling".into(), mode.into()];
    let mut stack = Stack::start(options).await.expect("start the stack");
    run_sql(&stack, SETUP).await;
    assert!(
        stack
            .psql("SELECT 'Infinity'::numeric(10,2)")
            .await
            .is_err(),
        "PostgreSQL rejects infinity where precision is declared, so only `free` holds it"
    );
    insert_rows(&stack, snapshot_ids()[0]).await;
    stack.start_connector().await.expect("start the connector");
    insert_rows(&stack, stream_ids()[0]).await;
    run_sql(
        &stack,
        r#"SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{"type": "execute-snapshot", "tables": ["public.prices"]}')"#,
    )
    .await;

    // Snapshot READs, INSERTs, re-snapshot READs of every row.
    let expected = ROWS.len() + ROWS.len() + 2 * ROWS.len();
    let records = cdc_records(&stack, Duration::from_secs(120), |records| {
        records.iter().filter(|r| r.table() == TABLE).count() >= expected
    })
    .await;
    assert_eq!(
        records.iter().filter(|r| r.table() == TABLE).count(),
        expected
    );

    let paths = python_records(&stack, records.len()).await;
    let all_ids: Vec<i64> = snapshot_ids().into_iter().chain(stream_ids()).collect();
    for (path, ids) in [
        ("snapshot", snapshot_ids()),
        ("stream", stream_ids()),
        ("re-snapshot", all_ids),
    ] {
        let decoded = paths
            .get(path)
            .unwrap_or_else(|| panic!("{mode}: no {path} records"));
        assert_path_matches_postgres(&stack, mode, path, decoded, &ids).await;
    }
    spot_checks(mode, &paths["snapshot"]);
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn precise_gives_python_decimals_with_the_declared_scale() {
    decimals_round_trip("precise").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn string_gives_the_exact_text() {
    decimals_round_trip("string").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn double_gives_the_nearest_double() {
    decimals_round_trip("double").await;
}
