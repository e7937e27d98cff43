//! The initial snapshot: consistent with the slot (writes running during the snapshot appear
//! exactly once, as READ or as a later change), every snapshot mode, and an interrupted
//! snapshot that is redone cleanly.

use std::{
    collections::{BTreeMap, HashMap},
    process::Stdio,
    time::Duration,
};

use e2e::{CdcRecord, connector_args_with, read_cdc_until, wait_for_health_status};
use local_stack::Stack;
use serde_json::Value;

async fn stack_with_users(name: &str, users: usize) -> Stack {
    let stack = e2e::stack_without_connector(name).await;
    stack
        .psql(&format!(
            "INSERT INTO users (email, full_name, loyalty_tier) SELECT 'u' || i || '@example.vn', 'User ' || i, 'basic' FROM generate_series(1, {users}) i"
        ))
        .await
        .unwrap();
    stack
}

fn spawn(stack: &Stack, args: &[String]) -> tokio::process::Child {
    e2e::connector_command(stack, args)
        .spawn()
        .expect("start the connector")
}

fn user_id(record: &CdcRecord) -> i64 {
    record.value["primary_key"]["user_id"]
        .as_i64()
        .unwrap_or(-1)
}

/// Replays the topic per key in commit order (READs first: they hold the state at the slot's
/// consistent point) and returns each user's final loyalty tier; deleted users are absent.
fn fold(records: &[CdcRecord]) -> BTreeMap<i64, String> {
    let mut ordered: Vec<&CdcRecord> = records
        .iter()
        .filter(|r| r.table() == "public.users")
        .collect();
    ordered.sort_by_key(|r| (r.operation() != "READ", r.position()));
    let mut state = BTreeMap::new();
    for record in ordered {
        match record.operation() {
            "DELETE" => {
                state.remove(&user_id(record));
            }
            _ => {
                state.insert(
                    user_id(record),
                    record.value["after_values"]["loyalty_tier"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    state
}

async fn database_state(stack: &Stack) -> BTreeMap<i64, String> {
    stack
        .psql("SELECT user_id || ',' || loyalty_tier FROM users ORDER BY user_id")
        .await
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(','))
        .map(|(id, tier)| (id.parse().unwrap(), tier.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_the_snapshot_appear_exactly_once_as_read_or_as_a_later_change() {
    const USERS: usize = 60_000;
    let stack = stack_with_users("snapshot-seam", USERS).await;
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--snapshot-workers", "2"),
            ("--snapshot-chunk-pages", "64"),
        ],
    );
    let mut connector = spawn(&stack, &args);
    // Writes race with the snapshot: updates and deletes of existing rows, new rows.
    let writer_sql = "DO $$ BEGIN FOR i IN 1..300 LOOP \
        UPDATE users SET loyalty_tier = 'silver' WHERE user_id = i * 150; \
        DELETE FROM users WHERE user_id = i * 150 + 1; \
        INSERT INTO users (email, full_name) VALUES ('new' || i || '@example.vn', 'New ' || i); \
        COMMIT; PERFORM pg_sleep(0.002); END LOOP; END $$";
    let writer = e2e::psql_command(&stack, writer_sql).status();
    let writer = tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .unwrap()
        .unwrap();
    assert!(writer.success());
    wait_for_health_status(&health, "streaming", Duration::from_secs(120))
        .await
        .unwrap();
    let expected = database_state(&stack).await;
    e2e::wait_until_slot_confirms_current_wal(&stack, "cdc_connector", Duration::from_secs(120))
        .await
        .unwrap();
    let delivered =
        e2e::delivered_events(&e2e::metrics_text(&health).await.unwrap(), "public.users") as usize;
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(240),
        |records| records.len() >= delivered,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fold(&records),
        expected,
        "replaying the topic gives the database's final state"
    );

    // Each row that existed at the snapshot point is read once; rows created later are not.
    let mut reads: HashMap<i64, usize> = HashMap::new();
    let mut inserts: HashMap<i64, usize> = HashMap::new();
    for record in &records {
        match record.operation() {
            "READ" => *reads.entry(user_id(record)).or_default() += 1,
            "INSERT" => *inserts.entry(user_id(record)).or_default() += 1,
            _ => {}
        }
    }
    assert!(reads.values().all(|n| *n == 1), "a row read twice");
    assert!(
        inserts.keys().all(|id| !reads.contains_key(id)),
        "a row both read and inserted"
    );
    assert!(
        reads.len() + inserts.len() >= USERS,
        "every row is there as READ or INSERT"
    );
    let read_ids: std::collections::HashSet<&str> = records
        .iter()
        .filter(|r| r.operation() == "READ")
        .map(CdcRecord::change_id)
        .collect();
    assert_eq!(read_ids.len(), reads.len(), "READ change ids are unique");
    assert!(
        records
            .iter()
            .filter(|r| r.operation() == "READ")
            .all(|r| r.change_id().contains("-READ-public.users/"))
    );
    // Read and streamed alike, a record's Kafka timestamp is the `timestamp` it carries, and
    // its key is on the partition Java's producer (Debezium's) would have put it on.
    let partitions = platform::topics::CDC_CHANGES.partitions;
    for record in &records {
        assert_eq!(
            record.kafka_timestamp_millis,
            record.value["timestamp"].as_i64(),
            "{}",
            record.change_id()
        );
        assert_eq!(
            record.partition,
            e2e::records::java_partition(record.key.as_bytes(), partitions),
            "{}",
            record.key
        );
    }
    connector.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_modes() {
    let stack = stack_with_users("snapshot-modes", 500).await;
    let count_reads =
        |records: &[CdcRecord]| records.iter().filter(|r| r.operation() == "READ").count();

    // initial_only: publishes the rows, exits 0, creates no slot.
    let (args, _) = connector_args_with(
        &stack,
        &[
            ("--snapshot-mode", "initial_only"),
            ("--slot-name", "only_snapshot"),
        ],
    );
    let output = e2e::connector_command(&stack, &args)
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(60),
        |r| count_reads(r) >= 500,
    )
    .await
    .unwrap();
    assert_eq!(count_reads(&records), 500);
    assert_eq!(
        stack
            .psql("SELECT count(*) FROM pg_replication_slots")
            .await
            .unwrap()
            .trim(),
        "0"
    );

    // no_data: streams from a new slot without reading the existing rows.
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--snapshot-mode", "no_data"),
            ("--slot-name", "no_data_slot"),
        ],
    );
    let mut connector = spawn(&stack, &args);
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();
    stack
        .psql("UPDATE users SET loyalty_tier = 'gold' WHERE user_id = 7")
        .await
        .unwrap();
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(60),
        |r| count_reads(r) >= 500 && r.iter().any(|r| r.operation() == "UPDATE"),
    )
    .await
    .unwrap();
    assert_eq!(
        count_reads(&records),
        500,
        "no_data published no READ records"
    );
    connector.kill().await.unwrap();

    // when_needed: the slot exists, so it streams without a snapshot...
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--snapshot-mode", "when_needed"),
            ("--slot-name", "no_data_slot"),
        ],
    );
    let mut connector = spawn(&stack, &args);
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();
    connector.kill().await.unwrap();
    // ... and with a new slot it snapshots first.
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--snapshot-mode", "when_needed"),
            ("--slot-name", "fresh_slot"),
        ],
    );
    let mut connector = spawn(&stack, &args);
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(60),
        |r| count_reads(r) >= 1000,
    )
    .await
    .unwrap();
    assert_eq!(
        count_reads(&records),
        1000,
        "the earlier 500, and 500 from the new slot's snapshot"
    );
    let fresh: Vec<&CdcRecord> = records
        .iter()
        .filter(|r| r.operation() == "READ" && r.value["source"]["slot_name"] == "fresh_slot")
        .collect();
    assert_eq!(fresh.len(), 500);
    let gold = fresh.iter().find(|r| user_id(r) == 7).unwrap();
    assert_eq!(
        gold.value["after_values"]["loyalty_tier"],
        Value::from("gold"),
        "the snapshot sees the committed update"
    );
    connector.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_snapshot_is_redone_not_taken_for_finished() {
    const USERS: usize = 150_000;
    let stack = stack_with_users("snapshot-interrupted", USERS).await;
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--snapshot-workers", "1"),
            ("--snapshot-chunk-pages", "16"),
        ],
    );
    let mut first = spawn(&stack, &args);
    wait_for_health_status(&health, "snapshotting", Duration::from_secs(60))
        .await
        .unwrap();
    // Killed once Kafka has acknowledged some of its rows, well before all (polled every
    // 20 ms): a fixed delay let a fast enough snapshot finish before the kill.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let acknowledged = loop {
        let metrics = e2e::metrics_text(&health).await.unwrap_or_default();
        let rows = e2e::delivered_events(&metrics, "public.users");
        if rows >= 10_000 {
            break rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 10,000 rows of the first attempt acknowledged within 120 s ({rows})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().await.unwrap();
    assert!(
        acknowledged < USERS as u64,
        "the first attempt finished ({acknowledged} rows) before it could be interrupted"
    );
    let interrupted_point = stack
        .psql("SELECT confirmed_flush_lsn FROM pg_replication_slots")
        .await
        .unwrap();

    let mut second = spawn(&stack, &args);
    wait_for_health_status(&health, "streaming", Duration::from_secs(180))
        .await
        .unwrap();
    let completed_point = stack
        .psql("SELECT confirmed_flush_lsn FROM pg_replication_slots")
        .await
        .unwrap();
    assert_ne!(
        interrupted_point.trim(),
        completed_point.trim(),
        "the slot was made anew for the redone snapshot"
    );
    // Counted as records arrive: READs per snapshot attempt (its consistent point).
    let mut reads_per_point: HashMap<String, usize> = HashMap::new();
    let mut counted = 0;
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(240),
        |records| {
            for record in records[counted..]
                .iter()
                .filter(|r| r.operation() == "READ")
            {
                *reads_per_point
                    .entry(
                        record
                            .change_id()
                            .split('-')
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    )
                    .or_default() += 1;
            }
            counted = records.len();
            reads_per_point.values().any(|n| *n >= USERS)
        },
    )
    .await
    .unwrap();
    // The completed attempt has every row exactly once under its own consistent point.
    let mut by_point: HashMap<String, Vec<i64>> = HashMap::new();
    for record in records.iter().filter(|r| r.operation() == "READ") {
        by_point
            .entry(record.change_id().split('-').next().unwrap().to_string())
            .or_default()
            .push(user_id(record));
    }
    let complete = by_point
        .values_mut()
        .find(|ids| ids.len() >= USERS)
        .unwrap();
    complete.sort_unstable();
    complete.dedup();
    assert_eq!(complete.len(), USERS);
    assert!(
        by_point.len() >= 2,
        "the interrupted attempt had published some rows before it was killed"
    );
    second.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}
