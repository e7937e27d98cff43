//! Every PostgreSQL type the connector knows, with edge values and NULLs, written while the
//! connector streams and read back from `topic_cdc_changes` through the registry. Each value is
//! compared with what PostgreSQL itself returns for the same row, computed by a query (epoch
//! microseconds, text, hex, `array_to_json`, ...), never with a constant copied from the insert.

use std::{collections::BTreeSet, time::Duration};

use e2e::{CdcRecord, cdc_records, stack_without_connector};
use local_stack::Stack;
use serde_json::{Value, json};

const SETUP: &str = r#"
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN short_text AS varchar(20);
CREATE TABLE type_matrix (
    id                 integer PRIMARY KEY,
    c_int2             smallint,
    c_int4             integer,
    c_int8             bigint,
    c_numeric          numeric,
    c_numeric_scaled   numeric(18, 4),
    c_float4           real,
    c_float8           double precision,
    c_bool             boolean,
    c_text             text,
    c_varchar          varchar(10),
    c_char             char(5),
    c_uuid             uuid,
    c_json             json,
    c_jsonb            jsonb,
    c_bytea            bytea,
    c_date             date,
    c_time             time,
    c_timetz           timetz,
    c_timestamp        timestamp,
    c_timestamptz      timestamptz,
    c_interval         interval,
    c_int_array        integer[],
    c_text_array       text[],
    c_int_matrix       integer[][],
    c_numeric_array    numeric[],
    c_tstz_array       timestamptz[],
    c_mood             mood,
    c_mood_array       mood[],
    c_posint           posint,
    c_short_text       short_text,
    c_inet             inet,
    c_cidr             cidr,
    c_macaddr          macaddr,
    c_money            money,
    c_generated        bigint GENERATED ALWAYS AS (c_int8 / 2) STORED,
    c_hstore           hstore,
    c_point            point,
    c_int4range        int4range,
    c_int8range        int8range,
    c_numrange         numrange,
    c_tsrange          tsrange,
    c_tstzrange        tstzrange,
    c_daterange        daterange,
    c_floatrange       floatrange,
    c_bit              bit(5),
    c_varbit           varbit(16)
);
ALTER PUBLICATION cdc_publication ADD TABLE type_matrix;
"#;

