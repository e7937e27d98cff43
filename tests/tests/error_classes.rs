//! Errors are classified by what retrying can do (crates/cdc-connector/src/error.rs), checked here
//! against the real thing:
//! - a spill directory that runs out of space in the middle of a streamed transaction is
//!   transient: the connector retries, `/health` names the cause, and once there is room it goes
//!   on with nothing lost;
//! - a record Kafka refuses for good (too large) is definite: the connector stops with the cause
//!   instead of retrying forever, and never confirms the transaction.

use std::{collections::HashSet, process::Stdio, time::Duration};

use e2e::{
    connector_args_with, connector_command, disk::SmallDisk, metrics_text, read_cdc_until,
    stack_without_connector, wait_for_health_status,
};
use local_stack::Stack;

/// A table of its own in the publication, so the test's rows are easy to count.
async fn create_published_table(stack: &Stack, table: &str) {
    stack
        .psql(&format!(
            "CREATE TABLE public.{table} (id int PRIMARY KEY, payload text); \
             ALTER PUBLICATION cdc_publication ADD TABLE public.{table}"
        ))
        .await
        .expect("create the table");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spill_directory_pauses_streaming_until_there_is_room_and_loses_nothing() {
    // Mounting a small file system needs root (as CI runs); say so instead of passing silently.
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root); this test runs in CI as root");
        return;
    };
    let stack = stack_without_connector("spill-full").await;
    create_published_table(&stack, "spill_rows").await;
    // Transactions over 64 kB are streamed before their commit, so they are staged on disk.
    for sql in [
        "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'",
        "SELECT pg_reload_conf()",
    ] {
        stack.psql(sql).await.unwrap();
    }
    let spill_dir = disk.path().to_string_lossy().into_owned();
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--spill-dir", &spill_dir),
            ("--max-retry-backoff-secs", "2"),
        ],
    );
    let mut connector = connector_command(&stack, &args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();

    // About 2 MB of pgoutput in one transaction: eight times what the disk holds.
    const ROWS: usize = 8_000;
    stack
        .psql(&format!(
            "INSERT INTO public.spill_rows SELECT g, repeat('y', 200) FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .unwrap();
    let body = wait_for_health_status(&health, "spill_full", Duration::from_secs(60))
        .await
        .unwrap();
    let status = body["status"].as_str().unwrap_or_default();
    assert!(
        status.starts_with("retrying:") && status.contains("--spill-dir"),
        "{status}"
    );
    assert!(
        connector.try_wait().unwrap().is_none(),
        "a full spill directory does not stop the connector"
    );
    let confirmed = stack
        .psql("SELECT confirmed_flush_lsn < pg_current_wal_lsn() FROM pg_replication_slots WHERE slot_name = 'cdc_connector'")
        .await
        .unwrap();
    assert_eq!(
        confirmed.trim(),
        "t",
        "the transaction is not confirmed while it cannot be staged"
    );

    disk.resize("64m").expect("grow the disk");
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(180),
        |records| {
            records
                .iter()
                .filter(|r| r.table() == "public.spill_rows")
                .count()
                >= ROWS
        },
    )
    .await
    .unwrap();
    let ids: HashSet<i64> = records
        .iter()
        .filter(|r| r.table() == "public.spill_rows")
        .filter_map(|r| r.value["after_values"]["id"].as_i64())
        .collect();
    assert_eq!(ids.len(), ROWS, "every row once there was room, none lost");
    wait_for_health_status(&health, "streaming", Duration::from_secs(30))
        .await
        .unwrap();
    let metrics = metrics_text(&health).await.unwrap();
    assert!(
        metrics.contains("cdc_errors_total{kind=\"spill_full\"}"),
        "{metrics}"
    );
    connector.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_kafka_refuses_for_good_stops_the_connector_with_the_cause() {
    let stack = stack_without_connector("kafka-rejected").await;
    create_published_table(&stack, "huge_rows").await;
    let (args, health) = connector_args_with(&stack, &[]);
    let connector = connector_command(&stack, &args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();
    // Over the producer's message.max.bytes (1 MB): the broker would never take it.
    stack
        .psql("INSERT INTO public.huge_rows VALUES (1, repeat(md5('x'), 80000))")
        .await
        .unwrap();
    let written = stack.psql("SELECT pg_current_wal_lsn()").await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), connector.wait_with_output())
        .await
        .expect("a definite error stops the connector instead of retrying forever")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("kafka_rejected") && stderr.contains("max.message.bytes"),
        "the cause and what to do: {stderr}"
    );
    let confirmed = stack
        .psql(&format!(
            "SELECT confirmed_flush_lsn < '{}' FROM pg_replication_slots WHERE slot_name = 'cdc_connector'",
            written.trim()
        ))
        .await
        .unwrap();
    assert_eq!(
        confirmed.trim(),
        "t",
        "the refused change is never confirmed"
    );
    stack.shutdown().await.unwrap();
}
