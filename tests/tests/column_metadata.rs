//! The column metadata on `topic_cdc_table_schemas`: every change names a `CDCTableSchema`
//! record that is on the topic, the snapshot and the stream name the same version of an
//! unchanged table, a schema change (a new column, a new enum label) makes a new version, and
//! each column's metadata equals what PostgreSQL's catalog says (`information_schema.columns`,
//! `format_type`, `pg_enum`).

use std::{collections::BTreeMap, time::Duration};

use e2e::{CdcRecord, cdc_records, records::read_topic_until, stack_without_connector};
use local_stack::Stack;
use serde_json::{Value, json};

const SETUP: &str = r#"
CREATE TYPE trip_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN fare AS numeric(8, 3);
CREATE TABLE trips (
    trip_id   bigint PRIMARY KEY,
    price     numeric(10, 2) NOT NULL,
    code      varchar(12),
    mood      trip_mood,
    moods     trip_mood[],
    left_at   timestamptz(3),
    flags     bit(4),
    fare_paid fare,
    notes     text NOT NULL DEFAULT '',
    wait      interval(2)
);
ALTER PUBLICATION cdc_publication ADD TABLE trips;
"#;

/// One row of `trips`.
fn insert_trip(id: i64) -> String {
    format!(
        "INSERT INTO trips (trip_id, price, code, mood, moods, left_at, flags, fare_paid, wait) \
         VALUES ({id}, 12.50, 'HAN-SGN', 'happy', '{{sad,ok}}', now(), B'1010', 3.141, '1 hour')"
    )
}

/// What the catalog says about each column of `trips`, in the record's terms.
async fn catalog_columns(stack: &Stack) -> BTreeMap<String, Value> {
    let sql = "SELECT json_object_agg(c.column_name, json_build_object( \
            'type_name', format_type(a.atttypid, a.atttypmod), \
            'nullable', c.is_nullable = 'YES', \
            'numeric_precision', CASE WHEN c.data_type = 'numeric' THEN c.numeric_precision END, \
            'numeric_scale', CASE WHEN c.data_type = 'numeric' THEN c.numeric_scale END, \
            'length', c.character_maximum_length, \
            'time_precision', CASE WHEN c.data_type LIKE 'time%' OR c.data_type = 'interval' \
                THEN c.datetime_precision END, \
            'enum_labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e \
                WHERE e.enumtypid = CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END))) \
        FROM information_schema.columns c \
        JOIN pg_attribute a ON a.attrelid = 'trips'::regclass AND a.attname = c.column_name \
        JOIN pg_type t ON t.oid = a.atttypid \
        WHERE c.table_name = 'trips'";
    let text = stack.psql(sql).await.expect("read the catalog");
    serde_json::from_str(text.trim()).expect("the catalog as JSON")
}

fn assert_matches_catalog(schema: &Value, catalog: &BTreeMap<String, Value>) {
    let columns = schema["columns"].as_array().expect("columns");
    let mut names: Vec<&str> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        catalog.keys().map(String::as_str).collect::<Vec<_>>(),
        "every column"
    );
    for (position, column) in columns.iter().enumerate() {
        let name = column["name"].as_str().unwrap();
        let expected = &catalog[name];
        assert_eq!(column["position"], json!(position + 1), "{name}");
        for field in [
            "type_name",
            "nullable",
            "numeric_precision",
            "numeric_scale",
            "length",
            "time_precision",
            "enum_labels",
        ] {
            assert_eq!(column[field], expected[field], "{name}.{field}");
        }
        assert_eq!(column["part_of_key"], json!(name == "trip_id"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_names_metadata_that_matches_the_catalog() {
    let mut stack = stack_without_connector("column-metadata").await;
    stack.psql(SETUP).await.expect("create trips");
    stack.psql(&insert_trip(1)).await.expect("row 1");
    let before_change = catalog_columns(&stack).await;
    stack.start_connector().await.expect("start the connector");
    stack.psql(&insert_trip(2)).await.expect("row 2");
    stack
        .psql(
            "ALTER TABLE trips ADD COLUMN seats smallint NOT NULL DEFAULT 1; \
             ALTER TYPE trip_mood ADD VALUE 'meh' BEFORE 'ok';",
        )
        .await
        .expect("change the table");
    stack.psql(&insert_trip(3)).await.expect("row 3");
    let after_change = catalog_columns(&stack).await;

    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        records
            .iter()
            .filter(|r| r.table() == "public.trips")
            .count()
            >= 3
    })
    .await;
    let trips: Vec<&CdcRecord> = records
        .iter()
        .filter(|r| r.table() == "public.trips")
        .collect();
    let version_of = |id: i64| {
        let record = trips
            .iter()
            .find(|r| r.value["after_values"]["trip_id"] == json!(id))
            .unwrap_or_else(|| panic!("no record of trip {id}"));
        record.value["table_schema"]
            .as_str()
            .unwrap_or_else(|| panic!("trip {id} names no table schema: {}", record.value))
            .to_owned()
    };
    let (snapshot, streamed, altered) = (version_of(1), version_of(2), version_of(3));
    assert_eq!(
        snapshot, streamed,
        "the snapshot and the stream see the same table"
    );
    assert_ne!(streamed, altered, "a schema change is a new version");
    assert!(snapshot.starts_with("public.trips/"), "{snapshot}");

    let schemas = read_topic_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        platform::topics::CDC_TABLE_SCHEMAS.name,
        Duration::from_secs(30),
        |schemas| {
            [&snapshot, &altered]
                .iter()
                .all(|id| schemas.iter().any(|s| s.key == **id))
        },
    )
    .await
    .expect("the table schema records");
    let schema = |id: &str| {
        let record = schemas.iter().find(|s| s.key == id).expect("the record");
        assert_eq!(record.value["id"], id);
        assert_eq!(record.value["table_name"], "public.trips");
        record.value.clone()
    };
    assert_matches_catalog(&schema(&snapshot), &before_change);
    let altered = schema(&altered);
    assert_matches_catalog(&altered, &after_change);
    // Spot checks that the comparison is not vacuous.
    let column = |name: &str| {
        altered["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(column("price")["numeric_precision"], json!(10));
    assert_eq!(column("price")["nullable"], json!(false));
    assert_eq!(column("code")["length"], json!(12));
    assert_eq!(column("left_at")["time_precision"], json!(3));
    assert_eq!(column("fare_paid")["type_name"], "fare");
    assert_eq!(column("fare_paid")["value_type"], "numeric");
    assert_eq!(column("fare_paid")["numeric_scale"], json!(3));
    assert_eq!(
        column("mood")["enum_labels"],
        json!(["sad", "meh", "ok", "happy"])
    );
    assert_eq!(column("moods")["value_type"], "public._trip_mood");
    assert_eq!(column("seats")["nullable"], json!(false));
    // Every record of the run names its table's metadata (the travel tables' too).
    assert!(
        records.iter().all(|r| r.value["table_schema"].is_string()),
        "a change without table_schema"
    );
    stack.shutdown().await.unwrap();
}