/// Rows 1-4 and 6 hold ordinary and edge values; row 5 is NULL in every column.
const INSERTS: &[&str] = &[
    r#"INSERT INTO type_matrix VALUES (1, -32768, 2147483647, -9223372036854775808,
        '123456789012345678901234567890.000000000000000000001', 12.5, 1.1, 0.1, true,
        'Hà Nội — 東京 🚀 "quoted" \ back', 'short', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '{"b": 1,  "a": [1, 2.50]}', '{"b": 1,  "a": [1, 2.50]}', '\x00ff0000'::bytea,
        '2024-02-29', '12:34:56.789', '23:59:59.999999+05:30', '2024-03-01 12:34:56.789',
        '2024-03-01 12:34:56.789+07', '1 year 2 months 3 days 04:05:06.5', '{1,NULL,3}',
        ARRAY['a,b', 'say "hi"', 'back\slash', '', NULL, 'NULL', '{x}', ' pad ', 'Hà Nội'],
        '{{1,NULL},{NULL,4}}', '{1.50,NaN,-Infinity}',
        ARRAY['2024-01-01 00:00:00+00'::timestamptz, 'infinity', NULL],
        'happy', '{sad,NULL,happy}', 7, 'domain text', '192.168.0.1/24', '10.0.0.0/8',
        '08:00:2b:01:02:03', 1234.56)"#,
    r#"INSERT INTO type_matrix VALUES (2, 32767, -2147483648, 9223372036854775807,
        'NaN', -99999999999999.9999, 'Infinity', '-0', false, '', '', '',
        '00000000-0000-0000-0000-000000000000', '"just a string"', 'null', '\x'::bytea,
        '4714-11-24 BC', '24:00:00', '00:00:00-15:59', '-infinity', 'infinity', '-1 day',
        '[0:2]={7,8,9}', '{}', '[0:1][-1:0]={{1,2},{3,4}}', '{}', '{-infinity}', 'sad', '{}',
        2147483647, '', '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', -0.01)"#,
    r#"INSERT INTO type_matrix (id, c_numeric, c_numeric_scaled, c_float4, c_float8, c_date,
        c_time, c_timestamp, c_timestamptz, c_interval, c_int_matrix)
        VALUES (3, 'Infinity', 0, 'NaN', 'Infinity', 'infinity', '00:00:00', 'infinity',
        '-infinity', '-1 second', '{{{1},{2}},{{NULL},{4}}}')"#,
    r#"INSERT INTO type_matrix (id, c_numeric, c_float4, c_float8, c_date, c_timestamp,
        c_timestamptz, c_interval, c_text)
        VALUES (4, '-Infinity', '-Infinity', 'NaN', '-infinity', '0001-01-01 00:00:00 BC',
        '0044-03-15 12:00:00+00 BC',
        '-178956970 years -8 months -2147483648 days'::interval
            + make_interval(secs => -9223372036854.775808),
        repeat('x', 3000))"#,
    "INSERT INTO type_matrix (id) VALUES (5)",
    r#"INSERT INTO type_matrix (id, c_float4, c_float8, c_numeric, c_interval, c_timetz)
        VALUES (6, '-0', '-Infinity', '-0.000000000000000000000000000001',
        '178956970 years 7 months 2147483647 days'::interval
            + make_interval(secs => 9223372036854.775807),
        '12:00:00+00')"#,
    // The structured types, and the last years of timestamps, beyond 64-bit microseconds.
    r#"INSERT INTO type_matrix (id, c_date, c_timestamp, c_timestamptz, c_money, c_hstore,
        c_point, c_int4range, c_int8range, c_numrange, c_tsrange, c_tstzrange, c_daterange,
        c_floatrange, c_bit, c_varbit)
        VALUES (7, '5874897-12-31', '294276-12-31 23:59:59.999999',
        '294276-12-31 23:59:59.999999+00', '92233720368547758.07',
        '"a"=>"1", "b"=>NULL, "c d"=>"x\"y\\z", ""=>""', '(1.5,-2)', '[1,10]',
        '(,9223372036854775807)', '[1.50,2.25]', '["2020-01-01 00:00:00","2020-02-01 00:00:00")',
        '["2020-01-01 00:00:00+07",infinity)', '[2020-01-01,)', '[-0.5,1e300)', B'10101',
        B'1101000000000001')"#,
    r#"INSERT INTO type_matrix (id, c_timestamp, c_money, c_hstore, c_point, c_int4range,
        c_numrange, c_tsrange, c_tstzrange, c_daterange, c_bit, c_varbit)
        VALUES (8, '294247-01-10 04:00:54.775807', '-92233720368547758.08', '', '(NaN,-Infinity)',
        'empty', '(,)', '[-infinity,infinity]', '(,"2020-01-01 00:00:00+00"]', 'empty',
        B'00000', B'')"#,
];
const ROW_IDS: [i64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// How a column's expected value is derived from PostgreSQL.
enum Expect {
    /// A SQL expression over `c` giving the exact JSON the record must hold.
    Json(&'static str),
    /// real: `c::text` parsed as f32, compared bit for bit (NaN, ±Infinity, -0 included).
    Float4,
    /// double precision, likewise as f64.
    Float8,
    /// point: `x` and `y` each compared like [`Expect::Float8`].
    Point,
    /// An array column: `type_name`, then a SQL expression giving the elements as nested JSON
    /// arrays, and how one record element is turned into that JSON.
    Array(&'static str, &'static str, fn(&Value) -> Value),
}

/// A timestamp or timestamptz `value` (of type `type_name`) as the record's branch: microseconds
/// since 1970 in the `micros` record, `Infinity` for ±infinity, `WideTimestamp` beyond 64 bits.
///
/// `extract(epoch ...)` loses digits near the 64-bit limit (its numeric division keeps about 16),
/// so the count comes from the day number and the time of day, which are exact.
fn timestamp_json(value: &str, type_name: &str) -> String {
    let wall = if type_name == "timestamptz" {
        format!("({value} AT TIME ZONE 'UTC')")
    } else {
        value.to_owned()
    };
    format!(
        "CASE WHEN NOT isfinite({value}) THEN \
           json_build_object('type_name', '{type_name}', 'negative', {value} < 'epoch') \
         WHEN {wall} > '294247-01-10 04:00:54.775807'::timestamp THEN \
           json_build_object('type_name', '{type_name}', \
             'epoch_seconds', ({wall}::date - DATE '1970-01-01')::bigint * 86400 \
               + floor(extract(epoch FROM {wall}::time))::bigint, \
             'micros_of_second', (extract(microseconds FROM {wall}::time) % 1000000)::int) \
         ELSE json_build_object('micros', (({wall}::date - DATE '1970-01-01')::numeric \
           * 86400000000 + extract(epoch FROM {wall}::time) * 1000000)::bigint) END"
    )
}

/// A date `value` as the record's branch: days since 1970, or `Infinity`.
fn date_json(value: &str) -> String {
    format!(
        "CASE WHEN isfinite({value}) THEN json_build_object('days', {value} - DATE '1970-01-01') \
         ELSE json_build_object('type_name', 'date', 'negative', {value} < 'epoch') END"
    )
}

/// A range `c` as the record's `Range`, each bound rendered by `bound` (given the bound's SQL).
fn range_json(type_name: &str, bound: impl Fn(&str) -> String) -> String {
    format!(
        "json_build_object('type_name', '{type_name}', 'empty', isempty(c), \
          'lower', CASE WHEN lower(c) IS NULL THEN NULL ELSE ({lower})::json END, \
          'lower_inclusive', lower_inc(c), 'lower_infinite', NOT isempty(c) AND lower_inf(c), \
          'upper', CASE WHEN upper(c) IS NULL THEN NULL ELSE ({upper})::json END, \
          'upper_inclusive', upper_inc(c), 'upper_infinite', NOT isempty(c) AND upper_inf(c))",
        lower = bound("lower(c)"),
        upper = bound("upper(c)"),
    )
}

/// Expectations are built once per test run; leaking them gives the `'static` the table holds.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn columns() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    let same = |element: &Value| element.clone();
    let value_field = |element: &Value| element.get("value").cloned().unwrap_or(Value::Null);
    let label_field = |element: &Value| element.get("label").cloned().unwrap_or(Value::Null);
    vec![
        ("id", Json("to_json(c)")),
        ("c_int2", Json("to_json(c)")),
        ("c_int4", Json("to_json(c)")),
        ("c_int8", Json("to_json(c)")),
        ("c_numeric", Json("json_build_object('value', c::text)")),
        (
            "c_numeric_scaled",
            Json("json_build_object('value', c::text)"),
        ),
        ("c_float4", Float4),
        ("c_float8", Float8),
        ("c_bool", Json("to_json(c)")),
        ("c_text", Json("to_json(c)")),
        ("c_varchar", Json("to_json(c)")),
        // to_json uses bpchar's output function, which keeps the blank padding.
        ("c_char", Json("to_json(c)")),
        ("c_uuid", Json("json_build_object('value', c::text)")),
        ("c_json", Json("json_build_object('value', c::text)")),
        ("c_jsonb", Json("json_build_object('value', c::text)")),
        ("c_bytea", Json("to_json(encode(c, 'hex'))")),
        ("c_date", Json(leak(date_json("c")))),
        (
            "c_time",
            Json("json_build_object('micros', (extract(epoch FROM c) * 1000000)::bigint)"),
        ),
        (
            "c_timetz",
            Json(
                "json_build_object('micros', (extract(epoch FROM c::time) * 1000000)::bigint, \
                  'offset_seconds', extract(timezone FROM c)::int)",
            ),
        ),
        ("c_timestamp", Json(leak(timestamp_json("c", "timestamp")))),
        (
            "c_timestamptz",
            Json(leak(timestamp_json("c", "timestamptz"))),
        ),
        (
            "c_interval",
            Json(
                "json_build_object('months', (extract(year FROM c) * 12 + extract(month FROM c))::int, \
                  'days', extract(day FROM c)::int, \
                  'micros', ((extract(hour FROM c) * 3600 + extract(minute FROM c) * 60 \
                  + extract(second FROM c)) * 1000000)::bigint)",
            ),
        ),
        ("c_int_array", Array("_int4", "array_to_json(c)", same)),
        ("c_text_array", Array("_text", "array_to_json(c)", same)),
        ("c_int_matrix", Array("_int4", "array_to_json(c)", same)),
        (
            "c_numeric_array",
            Array("_numeric", "array_to_json(c::text[])", value_field),
        ),
        (
            "c_tstz_array",
            Array(
                "_timestamptz",
                leak(format!(
                    "(SELECT coalesce(json_agg(CASE WHEN e IS NULL THEN NULL ELSE ({})::json END \
                     ORDER BY n), '[]') FROM unnest(c) WITH ORDINALITY AS u(e, n))",
                    timestamp_json("e", "timestamptz")
                )),
                same,
            ),
        ),
        // Enums are recognised from the catalog: their own branch, the label.
        (
            "c_mood",
            Json("json_build_object('type_name', 'public.mood', 'label', format('%s', c))"),
        ),
        (
            "c_mood_array",
            Array("public._mood", "array_to_json(c::text[])", label_field),
        ),
        // Domains arrive as their base type.
        ("c_posint", Json("to_json(c::integer)")),
        ("c_short_text", Json("to_json(c::varchar)")),
        // format('%s', c) is the type's output function, as pgoutput sends it (inet::text would
        // add the /128 that inet_out leaves out).
        (
            "c_inet",
            Json("json_build_object('type_name', 'inet', 'text', format('%s', c))"),
        ),
        (
            "c_cidr",
            Json("json_build_object('type_name', 'cidr', 'text', format('%s', c))"),
        ),
        (
            "c_macaddr",
            Json("json_build_object('type_name', 'macaddr', 'text', format('%s', c))"),
        ),
        // money as its stored minor units, whatever lc_monetary prints.
        (
            "c_money",
            Json("json_build_object('minor_units', (c::numeric * 100)::bigint)"),
        ),
        (
            "c_hstore",
            Json("json_build_object('entries', hstore_to_json(c))"),
        ),
        ("c_point", Point),
        (
            "c_int4range",
            Json(leak(range_json("int4range", |b| format!("to_json({b})")))),
        ),
        (
            "c_int8range",
            Json(leak(range_json("int8range", |b| format!("to_json({b})")))),
        ),
        (
            "c_numrange",
            Json(leak(range_json("numrange", |b| {
                format!("json_build_object('value', {b}::text)")
            }))),
        ),
        (
            "c_tsrange",
            Json(leak(range_json("tsrange", |b| {
                timestamp_json(b, "timestamp")
            }))),
        ),
        (
            "c_tstzrange",
            Json(leak(range_json("tstzrange", |b| {
                timestamp_json(b, "timestamptz")
            }))),
        ),
        (
            "c_daterange",
            Json(leak(range_json("daterange", date_json))),
        ),
        // A user-defined range: its subtype comes from the catalog.
        (
            "c_floatrange",
            Json(leak(range_json("public.floatrange", |b| {
                format!("to_json({b})")
            }))),
        ),
        // The bits packed first bit highest (varbit_send's body, after its 4-byte length).
        (
            "c_bit",
            Json(
                "json_build_object('length', length(c), \
                 'bits', encode(substring(varbit_send(c::varbit) FROM 5), 'hex'))",
            ),
        ),
        (
            "c_varbit",
            Json(
                "json_build_object('length', length(c), \
                 'bits', encode(substring(varbit_send(c) FROM 5), 'hex'))",
            ),
        ),
    ]
}

/// The SQL giving, for one column, what the record must hold (or the raw material for it).
fn expected_sql(column: &str, expect: &Expect) -> String {
    let json = match expect {
        Expect::Json(expression) => (*expression).to_owned(),
        Expect::Float4 | Expect::Float8 => "to_json(c::text)".into(),
        Expect::Point => "json_build_object('x', c[0]::text, 'y', c[1]::text)".into(),
        Expect::Array(_, elements, _) => format!(
            "json_build_object('elements', {elements}, 'lower_bounds', \
             (SELECT coalesce(json_agg(array_lower(c, d) ORDER BY d), '[]') \
              FROM generate_series(1, coalesce(array_ndims(c), 0)) AS d))"
        ),
    };
    format!(
        "(SELECT CASE WHEN c IS NULL THEN NULL ELSE ({json})::json END FROM (SELECT {column} AS c) AS v)"
    )
}

/// A record's Array value as plain nested JSON arrays, its elements mapped with `element`, plus
/// the lower bound of each level (first sub-array's, as PostgreSQL arrays are rectangular).
fn plain_array(
    value: &Value,
    type_name: &str,
    element: fn(&Value) -> Value,
    bounds: &mut Vec<i64>,
) -> Value {
    assert_eq!(value["type_name"], type_name, "{value}");
    bounds.push(value["lower_bound"].as_i64().expect("lower_bound"));
    let mut inner_bounds = Vec::new();
    let elements = value["elements"]
        .as_array()
        .expect("elements")
        .iter()
        .map(|item| match item {
            Value::Object(fields) if fields.contains_key("elements") => {
                inner_bounds.clear();
                plain_array(item, type_name, element, &mut inner_bounds)
            }
            Value::Null => Value::Null,
            scalar => element(scalar),
        })
        .collect();
    bounds.extend(inner_bounds);
    Value::Array(elements)
}

fn record_of<'a>(rows: &[&'a CdcRecord], id: i64) -> &'a CdcRecord {
    rows.iter()
        .find(|r| r.value["after_values"]["id"] == json!(id))
        .unwrap_or_else(|| panic!("no record for row {id}"))
}

