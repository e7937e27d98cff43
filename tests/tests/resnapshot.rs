//! An ad-hoc re-snapshot requested by a signal while writes continue: the stream never stops,
//! and per key the topic stays in commit order (a READ never brings back an older state).

use std::{collections::BTreeMap, time::Duration};

use e2e::{CdcRecord, read_cdc_until};
use local_stack::{Stack, StackOptions};

const USERS: usize = 3000;

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_resnapshots_a_table_while_streaming_without_reordering_keys() {
    let mut options = StackOptions::for_tests("resnapshot");
    options.start_connector = true;
    let stack = Stack::start(options).await.expect("start the stack");
    stack
        .psql(&format!("INSERT INTO users (email, full_name) SELECT 'r' || i || '@example.vn', 'v0' FROM generate_series(1, {USERS}) i"))
        .await
        .unwrap();
    // Every update writes a newer version, so a stale READ after it would show.
    let writer_sql = "DO $$ BEGIN FOR i IN 1..400 LOOP \
        UPDATE users SET full_name = 'v' || i WHERE user_id = 1 + (i * 7) % 3000; \
        COMMIT; PERFORM pg_sleep(0.005); END LOOP; END $$";
    let writer = e2e::psql_command(&stack, writer_sql).status();
    let signal = stack.psql(
        "SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{\"type\": \"execute-snapshot\", \"tables\": [\"public.users\"]}')",
    );
    let (written, signalled) = tokio::join!(writer, signal);
    assert!(written.unwrap().success());
    signalled.unwrap();

    // The re-snapshot ends when READs of every row that no window superseded were published;
    // wait for the connector to say so, then for Kafka to have everything.
    let mut done = false;
    for _ in 0..240 {
        let log = std::fs::read_to_string(stack.log_file("connector")).unwrap_or_default();
        if log.contains("re-snapshot done") {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        done,
        "the re-snapshot finished:\n{}",
        stack.log_tail("connector", 30)
    );
    e2e::wait_until_slot_confirms_current_wal(&stack, "cdc_connector", Duration::from_secs(120))
        .await
        .unwrap();
    let delivered = e2e::delivered_events(
        &e2e::metrics_text(&stack.connector_url()).await.unwrap(),
        "public.users",
    ) as usize;
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(240),
        |r| r.len() >= delivered,
    )
    .await
    .unwrap();

    // Per key, in Kafka's order (one partition per key), the last record is the row's state.
    let mut per_key: BTreeMap<i64, Vec<&CdcRecord>> = BTreeMap::new();
    for record in &records {
        per_key
            .entry(record.value["primary_key"]["user_id"].as_i64().unwrap())
            .or_default()
            .push(record);
    }
    let expected: BTreeMap<i64, String> = stack
        .psql("SELECT user_id || ',' || full_name FROM users")
        .await
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(id, name)| (id.parse().unwrap(), name.to_string()))
        .collect();
    let mut reads = 0;
    for (id, history) in &mut per_key {
        history.sort_by_key(|r| r.offset);
        let last = history.last().unwrap();
        assert_eq!(
            last.value["after_values"]["full_name"].as_str(),
            expected.get(id).map(String::as_str),
            "user {id}: {history:?}"
        );
        let read_count = history.iter().filter(|r| r.operation() == "READ").count();
        assert!(read_count <= 1, "user {id} read twice");
        reads += read_count;
    }
    assert_eq!(per_key.len(), USERS);
    assert!(reads > USERS / 2, "most rows were re-read ({reads})");
    let metrics = e2e::metrics_text(&stack.connector_url()).await.unwrap();
    assert!(
        metrics.contains(&format!("cdc_resnapshot_rows_total {reads}")),
        "{metrics}"
    );
    stack.shutdown().await.unwrap();
}

/// A re-snapshot reads values with the same session settings as streaming: before they were
/// shared, every row with an `interval` column was skipped with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_resnapshot_decodes_intervals_dates_and_numbers_like_streaming() {
    let mut options = StackOptions::for_tests("resnapshot-types");
    options.start_connector = true;
    let stack = Stack::start(options).await.expect("start the stack");
    stack
        .psql(
            "CREATE TABLE typed (id int PRIMARY KEY, span interval, amount numeric, at timestamptz, day date, blob bytea, ratio float8);
             ALTER PUBLICATION cdc_publication ADD TABLE typed;
             INSERT INTO typed VALUES
               (1, '1 year 2 months 3 days 04:05:06.5', 12.50, '2024-03-01 12:34:56.789+07', '2024-02-29', '\\x0102', 0.1),
               (2, '-3 days', -1, '1999-12-31 23:59:59+00', '1970-01-01', '\\x', 1e300)",
        )
        .await
        .unwrap();
    stack
        .psql(
            "SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{\"type\": \"execute-snapshot\", \"tables\": [\"public.typed\"]}')",
        )
        .await
        .unwrap();
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(120),
        |r| {
            r.iter()
                .filter(|r| r.table() == "public.typed" && r.operation() == "READ")
                .count()
                >= 2
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "both rows re-snapshotted: {e:#}\n{}",
            stack.log_tail("connector", 30)
        )
    });
    let row = |id: i64| {
        records
            .iter()
            .find(|r| {
                r.table() == "public.typed"
                    && r.operation() == "READ"
                    && r.value["primary_key"]["id"].as_i64() == Some(id)
            })
            .map(|r| r.value["after_values"].clone())
            .unwrap()
    };
    let first = row(1);
    assert_eq!(
        first["span"],
        serde_json::json!({"months": 14, "days": 3, "micros": 14_706_500_000_i64})
    );
    assert_eq!(first["amount"], serde_json::json!({"value": "12.50"}));
    assert_eq!(first["day"], serde_json::json!({"days": 19_782}));
    assert_eq!(first["blob"], serde_json::json!("0102"));
    assert_eq!(
        row(2)["span"],
        serde_json::json!({"months": 0, "days": -3, "micros": 0})
    );
    stack.shutdown().await.unwrap();
}
