//! Unchanged TOAST values and replica identities, on tables added to the publication while the
//! connector streams:
//! - an UPDATE that leaves a TOASTed (out-of-line, > 8 KB, incompressible) text or jsonb value
//!   alone publishes it as `Unavailable(UNCHANGED_TOAST)`, never as null or empty; an UPDATE that
//!   touches it publishes the whole new value;
//! - REPLICA IDENTITY DEFAULT: DELETE carries only the key, the rest `NOT_IN_REPLICA_IDENTITY`;
//! - REPLICA IDENTITY FULL: UPDATE and DELETE carry the complete old row, TOAST values included;
//! - a table without primary key: INSERTs published with an empty key; PostgreSQL itself refuses
//!   its UPDATE and DELETE unless REPLICA IDENTITY FULL, which then gives complete old rows.

use std::time::Duration;

use e2e::{cdc_records, json_row, of_table, run_sql};
use local_stack::{Stack, StackOptions};
use serde_json::{Value, json};

const SETUP: &str = "
CREATE TABLE toasty (id integer PRIMARY KEY, note text, big_text text, big_json jsonb);
CREATE TABLE toasty_full (id integer PRIMARY KEY, note text, big_text text, big_json jsonb);
ALTER TABLE toasty_full REPLICA IDENTITY FULL;
CREATE TABLE no_pk (a integer, b text);
CREATE TABLE no_pk_full (a integer, b text);
ALTER TABLE no_pk_full REPLICA IDENTITY FULL;
ALTER PUBLICATION cdc_publication ADD TABLE toasty, toasty_full, no_pk, no_pk_full;
";

/// 12,800 characters of hex digests: too big to stay inline and too random for pglz, so
/// PostgreSQL stores it out of line uncompressed (the case pgoutput marks as unchanged).
const BIG_TEXT: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) AS i)";
const BIG_JSON: &str = "(SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 400) AS i)";

const UNCHANGED_TOAST: &str = r#"{"reason":"UNCHANGED_TOAST"}"#;
const NOT_IN_REPLICA_IDENTITY: &str = r#"{"reason":"NOT_IN_REPLICA_IDENTITY"}"#;

fn reason(json: &str) -> Value {
    serde_json::from_str(json).unwrap()
}

