//! A slot the connector streamed from disappears: dropped by hand, or invalidated by the server
//! because it fell behind `max_slot_wal_keep_size`. The changes after its last confirmed
//! position are gone with it, so the connector never just creates a new slot and streams on:
//! - with `--snapshot-mode initial` (the default) it stops with a definite `slot_lost` error
//!   that says what happened and what to do;
//! - with `when_needed` it takes a new snapshot, whose READ records carry the rows changed while
//!   there was no slot, counts it in `cdc_slot_lost_total`, and streams on from there.

use std::time::Duration;

use e2e::{
    cdc_records, connector_args_with, connector_stderr_after_failure, metric_value, metrics_text,
    wait_until_slot_confirms_current_wal,
};
use local_stack::{Stack, StackOptions};

const SLOT: &str = "cdc_connector";

async fn stack_streaming(name: &str, extra: &[&str]) -> Stack {
    let mut options = StackOptions::for_tests(name);
    options
        .connector_extra_args
        .extend(extra.iter().map(|a| a.to_string()));
    let stack = Stack::start(options).await.expect("start the stack");
    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('before@example.vn', 'Before')")
        .await
        .unwrap();
    wait_until_slot_confirms_current_wal(&stack, SLOT, Duration::from_secs(60))
        .await
        .unwrap();
    stack
}

/// Kills the connector, drops its slot, and commits a row while there is no slot: no change
/// record can ever carry that row.
async fn lose_the_slot_then_write(stack: &mut Stack) {
    stack.kill_connector();
    stack
        .psql(&format!("SELECT pg_drop_replication_slot('{SLOT}')"))
        .await
        .expect("drop the slot");
    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('gap@example.vn', 'Gap')")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_slot_stops_the_connector_with_a_definite_error_naming_the_remedy() {
    let mut stack = stack_streaming("slot-dropped", &[]).await;
    lose_the_slot_then_write(&mut stack).await;

    let (args, _) = connector_args_with(&stack, &[]);
    let stderr = connector_stderr_after_failure(&stack, &args).await;
    assert!(
        stderr.contains("replication slot cdc_connector")
            && stderr.contains("no longer exists (dropped)")
            && stderr.contains("slot_lost")
            && stderr.contains("--snapshot-mode when_needed"),
        "{stderr}"
    );
    // No new slot was created behind the operator's back.
    let slots = stack
        .psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .await
        .unwrap();
    assert_eq!(slots.trim(), "0");
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalidated_slot_stops_the_connector_with_a_definite_error() {
    let mut stack = stack_streaming("slot-invalidated", &[]).await;
    stack.kill_connector();
    // Let the slot fall behind max_slot_wal_keep_size: 1 MB kept, 64 MB written, a checkpoint.
    for sql in [
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
        "SELECT pg_reload_conf()",
        "CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 64000) g",
        "SELECT pg_switch_wal()",
        "CHECKPOINT",
    ] {
        stack.psql(sql).await.unwrap();
    }
    let status = stack
        .psql(&format!(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .await
        .unwrap();
    assert_eq!(status.trim(), "lost", "the server invalidated the slot");

    let (args, _) = connector_args_with(&stack, &[]);
    let stderr = connector_stderr_after_failure(&stack, &args).await;
    assert!(
        stderr.contains("invalidated")
            && stderr.contains("max_slot_wal_keep_size")
            && stderr.contains("slot_lost"),
        "{stderr}"
    );
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_when_needed_a_lost_slot_is_replaced_by_a_new_snapshot_and_streaming_goes_on() {
    let mut stack =
        stack_streaming("slot-lost-resnapshot", &["--snapshot-mode", "when_needed"]).await;
    lose_the_slot_then_write(&mut stack).await;
    stack
        .start_connector()
        .await
        .expect("restart the connector");
    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('after@example.vn', 'After')")
        .await
        .unwrap();

    let email = |r: &e2e::CdcRecord| {
        r.value["after_values"]["email"]
            .as_str()
            .or_else(|| r.value["after_values"]["email"]["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let has = |records: &[e2e::CdcRecord], operation: &str, address: &str| {
        records
            .iter()
            .any(|r| r.operation() == operation && email(r) == address)
    };
    // The new snapshot reads every row: the one streamed before the slot was lost and the one
    // changed while there was no slot. (Records come from several partitions, so the reader
    // waits for all of them.)
    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        has(records, "INSERT", "after@example.vn")
            && has(records, "READ", "gap@example.vn")
            && has(records, "READ", "before@example.vn")
    })
    .await;
    let snapshot_point = |address: &str| {
        records
            .iter()
            .find(|r| r.operation() == "READ" && email(r) == address)
            .and_then(|r| r.change_id().split('-').next())
            .map(String::from)
    };
    assert_eq!(
        snapshot_point("gap@example.vn"),
        snapshot_point("before@example.vn"),
        "one new snapshot holds both rows"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.operation() == "INSERT" && email(r) == "gap@example.vn"),
        "nothing can stream what no slot recorded"
    );
    let metrics = metrics_text(&stack.connector_url()).await.unwrap();
    assert_eq!(
        metric_value(&metrics, "cdc_slot_lost_total{action=\"resnapshot\"}"),
        1.0,
        "{metrics}"
    );
    stack.shutdown().await.unwrap();
}
