//! Large and odd transactions: a transaction far larger than logical_decoding_work_mem is
//! streamed by PostgreSQL while in progress, staged by the connector and published only at
//! commit, without its rolled-back savepoint; an aborted one is never published. Each committed
//! transaction's boundary (id, event counts) is in topic_cdc_transactions, and logical decoding
//! messages are published by prefix.

use std::time::Duration;

use e2e::{CdcRecord, cdc_records, connector_args_with, read_topic_until, wait_for_health_status};
use local_stack::{Stack, StackOptions};
use serde_json::json;

const KEPT: usize = 20_000;

#[tokio::test(flavor = "multi_thread")]
async fn streamed_aborted_and_boundary_records() {
    let mut options = StackOptions::for_tests("transactions");
    options.start_connector = false;
    let stack = Stack::start(options).await.expect("start the stack");
    // Make PostgreSQL stream anything over 64 kB instead of spilling it on the server.
    stack
        .psql("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'")
        .await
        .unwrap();
    stack.psql("SELECT pg_reload_conf()").await.unwrap();
    let (args, health) = connector_args_with(&stack, &[("--message-prefixes", "app.*")]);
    let mut connector = e2e::connector_command(&stack, &args).spawn().unwrap();
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();

    stack
        .psql(&format!(
            "BEGIN; \
             INSERT INTO users (email, full_name) SELECT 'big-' || i || '@example.vn', 'Big ' || i FROM generate_series(1, {KEPT}) i; \
             SAVEPOINT before_mistake; \
             INSERT INTO users (email, full_name) SELECT 'undone-' || i || '@example.vn', 'Undone' FROM generate_series(1, 5000) i; \
             ROLLBACK TO SAVEPOINT before_mistake; \
             SELECT pg_logical_emit_message(true, 'app.audit', 'bulk import'); \
             COMMIT;"
        ))
        .await
        .unwrap();
    stack
        .psql("BEGIN; INSERT INTO users (email, full_name) SELECT 'aborted-' || i || '@example.vn', 'Aborted' FROM generate_series(1, 20000) i; ROLLBACK;")
        .await
        .unwrap();
    stack
        .psql("SELECT pg_logical_emit_message(false, 'app.ping', 'hello')")
        .await
        .unwrap();
    stack
        .psql("SELECT pg_logical_emit_message(false, 'other.noise', 'not selected')")
        .await
        .unwrap();
    stack.psql("TRUNCATE payments").await.unwrap();
    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('after@example.vn', 'After')")
        .await
        .unwrap();

    // Replication-slot statistics are flushed now and then: poll them.
    let mut streamed = 0;
    for _ in 0..120 {
        streamed = stack
            .psql("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'cdc_connector'")
            .await
            .unwrap()
            .trim()
            .parse()
            .unwrap_or(0);
        if streamed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        streamed >= 2,
        "PostgreSQL streamed the big transactions while in progress ({streamed})"
    );

    let email = |r: &CdcRecord| {
        r.value["after_values"]["email"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Partitions are read in no particular order, so wait for every kept row and the last one
    // (counted as records arrive: a scan per record would be quadratic).
    let (mut kept, mut last_seen, mut truncated, mut counted) = (0, false, false, 0);
    let changes = cdc_records(&stack, Duration::from_secs(180), |records| {
        for record in &records[counted..] {
            kept += usize::from(email(record).starts_with("big-"));
            last_seen |= email(record) == "after@example.vn";
            truncated |= record.operation() == "TRUNCATE";
        }
        counted = records.len();
        kept >= KEPT && last_seen && truncated
    })
    .await;
    let truncate = changes
        .iter()
        .find(|r| r.operation() == "TRUNCATE")
        .expect("the TRUNCATE");
    assert_eq!(truncate.table(), "public.payments");
    assert_eq!(truncate.value["primary_key"], json!({}));
    assert_eq!(truncate.value["before_values"], serde_json::Value::Null);
    assert_eq!(truncate.key, "public.payments/{}");
    let big: Vec<&CdcRecord> = changes
        .iter()
        .filter(|r| email(r).starts_with("big-"))
        .collect();
    assert_eq!(
        big.len(),
        KEPT,
        "every kept row of the streamed transaction"
    );
    assert!(
        changes.iter().all(|r| !email(r).starts_with("undone-")),
        "a rolled-back savepoint is not published"
    );
    assert!(
        changes.iter().all(|r| !email(r).starts_with("aborted-")),
        "an aborted transaction is not published"
    );
    // Exactly what committed was delivered: once the slot confirmed everything, the connector
    // has counted the deliveries of the kept rows and the last one, and nothing else.
    e2e::wait_until_slot_confirms_current_wal(&stack, "cdc_connector", Duration::from_secs(60))
        .await
        .expect("the slot confirms the whole stream");
    let metrics = e2e::metrics_text(&health).await.unwrap();
    let delivered = format!(
        "cdc_events_total{{table=\"public.users\",operation=\"INSERT\"}} {}",
        KEPT + 1
    );
    assert!(
        metrics.contains(&delivered),
        "expected {delivered} in\n{metrics}"
    );
    let xid = big[0].value["source"]["transaction_id"].clone();
    let commit_lsn = big[0].value["source"]["commit_lsn"].clone();
    let mut sequences: Vec<i64> = big.iter().map(|r| r.position().1).collect();
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (0..KEPT as i64).collect::<Vec<_>>(),
        "one sequence number per change, none skipped"
    );

    let transactions = read_topic_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        "topic_cdc_transactions",
        Duration::from_secs(60),
        |r| r.len() >= 2,
    )
    .await
    .unwrap();
    let boundary = transactions
        .iter()
        .find(|t| t.value["transaction_id"] == xid)
        .expect("the big transaction's boundary");
    assert_eq!(
        boundary.value["event_count"],
        json!(KEPT + 1),
        "its changes and its transactional message"
    );
    assert_eq!(
        boundary.value["events_by_table"],
        json!({"public.users": KEPT})
    );
    assert_eq!(boundary.value["commit_lsn"], commit_lsn);

    let messages = read_topic_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        "topic_cdc_messages",
        Duration::from_secs(60),
        |r| r.len() >= 2,
    )
    .await
    .unwrap();
    let prefixes: Vec<&str> = messages
        .iter()
        .map(|m| m.value["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(
        prefixes,
        ["app.audit", "app.ping"],
        "selected prefixes only, heartbeats never"
    );
    assert_eq!(messages[0].value["transactional"], true);
    assert_eq!(messages[0].value["commit_lsn"], commit_lsn);
    assert_eq!(messages[0].value["content"], json!(hex("bulk import")));
    assert_eq!(messages[1].value["transactional"], false);
    assert_eq!(messages[1].value["transaction_id"], serde_json::Value::Null);
    connector.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
