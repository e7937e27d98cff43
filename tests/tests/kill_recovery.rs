//! SIGKILL the connector again and again while thousands of changes commit; after a restart
//! every change is in the topic. Duplicates may appear (changes after the last acknowledged
//! position are replayed), but a duplicate always carries the same `change_id`.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use e2e::{CdcRecord, cdc_records};
use local_stack::{Stack, StackOptions};

const ITERATIONS: usize = 4000;

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
