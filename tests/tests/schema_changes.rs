//! Schema changes while streaming: ADD COLUMN (with and without default), DROP COLUMN, RENAME
//! COLUMN and ALTER COLUMN TYPE, interleaved with writes and inside a transaction. pgoutput sends
//! a new Relation message before the first change after each one; every value must land under
//! the right column name with the right type, nothing lost. Column values travel in maps, so
//! none of this needs a new registry version.
//!
//! And the one schema change that does reach the registry, the connector's own CDCChange schema:
//! when the subject's compatibility rules reject it, the connector stops with the subject, the
//! registry's 409 and its reason.

use std::{process::Stdio, time::Duration};

use e2e::{cdc_records, json_row, of_table, run_sql};
use local_stack::{Stack, StackOptions};
use serde_json::{Value, json};

const SUBJECT: &str = "topic_cdc_changes-value";

/// What PostgreSQL holds for row `id` now, in the record's JSON shape, built from the table's
/// current columns (so a renamed, dropped or retyped column is seen as PostgreSQL sees it).
async fn row_now(stack: &Stack, id: i64) -> Value {
    let columns = stack
        .psql("SELECT attname || '|' || format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'evolving'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum")
        .await
        .unwrap();
    let fields: Vec<String> = columns
        .lines()
        .map(|line| {
            let (name, type_name) = line.split_once('|').unwrap();
            // numeric is exact text in the record; integers and text are plain JSON.
            let value = if type_name == "numeric" {
                format!("CASE WHEN {name} IS NULL THEN NULL ELSE json_build_object('value', {name}::text) END")
            } else {
                format!("to_json({name})")
            };
            format!("'{name}', {value}")
        })
        .collect();
    let sql = format!(
        "SELECT json_build_object({}) FROM evolving WHERE id = {id}",
        fields.join(", ")
    );
    json_row(stack, &sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_added_dropped_renamed_and_retyped_while_streaming() {
    let stack = Stack::start(StackOptions::for_tests("schema-changes"))
        .await
        .expect("start the stack");
    run_sql(&stack, "CREATE TABLE evolving (id integer PRIMARY KEY, qty integer, code varchar(10), price numeric(10, 2), obsolete text, old_name text);
                 ALTER PUBLICATION cdc_publication ADD TABLE evolving").await;

    // (row id, what PostgreSQL holds right after the statement), in commit order.
    let mut expected: Vec<(i64, Value)> = Vec::new();
    let steps: &[(Option<i64>, &str)] = &[
        (
            Some(1),
            "INSERT INTO evolving VALUES (1, 5, 'abc', 12.34, 'gone soon', 'named')",
        ),
        (None, "ALTER TABLE evolving ADD COLUMN added_null text"),
        (
            Some(2),
            "INSERT INTO evolving VALUES (2, 6, 'def', 0.5, 'x', 'two', 'filled')",
        ),
        (Some(1), "UPDATE evolving SET qty = 50 WHERE id = 1"),
        (
            None,
            "ALTER TABLE evolving ADD COLUMN added_default integer NOT NULL DEFAULT 42",
        ),
        (Some(1), "UPDATE evolving SET qty = 51 WHERE id = 1"),
        (
            Some(3),
            "INSERT INTO evolving (id, qty, added_default) VALUES (3, 7, 7)",
        ),
        (None, "ALTER TABLE evolving DROP COLUMN obsolete"),
        (
            Some(4),
            "INSERT INTO evolving (id, qty, code, old_name) VALUES (4, 8, 'ghi', 'four')",
        ),
        (
            None,
            "ALTER TABLE evolving RENAME COLUMN old_name TO new_name",
        ),
        (
            Some(2),
            "UPDATE evolving SET new_name = 'renamed' WHERE id = 2",
        ),
        (
            None,
            "ALTER TABLE evolving ALTER COLUMN qty TYPE bigint, ALTER COLUMN code TYPE text, ALTER COLUMN price TYPE numeric(12, 4)",
        ),
        (
            Some(5),
            "INSERT INTO evolving (id, qty, code, price) VALUES (5, 9223372036854775807, 'longer than ten characters', 12345678.1234)",
        ),
        (Some(1), "UPDATE evolving SET qty = qty + 1 WHERE id = 1"),
    ];
    for (row, sql) in steps {
        run_sql(&stack, sql).await;
        if let Some(id) = row {
            expected.push((*id, row_now(&stack, *id).await));
        }
    }
    // A schema change inside a transaction, between two writes: the first row has the old
    // columns, the second the new one.
    run_sql(&stack, "BEGIN; INSERT INTO evolving (id, qty) VALUES (6, 60); ALTER TABLE evolving ADD COLUMN late integer; INSERT INTO evolving (id, qty, late) VALUES (7, 70, 700); COMMIT").await;
    let mut row_6 = row_now(&stack, 6).await;
    row_6.as_object_mut().unwrap().remove("late");
    expected.push((6, row_6));
    expected.push((7, row_now(&stack, 7).await));

    let records = cdc_records(&stack, Duration::from_secs(90), |records| {
        records
            .iter()
            .filter(|r| r.table() == "public.evolving")
            .count()
            >= expected.len()
    })
    .await;
    let changes = of_table(&records, "public.evolving");
    assert_eq!(
        changes.len(),
        expected.len(),
        "one record per row change, none lost"
    );
    for (index, (record, (id, row))) in changes.iter().zip(&expected).enumerate() {
        assert_eq!(
            record.value["primary_key"],
            json!({"id": id}),
            "change {index}"
        );
        assert_eq!(
            &record.value["after_values"], row,
            "change {index} (row {id})"
        );
    }

    // Spot checks that the comparison above is not vacuous.
    let after = |index: usize| &changes[index].value["after_values"];
    assert!(after(0).get("added_null").is_none() && after(0)["obsolete"] == "gone soon");
    assert_eq!(
        after(2)["added_null"],
        Value::Null,
        "added without default: NULL for old rows"
    );
    assert_eq!(
        after(3)["added_default"],
        42,
        "added with default: the default for old rows"
    );
    assert!(after(5).get("obsolete").is_none(), "dropped");
    assert_eq!(after(6)["new_name"], "renamed");
    assert!(after(6).get("old_name").is_none());
    assert_eq!(
        after(7)["qty"],
        json!(9_223_372_036_854_775_807_i64),
        "int became bigint"
    );
    assert_eq!(after(7)["code"], "longer than ten characters");
    assert_eq!(
        after(8)["price"],
        json!({"value": "12.3400"}),
        "the new scale"
    );
    assert!(after(9).get("late").is_none());
    assert_eq!(after(10)["late"], 700);

    // Column values are maps: the table's changes needed no new version of the record schema.
    let versions: Value = reqwest::get(format!(
        "{}/subjects/{SUBJECT}/versions",
        stack.registry_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(versions, json!([1]));

    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_the_registry_rejects_stops_the_connector_with_subject_status_and_reason() {
    let mut options = StackOptions::for_tests("incompatible");
    options.start_connector = false;
    let stack = Stack::start(options).await.expect("start the stack");
    let http = reqwest::Client::new();
    let content_type = "application/vnd.schemaregistry.v1+json";

    // A first version the connector's schema cannot read: a required field it does not have.
    let earlier = json!({"type": "record", "name": "CDCChange", "namespace": "com.travel.cdc",
        "fields": [{"name": "legacy_id", "type": "string"}]});
    let response = http
        .put(format!("{}/config/{SUBJECT}", stack.registry_url()))
        .header("Content-Type", content_type)
        .json(&json!({"compatibility": "BACKWARD"}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let response = http
        .post(format!(
            "{}/subjects/{SUBJECT}/versions",
            stack.registry_url()
        ))
        .header("Content-Type", content_type)
        .json(&json!({"schema": earlier.to_string()}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(stack.connector_binary())
            .args(stack.connector_args())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a rejected schema stops the connector")
    .expect("run the connector");
    assert!(!output.status.success(), "exits non-zero");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needed in [
        SUBJECT,
        "409",
        "BACKWARD",
        "cannot read data written with version 1",
        "Field 'change_id' in reader schema must have a default value",
    ] {
        assert!(
            stderr.contains(needed),
            "the error names {needed:?}:\n{stderr}"
        );
    }
    // Nothing was streamed: the slot was never created.
    let slots = stack
        .psql("SELECT count(*) FROM pg_replication_slots")
        .await
        .unwrap();
    assert_eq!(slots.trim(), "0");
    stack.shutdown().await.unwrap();
}