fn assert_float(column: &str, actual: &Value, postgres_text: &Value, single: bool) {
    let text = postgres_text
        .as_str()
        .unwrap_or_else(|| panic!("{column}: {postgres_text}"));
    let expected: f64 = if single {
        f64::from(
            text.parse::<f32>()
                .unwrap_or_else(|e| panic!("{column}: {text}: {e}")),
        )
    } else {
        text.parse()
            .unwrap_or_else(|e| panic!("{column}: {text}: {e}"))
    };
    let actual_number = match actual {
        Value::Number(number) => number.as_f64().expect("a finite float"),
        Value::String(special) => match special.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => panic!("{column}: unexpected float text {other}"),
        },
        other => panic!("{column}: not a float: {other}"),
    };
    if expected.is_nan() {
        assert!(actual_number.is_nan(), "{column}: {actual} is not NaN");
    } else {
        assert_eq!(
            actual_number.to_bits(),
            expected.to_bits(),
            "{column}: {actual} vs PostgreSQL {text}"
        );
    }
}

/// The records of one path (stream, snapshot, re-snapshot), each compared column by column with
/// what PostgreSQL returns for its row.
async fn assert_rows_match_postgres(
    stack: &Stack,
    path: &str,
    operation: &str,
    rows: &[&CdcRecord],
    published: &BTreeSet<String>,
) {
    let columns = columns();
    assert_eq!(rows.len(), ROW_IDS.len(), "{path}: one record per row");
    for id in ROW_IDS {
        let record = record_of(rows, id);
        assert_eq!(record.operation(), operation, "{path}");
        assert_eq!(record.value["primary_key"], json!({"id": id}));
        let after = record.value["after_values"]
            .as_object()
            .expect("after_values");
        let keys: BTreeSet<String> = after.keys().cloned().collect();
        assert_eq!(
            &keys, published,
            "{path}: row {id}: exactly the published columns"
        );

        for (column, expect) in &columns {
            let sql = format!(
                "SELECT {} FROM type_matrix WHERE id = {id}",
                expected_sql(column, expect)
            );
            let text = stack
                .psql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let text = text.trim_end_matches('\n');
            let expected: Value = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{column}: {e}: {text}"))
            };
            let actual = &after[*column];
            match expect {
                Expect::Json(_) => assert_eq!(actual, &expected, "{path}: row {id}, {column}"),
                _ if expected.is_null() => {
                    assert_eq!(actual, &Value::Null, "{path}: row {id}, {column}")
                }
                Expect::Float4 => assert_float(column, actual, &expected, true),
                Expect::Float8 => assert_float(column, actual, &expected, false),
                Expect::Point => {
                    for axis in ["x", "y"] {
                        assert_float(column, &actual[axis], &expected[axis], false);
                    }
                }
                Expect::Array(type_name, _, element) => {
                    let mut bounds = Vec::new();
                    let elements = plain_array(actual, type_name, *element, &mut bounds);
                    assert_eq!(
                        elements, expected["elements"],
                        "{path}: row {id}, {column} elements"
                    );
                    // An empty array has no dimensions in PostgreSQL; the record says 1.
                    let expected_bounds = match expected["lower_bounds"].as_array() {
                        Some(bounds) if bounds.is_empty() => json!([1]),
                        _ => expected["lower_bounds"].clone(),
                    };
                    assert_eq!(
                        json!(bounds),
                        expected_bounds,
                        "{path}: row {id}, {column} lower bounds"
                    );
                }
            }
        }
    }

    // Spot checks that the comparison above is not vacuous: NULL is null, an empty string and a
    // JSON null are values, -0 keeps its sign, zero bytes survive.
    let row = |id: i64| &record_of(rows, id).value["after_values"];
    assert_eq!(row(5)["c_text"], Value::Null);
    assert_eq!(row(2)["c_text"], "");
    assert_eq!(row(2)["c_char"], "     ");
    assert_eq!(row(2)["c_jsonb"], json!({"value": "null"}));
    assert_eq!(row(1)["c_bytea"], "00ff0000");
    assert!(
        row(2)["c_float8"]
            .as_f64()
            .is_some_and(|f| f == 0.0 && f.is_sign_negative())
    );
    assert_eq!(
        row(2)["c_timestamptz"],
        json!({"type_name": "timestamptz", "negative": false})
    );
    assert_eq!(
        row(8)["c_timestamp"],
        json!({"micros": i64::MAX}),
        "the last instant of 64-bit microseconds is a real one"
    );
    assert_eq!(
        row(7)["c_timestamp"]["epoch_seconds"],
        json!(9_224_318_015_999_i64)
    );
    assert_eq!(row(7)["c_money"], json!({"minor_units": i64::MAX}));
    assert_eq!(row(1)["c_mood"]["label"], "happy");
    assert_eq!(
        row(1)["c_interval"],
        json!({"months": 14, "days": 3, "micros": 14_706_500_000_i64})
    );
    assert_eq!(
        row(1)["c_int_matrix"]["elements"][1]["elements"],
        json!([null, 4])
    );
}

