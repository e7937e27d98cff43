//! The OLTP driver against a real PostgreSQL (local-stack): after a concurrent run, the journal
//! folded key by key is exactly what the database holds.

use std::{collections::HashMap, time::Duration};

use local_stack::{Stack, StackOptions};
use serde_json::Value;
use sqlx::Connection;
use workload::oltp::{self, db, journal, plan::Mix};

#[tokio::test(flavor = "multi_thread")]
async fn workload_journal_matches_the_database_after_a_concurrent_run() {
    let mut options = StackOptions::for_tests("workload-journal");
    options.start_connector = false;
    options.start_registry = false;
    let stack = Stack::start(options).await.expect("start the stack");
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.jsonl");
    // Deletions weighted up so cascades (users with bookings and payments) certainly happen.
    let mix: Mix = "delete_account=4".parse().unwrap();
    let settings = oltp::OltpSettings {
        pg_url: stack.pg_url(),
        seed: 2024,
        mix,
        rate: 0.0,
        concurrency: 4,
        count: Some(1500),
        duration: None,
        journal: Some(journal_path.clone()),
        progress_every: Duration::from_secs(60),
        email_tag: String::new(),
    };
    let summary = oltp::run(&settings, std::future::pending())
        .await
        .expect("run");
    assert_eq!(
        (summary.planned, summary.failed, summary.skipped),
        (1500, 0, 0),
        "{summary:?}"
    );
    assert_eq!(summary.committed, 1500);

    let entries = journal::read(&journal_path).unwrap();
    assert_eq!(entries.len() as u64, summary.journal_entries);
    assert!(entries.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    // One transaction's changes are contiguous: appends happen per commit, under the lock.
    let mut seen_xids = std::collections::HashSet::new();
    for pair in entries.windows(2) {
        if pair[0].xid != pair[1].xid {
            assert!(
                seen_xids.insert(pair[0].xid),
                "transaction {} appears twice",
                pair[0].xid
            );
        }
    }
    let cascaded = entries
        .iter()
        .filter(|e| e.operation == "DELETE" && e.table != "public.users")
        .count();
    assert!(
        cascaded > 0,
        "account deletions took bookings or payments with them"
    );

    // Fold the journal: the last image of each key, or its absence after a DELETE.
    let mut expected: HashMap<&str, HashMap<i64, Value>> = HashMap::new();
    for entry in &entries {
        let table = db::TABLES
            .iter()
            .find(|t| t.name == entry.table)
            .expect("known table");
        let key = entry.key[table.key].as_i64().expect("bigint key");
        let rows = expected.entry(table.name).or_default();
        match &entry.row {
            Some(row) => {
                rows.insert(key, row.clone());
            }
            None => {
                assert!(
                    rows.remove(&key).is_some(),
                    "{} {key} deleted but never journaled as existing",
                    table.name
                );
            }
        }
    }
    let mut conn = sqlx::PgConnection::connect(&stack.pg_url()).await.unwrap();
    for table in db::TABLES {
        let actual = db::snapshot(&mut conn, table).await.unwrap();
        let wanted = expected.remove(table.name).unwrap_or_default();
        assert!(!actual.is_empty(), "{} has rows", table.name);
        assert_eq!(actual.len(), wanted.len(), "{} row count", table.name);
        for (key, row) in &actual {
            assert_eq!(Some(row), wanted.get(key), "{} {key}", table.name);
        }
    }
    // The statuses the database holds are reachable ones: every confirmed or later booking has
    // money behind it.
    let unpaid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings b WHERE status IN ('confirmed', 'checked_in', 'completed') \
         AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = b.booking_id AND p.status IN ('authorized', 'captured', 'refunded', 'reconciled'))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(unpaid, 0);
    conn.close().await.ok();
    stack.shutdown().await.unwrap();
}
