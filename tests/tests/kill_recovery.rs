//! SIGKILL the connector again and again while thousands of changes commit; after a restart
//! every change is in the topic. Duplicates may appear (changes after the last acknowledged
//! position are replayed), but a duplicate always carries the same `change_id`. Large
//! transactions, staged and replayed through a producer of their own, keep each key's changes
//! in commit order with the small transactions around them, kills or not.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use e2e::{CdcRecord, cdc_records};
use local_stack::{Stack, StackOptions};

const ITERATIONS: usize = 4000;

/// Large transactions, each followed by a small one updating its rows.
const LARGE_TRANSACTIONS: usize = 30;
const ROWS_PER_LARGE_TRANSACTION: usize = 1000;

fn identity(record: &CdcRecord) -> (String, String, String) {
    (
        record.table().to_string(),
        record.operation().to_string(),
        record.value["primary_key"].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_change_is_lost_across_repeated_sigkill() {
    let mut options = StackOptions::for_tests("kill-recovery");
    options.start_connector = true;
    let mut stack = Stack::start(options).await.expect("start the stack");

    // One transaction per change pair, paced so the kills land mid-stream.
    let writer_sql = format!(
        "DO $$ BEGIN FOR i IN 1..{ITERATIONS} LOOP \
           INSERT INTO users (email, full_name) VALUES ('load-' || i || '@example.vn', 'Load ' || i); \
           COMMIT; \
           UPDATE users SET loyalty_tier = 'silver' WHERE email = 'load-' || i || '@example.vn'; \
           COMMIT; \
           PERFORM pg_sleep(0.0005); \
         END LOOP; END $$"
    );
    let writer = e2e::psql_command(&stack, &writer_sql)
        .spawn()
        .expect("start psql");

    for pause_ms in [700u64, 900, 600] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        stack.kill_connector();
        stack
            .start_connector()
            .await
            .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
    }
    let output = writer.wait_with_output().await.expect("writer finished");
    assert!(output.status.success(), "the writer failed");
    let committed: usize = stack
        .psql("SELECT count(*) FROM users WHERE email LIKE 'load-%'")
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(committed, ITERATIONS);

    let expected = 2 * ITERATIONS;
    // Distinct changes counted as records arrive (a scan per record would be quadratic).
    let (mut seen, mut counted) = (HashSet::new(), 0);
    let records = cdc_records(&stack, Duration::from_secs(180), |records| {
        seen.extend(records[counted..].iter().map(identity));
        counted = records.len();
        seen.len() >= expected
    })
    .await;

    // Every committed change is there: each user's INSERT and UPDATE.
    let distinct: HashSet<_> = records.iter().map(identity).collect();
    assert_eq!(distinct.len(), expected);
    for operation in ["INSERT", "UPDATE"] {
        assert_eq!(
            distinct.iter().filter(|(_, op, _)| op == operation).count(),
            ITERATIONS,
            "{operation}s"
        );
    }
    // A change delivered twice is the same change: one change_id per change, and a change_id
    // always carries the same content.
    let mut ids_per_change: HashMap<_, HashSet<String>> = HashMap::new();
    let mut content_per_id: HashMap<String, String> = HashMap::new();
    for record in &records {
        ids_per_change
            .entry(identity(record))
            .or_default()
            .insert(record.change_id().to_string());
        let mut content = record.value.clone();
        content["timestamp"] = serde_json::Value::Null;
        let previous = content_per_id
            .entry(record.change_id().to_string())
            .or_insert_with(|| content.to_string());
        assert_eq!(
            previous,
            &content.to_string(),
            "duplicates of {} differ",
            record.change_id()
        );
    }
    assert!(
        ids_per_change.values().all(|ids| ids.len() == 1),
        "a replayed change got a new change_id"
    );
    eprintln!(
        "{} records for {expected} changes ({} duplicates)",
        records.len(),
        records.len() - expected
    );
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_transactions_lose_nothing_and_keep_key_order_across_repeated_sigkill() {
    let mut options = StackOptions::for_tests("kill-recovery-replays");
    options.start_connector = false;
    let mut stack = Stack::start(options).await.expect("start the stack");
    // PostgreSQL streams anything over 64 kB while in progress: each large transaction is
    // staged by the connector and replayed at its commit.
    stack
        .psql("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'")
        .await
        .unwrap();
    stack.psql("SELECT pg_reload_conf()").await.unwrap();
    stack.start_connector().await.expect("start the connector");

    // A large transaction inserting rows, then a small one updating each of them: an update
    // published before its insert would be a key's changes out of order.
    let writer_sql = format!(
        "DO $$ BEGIN FOR t IN 1..{LARGE_TRANSACTIONS} LOOP \
           INSERT INTO users (email, full_name) \
             SELECT 'replay-' || t || '-' || i || '@example.vn', 'Replay ' || i \
             FROM generate_series(1, {ROWS_PER_LARGE_TRANSACTION}) i; \
           COMMIT; \
           UPDATE users SET loyalty_tier = 'gold' WHERE email LIKE 'replay-' || t || '-%'; \
           COMMIT; \
           PERFORM pg_sleep(0.05); \
         END LOOP; END $$"
    );
    let writer = e2e::psql_command(&stack, &writer_sql)
        .spawn()
        .expect("start psql");
    for pause_ms in [800u64, 1100, 700] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        stack.kill_connector();
        stack
            .start_connector()
            .await
            .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
    }
    let output = writer.wait_with_output().await.expect("writer finished");
    assert!(output.status.success(), "the writer failed");

    let expected = 2 * LARGE_TRANSACTIONS * ROWS_PER_LARGE_TRANSACTION;
    let (mut seen, mut counted) = (HashSet::new(), 0);
    let records = cdc_records(&stack, Duration::from_secs(180), |records| {
        seen.extend(records[counted..].iter().map(identity));
        counted = records.len();
        seen.len() >= expected
    })
    .await;
    let distinct: HashSet<_> = records.iter().map(identity).collect();
    assert_eq!(distinct.len(), expected, "every insert and update arrived");

    // Per key, in the order the topic holds them, each change's first copy comes in commit
    // order (a copy published again after a kill may follow).
    let mut by_key: HashMap<&str, Vec<&CdcRecord>> = HashMap::new();
    for record in &records {
        by_key.entry(&record.key).or_default().push(record);
    }
    for (key, mut copies) in by_key {
        copies.sort_by_key(|r| (r.partition, r.offset));
        let mut firsts = Vec::new();
        let mut ids = HashSet::new();
        for record in copies {
            if ids.insert(record.change_id()) {
                firsts.push((record.position(), record.operation()));
            }
        }
        assert!(
            firsts.is_sorted_by_key(|(position, _)| *position),
            "{key}: changes out of commit order: {firsts:?}"
        );
    }
    eprintln!(
        "{} records for {expected} changes ({} duplicates)",
        records.len(),
        records.len() - expected
    );
    stack.shutdown().await.unwrap();
}