/// Each path that turns a row into a record decodes values on its own (pgoutput's text in the
/// stream; `SELECT` text in the snapshot readers and the re-snapshot windows), so every path runs
/// the whole matrix: the rows exist before the connector starts (snapshot, READ), are deleted and
/// inserted again while it streams (INSERT), then re-snapshot by a signal (READ again).
#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_with_the_value_postgres_returns_on_every_path() {
    let mut stack = stack_without_connector("type-matrix").await;
    stack
        .psql(SETUP)
        .await
        .expect("create the type matrix table");
    let insert_all = async |stack: &Stack| {
        for insert in INSERTS {
            stack
                .psql(insert)
                .await
                .unwrap_or_else(|e| panic!("{insert}: {e}"));
        }
    };
    insert_all(&stack).await;
    stack.start_connector().await.expect("start the connector");
    stack.psql("DELETE FROM type_matrix").await.unwrap();
    insert_all(&stack).await;
    stack
        .psql(
            r#"SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{"type": "execute-snapshot", "tables": ["public.type_matrix"]}')"#,
        )
        .await
        .unwrap();

    // Snapshot READs, DELETEs, INSERTs, re-snapshot READs.
    let expected_records = 4 * ROW_IDS.len();
    let records = cdc_records(&stack, Duration::from_secs(120), |records| {
        records
            .iter()
            .filter(|r| r.table() == "public.type_matrix")
            .count()
            >= expected_records
    })
    .await;
    let rows: Vec<&CdcRecord> = records
        .iter()
        .filter(|r| r.table() == "public.type_matrix")
        .collect();
    assert_eq!(rows.len(), expected_records);

    // Generated columns are not replicated by PostgreSQL 15 (the Relation message omits them):
    // the record has every other column, and nothing else.
    let published: BTreeSet<String> = stack
        .psql("SELECT attname FROM pg_attribute WHERE attrelid = 'type_matrix'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''")
        .await
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let covered: BTreeSet<String> = columns()
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(published, covered, "the test covers every column");
    let generated = stack
        .psql("SELECT c_generated FROM type_matrix WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        generated.trim(),
        "-4611686018427387904",
        "PostgreSQL has the generated value"
    );

    let inserts: Vec<&CdcRecord> = rows
        .iter()
        .copied()
        .filter(|r| r.operation() == "INSERT")
        .collect();
    // The snapshot's READs carry its consistent point, the re-snapshot's a later watermark.
    let reads: Vec<&CdcRecord> = rows
        .iter()
        .copied()
        .filter(|r| r.operation() == "READ")
        .collect();
    let snapshot_point = reads
        .iter()
        .map(|r| r.position().0)
        .min()
        .unwrap_or_default();
    let (snapshot, resnapshot): (Vec<&CdcRecord>, Vec<&CdcRecord>) =
        reads.iter().partition(|r| r.position().0 == snapshot_point);
    assert_rows_match_postgres(&stack, "stream", "INSERT", &inserts, &published).await;
    assert_rows_match_postgres(&stack, "snapshot", "READ", &snapshot, &published).await;
    assert_rows_match_postgres(&stack, "re-snapshot", "READ", &resnapshot, &published).await;

    stack.shutdown().await.unwrap();
}
