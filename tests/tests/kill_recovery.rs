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

/// Large transactions (staged, replayed), each followed by a small one: enough that the
/// connector is replaying one most of the time the kills land.
const LARGE_TRANSACTIONS: usize = 25;
const ROWS_PER_LARGE_TRANSACTION: usize = 4000;
/// Rows of each large transaction that the small one after it updates, and the next large one
/// again.
const ROWS_UPDATED: usize = 10;

/// Runs `writer_sql` through psql, meanwhile killing the connector after each of `pauses_ms`
/// and restarting it at once; returns once the writer succeeded.
async fn write_while_killing(stack: &mut Stack, writer_sql: &str, pauses_ms: &[u64]) {
    let writer = e2e::psql_command(stack, writer_sql)
        .spawn()
        .expect("start psql");
    for pause_ms in pauses_ms {
        tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
        stack.kill_connector();
        stack
            .start_connector()
            .await
            .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
    }
    let output = writer.wait_with_output().await.expect("writer finished");
    assert!(output.status.success(), "the writer failed");
}

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
    write_while_killing(&mut stack, &writer_sql, &[700, 900, 600]).await;
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
    // staged by the connector and replayed at its commit, through its own producer.
    stack
        .psql("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'")
        .await
        .unwrap();
    stack.psql("SELECT pg_reload_conf()").await.unwrap();
    stack.start_connector().await.expect("start the connector");

    // Transaction t inserts rows (replayed) and updates rows of t - 1 that the small
    // transaction after t - 1 updated (streamed): each key changes in a replayed transaction,
    // then in a small one, then in a replayed one again. A change published before the one
    // committed ahead of it would be a key's changes out of order.
    let rows = |t: &str, count: usize| {
        format!(
            "SELECT 'replay-' || {t} || '-' || i || '@example.vn' FROM generate_series(1, {count}) i"
        )
    };
    let writer_sql = format!(
        "DO $$ BEGIN FOR t IN 1..{LARGE_TRANSACTIONS} LOOP \
           INSERT INTO users (email, full_name) \
             SELECT email, 'Replay' FROM ({all}) AS new_rows(email); \
           UPDATE users SET loyalty_tier = 'platinum' WHERE email IN ({previous}); \
           COMMIT; \
           UPDATE users SET loyalty_tier = 'gold' WHERE email IN ({updated}); \
           COMMIT; \
           PERFORM pg_sleep(0.02); \
         END LOOP; END $$",
        all = rows("t", ROWS_PER_LARGE_TRANSACTION),
        previous = rows("(t - 1)", ROWS_UPDATED),
        updated = rows("t", ROWS_UPDATED),
    );
    write_while_killing(&mut stack, &writer_sql, &[600, 900, 700, 800]).await;

    // Inserts, the small transactions' updates, and the large ones' updates of the rows before.
    let expected = LARGE_TRANSACTIONS * (ROWS_PER_LARGE_TRANSACTION + ROWS_UPDATED)
        + (LARGE_TRANSACTIONS - 1) * ROWS_UPDATED;
    // A change published twice (after a kill) carries the same change_id.
    let (mut seen, mut counted) = (HashSet::new(), 0);
    let records = cdc_records(&stack, Duration::from_secs(180), |records| {
        seen.extend(records[counted..].iter().map(|r| r.change_id().to_string()));
        counted = records.len();
        seen.len() >= expected
    })
    .await;
    let distinct: HashSet<_> = records.iter().map(CdcRecord::change_id).collect();
    assert_eq!(
        distinct.len(),
        expected,
        "every change arrived, once or more"
    );

    // Per key, in the order the topic holds them, each change's first copy comes in commit
    // order (a copy published again after a kill may follow).
    let mut by_key: HashMap<&str, Vec<&CdcRecord>> = HashMap::new();
    for record in &records {
        by_key.entry(&record.key).or_default().push(record);
    }
    let mut keys_changed_thrice = 0;
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
        keys_changed_thrice += usize::from(firsts.len() == 3);
    }
    assert_eq!(
        keys_changed_thrice,
        (LARGE_TRANSACTIONS - 1) * ROWS_UPDATED,
        "keys inserted, updated by a small transaction, then by a replayed one"
    );
    eprintln!(
        "{} records for {expected} changes ({} duplicates)",
        records.len(),
        records.len() - expected
    );
    stack.shutdown().await.unwrap();
}