/// A row as PostgreSQL returns it, in the record's JSON shape.
async fn row_now(stack: &Stack, table: &str, id: i64) -> Value {
    let sql = format!(
        "SELECT json_build_object('id', id, 'note', note, 'big_text', big_text, \
         'big_json', json_build_object('value', big_json::text)) FROM {table} WHERE id = {id}"
    );
    json_row(stack, &sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_toast_and_every_replica_identity() {
    let stack = Stack::start(StackOptions::for_tests("toast-identity"))
        .await
        .expect("start the stack");
    run_sql(&stack, SETUP).await;

    // REPLICA IDENTITY DEFAULT.
    run_sql(
        &stack,
        &format!("INSERT INTO toasty VALUES (1, 'n0', {BIG_TEXT}, {BIG_JSON})"),
    )
    .await;
    let inserted = row_now(&stack, "toasty", 1).await;
    let stored_out_of_line = stack
        .psql("SELECT pg_column_size(big_text) > 8000 AND octet_length(big_text) > 8000 FROM toasty WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        stored_out_of_line.trim(),
        "t",
        "the value is big and not compressed"
    );
    run_sql(&stack, "UPDATE toasty SET note = 'n1' WHERE id = 1").await;
    let note_updated = row_now(&stack, "toasty", 1).await;
    run_sql(
        &stack,
        "UPDATE toasty SET big_text = big_text || 'tail' WHERE id = 1",
    )
    .await;
    let big_updated = row_now(&stack, "toasty", 1).await;
    run_sql(&stack, "DELETE FROM toasty WHERE id = 1").await;

    // REPLICA IDENTITY FULL.
    run_sql(
        &stack,
        &format!("INSERT INTO toasty_full VALUES (1, 'n0', {BIG_TEXT}, {BIG_JSON})"),
    )
    .await;
    let full_inserted = row_now(&stack, "toasty_full", 1).await;
    run_sql(&stack, "UPDATE toasty_full SET note = 'n1' WHERE id = 1").await;
    let full_updated = row_now(&stack, "toasty_full", 1).await;
    run_sql(&stack, "DELETE FROM toasty_full WHERE id = 1").await;

    // No primary key, REPLICA IDENTITY DEFAULT: INSERT works, UPDATE and DELETE are refused by
    // PostgreSQL itself.
    run_sql(&stack, "INSERT INTO no_pk VALUES (1, 'one'), (2, NULL)").await;
    for refused in [
        "UPDATE no_pk SET b = 'x' WHERE a = 1",
        "DELETE FROM no_pk WHERE a = 1",
    ] {
        let error = stack
            .psql(refused)
            .await
            .expect_err("PostgreSQL refuses it")
            .to_string();
        assert!(
            error.contains("does not have a replica identity"),
            "{refused}: {error}"
        );
    }
    // No primary key, REPLICA IDENTITY FULL: everything works, old rows complete.
    run_sql(&stack, "INSERT INTO no_pk_full VALUES (1, 'one')").await;
    run_sql(&stack, "UPDATE no_pk_full SET b = 'uno' WHERE a = 1").await;
    run_sql(&stack, "DELETE FROM no_pk_full WHERE a = 1").await;

    let expected_counts = [
        ("public.toasty", 4),
        ("public.toasty_full", 3),
        ("public.no_pk", 2),
        ("public.no_pk_full", 3),
    ];
    let records = cdc_records(&stack, Duration::from_secs(90), |records| {
        expected_counts
            .iter()
            .all(|(table, count)| of_table(records, table).len() >= *count)
    })
    .await;
    for (table, count) in expected_counts {
        assert_eq!(
            of_table(&records, table).len(),
            count,
            "{table}: one record per row change"
        );
    }

    // DEFAULT.
    let toasty = of_table(&records, "public.toasty");
    let operations: Vec<&str> = toasty.iter().map(|r| r.operation()).collect();
    assert_eq!(operations, ["INSERT", "UPDATE", "UPDATE", "DELETE"]);
    assert_eq!(toasty[0].value["after_values"], inserted);
    assert_eq!(inserted["big_text"].as_str().unwrap().len(), 12_800);

    let untouched = &toasty[1].value;
    assert_eq!(
        untouched["before_values"],
        Value::Null,
        "DEFAULT: no old row when the key stays"
    );
    assert_eq!(untouched["after_values"]["note"], note_updated["note"]);
    assert_eq!(untouched["after_values"]["id"], 1);
    assert_eq!(
        untouched["after_values"]["big_text"],
        reason(UNCHANGED_TOAST),
        "never null or empty"
    );
    assert_eq!(
        untouched["after_values"]["big_json"],
        reason(UNCHANGED_TOAST),
        "never null or empty"
    );

    let touched = &toasty[2].value;
    assert_eq!(
        touched["after_values"]["big_text"], big_updated["big_text"],
        "the whole new value"
    );
    assert!(big_updated["big_text"].as_str().unwrap().ends_with("tail"));
    assert_eq!(touched["after_values"]["big_json"], reason(UNCHANGED_TOAST));

    let deleted = &toasty[3].value;
    assert_eq!(deleted["primary_key"], json!({"id": 1}));
    assert_eq!(
        deleted["before_values"],
        json!({"id": 1, "note": reason(NOT_IN_REPLICA_IDENTITY), "big_text": reason(NOT_IN_REPLICA_IDENTITY), "big_json": reason(NOT_IN_REPLICA_IDENTITY)})
    );

    // FULL: the old row is complete, TOAST values included; the new row still marks the
    // untouched TOAST value unavailable (PostgreSQL does not send it again).
    let full = of_table(&records, "public.toasty_full");
    assert_eq!(full[0].value["after_values"], full_inserted);
    let update = &full[1].value;
    assert_eq!(update["operation"], "UPDATE");
    assert_eq!(update["before_values"], full_inserted, "complete old row");
    assert_eq!(update["after_values"]["note"], full_updated["note"]);
    assert_eq!(update["after_values"]["big_text"], reason(UNCHANGED_TOAST));
    assert_eq!(update["after_values"]["big_json"], reason(UNCHANGED_TOAST));
    let delete = &full[2].value;
    assert_eq!(delete["operation"], "DELETE");
    assert_eq!(delete["before_values"], full_updated, "complete old row");
    assert_eq!(delete["after_values"], Value::Null);
    // Keyed by the primary key, not by the whole row that FULL flags as identity: every
    // change of the row shares one Kafka key, hence one partition and its order.
    for record in &full {
        assert_eq!(record.value["primary_key"], json!({"id": 1}));
        assert_eq!(record.key, full[0].key);
    }

    // No primary key: empty key, all rows of the table share one Kafka key.
    let no_pk = of_table(&records, "public.no_pk");
    for (record, expected) in no_pk
        .iter()
        .zip([json!({"a": 1, "b": "one"}), json!({"a": 2, "b": null})])
    {
        assert_eq!(record.operation(), "INSERT");
        assert_eq!(record.value["primary_key"], json!({}));
        assert_eq!(record.value["after_values"], expected);
        assert_eq!(record.key, "public.no_pk/{}");
    }
    let no_pk_full = of_table(&records, "public.no_pk_full");
    let operations: Vec<&str> = no_pk_full.iter().map(|r| r.operation()).collect();
    assert_eq!(operations, ["INSERT", "UPDATE", "DELETE"]);
    assert_eq!(
        no_pk_full[1].value["before_values"],
        json!({"a": 1, "b": "one"})
    );
    assert_eq!(
        no_pk_full[1].value["after_values"],
        json!({"a": 1, "b": "uno"})
    );
    assert_eq!(
        no_pk_full[2].value["before_values"],
        json!({"a": 1, "b": "uno"})
    );
    for record in &no_pk_full {
        assert_eq!(
            record.value["primary_key"],
            json!({}),
            "FULL without primary key: no key columns"
        );
    }

    stack.shutdown().await.unwrap();
}
