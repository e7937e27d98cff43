//! While the captured tables are idle and other databases write WAL, the slot keeps advancing:
//! an idle source does not pin WAL on the server.

use std::time::Duration;

use local_stack::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn the_slot_advances_while_only_other_databases_write() {
    let mut options = StackOptions::for_tests("idle-source");
    options.start_connector = true;
    let stack = Stack::start(options).await.expect("start the stack");
    let confirmed = || async {
        stack.psql("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_connector'").await.unwrap().trim().to_string()
    };
    let before = confirmed().await;
    stack.psql_in("postgres", "CREATE TABLE noise AS SELECT g AS id, repeat('x', 200) AS filler FROM generate_series(1, 20000) g").await.unwrap();
    let written = stack
        .psql_in("postgres", "SELECT pg_current_wal_lsn()")
        .await
        .unwrap()
        .trim()
        .to_string();
    let reached = format!(
        "SELECT confirmed_flush_lsn >= '{written}' FROM pg_replication_slots WHERE slot_name = 'cdc_connector'"
    );
    let mut advanced = false;
    for _ in 0..120 {
        if stack.psql(&reached).await.unwrap().trim() == "t" {
            advanced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        advanced,
        "the slot stayed at {} (was {before}) while the server wrote up to {written}",
        confirmed().await
    );
    stack.shutdown().await.unwrap();
}
