//! `workload oltp` with a journal, then every journaled change is found in `topic_cdc_changes`:
//! same transaction, table, operation, key and values; per key in the same order; and the
//! journal's order is the commit order the connector reports.

use std::{collections::HashMap, time::Duration};

use e2e::{CdcRecord, cdc_records};
use local_stack::{Stack, StackOptions};
use serde_json::{Map, Value};
use workload::oltp::journal::{self, JournalEntry};

const OPERATIONS: u64 = 400;

/// A CDC typed value as the journal spells it: wrappers off (numeric, uuid and json text,
/// timestamptz micros, date days, enum text).
fn plain(value: &Value) -> Value {
    match value {
        Value::Object(fields) if fields.len() == 1 => {
            let (name, inner) = fields.iter().next().expect("one field");
            match name.as_str() {
                "value" | "micros" | "days" => inner.clone(),
                _ => value.clone(),
            }
        }
        Value::Object(fields)
            if fields.contains_key("type_name") && fields.contains_key("label") =>
        {
            fields["label"].clone()
        }
        other => other.clone(),
    }
}

fn plain_row(values: &Value) -> Value {
    Value::Object(
        values
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
            .unwrap_or_default(),
    )
}

fn primary_key(record: &CdcRecord) -> Map<String, Value> {
    record.value["primary_key"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_oltp_journal_is_found_in_the_cdc_topic_in_order() {
    let stack = Stack::start(StackOptions::for_tests("workload-cdc"))
        .await
        .expect("start the stack");
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.jsonl");
    let binary = stack.connector_binary().with_file_name("workload");
    let output = tokio::process::Command::new(&binary)
        .args([
            "oltp",
            "--count",
            &OPERATIONS.to_string(),
            "--seed",
            "4711",
            "--concurrency",
            "4",
            "--rate",
            "0",
        ])
        .args(["--mix", "delete_account=3"])
        .arg("--journal")
        .arg(&journal_path)
        .args(["--pg-url", &stack.pg_url()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    assert!(
        output.status.success(),
        "workload failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let entries: Vec<JournalEntry> = journal::read(&journal_path).unwrap();
    assert!(
        entries.len() as u64 >= OPERATIONS,
        "every operation changes at least one row"
    );
    let records = cdc_records(&stack, Duration::from_secs(120), |r| {
        r.len() >= entries.len()
    })
    .await;
    assert_eq!(
        records.len(),
        entries.len(),
        "one CDC record per journaled change, no more"
    );

    // Index the CDC records by (transaction, table, operation, key).
    let mut by_identity: HashMap<(i64, String, String, String), Vec<&CdcRecord>> = HashMap::new();
    for record in &records {
        let identity = (
            record.value["source"]["transaction_id"]
                .as_i64()
                .expect("xid"),
            record.table().to_string(),
            record.operation().to_string(),
            Value::Object(primary_key(record)).to_string(),
        );
        by_identity.entry(identity).or_default().push(record);
    }

    let mut matched: Vec<&CdcRecord> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let identity = (
            entry.xid,
            entry.table.clone(),
            entry.operation.clone(),
            Value::Object(entry.key.clone()).to_string(),
        );
        let candidates = by_identity.get_mut(&identity).unwrap_or_else(|| {
            panic!(
                "journal entry {} not in the CDC topic: {entry:?}",
                entry.seq
            )
        });
        assert!(
            !candidates.is_empty(),
            "journal entry {} matched twice",
            entry.seq
        );
        let record = candidates.remove(0);
        match &entry.row {
            Some(row) => assert_eq!(
                plain_row(&record.value["after_values"]),
                *row,
                "values of journal entry {}",
                entry.seq
            ),
            None => {
                assert_eq!(record.value["after_values"], Value::Null);
                for (column, key) in &entry.key {
                    assert_eq!(
                        &record.value["before_values"][column], key,
                        "deleted key of entry {}",
                        entry.seq
                    );
                }
            }
        }
        matched.push(record);
    }

    // The journal's order is commit order: the CDC positions rise along it.
    for (pair, records) in entries.windows(2).zip(matched.windows(2)) {
        assert!(
            records[0].position() < records[1].position(),
            "journal entries {} and {} out of commit order",
            pair[0].seq,
            pair[1].seq
        );
    }
    // Per key, Kafka holds the changes in the order they happened.
    let mut last_by_key: HashMap<&str, &CdcRecord> = HashMap::new();
    for record in &matched {
        if let Some(previous) = last_by_key.insert(record.key.as_str(), record) {
            assert_eq!(
                previous.partition, record.partition,
                "one key, one partition"
            );
            assert!(
                previous.offset < record.offset,
                "per-key order broken for {}",
                record.key
            );
        }
    }
    let kinds: std::collections::HashSet<(&str, &str)> =
        matched.iter().map(|r| (r.table(), r.operation())).collect();
    assert_eq!(
        kinds.len(),
        9,
        "every operation on every table was exercised: {kinds:?}"
    );
    stack.shutdown().await.unwrap();
}
