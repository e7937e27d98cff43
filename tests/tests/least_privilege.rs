//! The connector runs as `cdc`, the least-privilege role of `sql/roles.sql` (REPLICATION,
//! CONNECT, USAGE on public, SELECT on the published tables): the initial snapshot, the
//! stream, a re-snapshot, heartbeats and the column metadata all work with exactly that, and
//! the role can do nothing else (no writes, no DDL, no other table).

use std::time::Duration;

use e2e::{cdc_records, eventually, metric_value, metrics_text, psql_command_as};
use local_stack::{Stack, StackOptions};

/// Runs `sql` as `role`; its error output when PostgreSQL refuses.
async fn as_role(stack: &Stack, role: &str, sql: &str) -> Result<(), String> {
    let output = psql_command_as(stack, role, sql)
        .output()
        .await
        .expect("run psql");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connector_needs_only_the_cdc_role() {
    let mut options = StackOptions::for_tests("least-privilege");
    options.connector_role = Some("cdc".into());
    options.connector_extra_args = vec!["--heartbeat-interval-secs".into(), "1".into()];
    let stack = Stack::start(options).await.expect("start the stack");

    // Streaming over a replication connection that belongs to cdc.
    let user = stack
        .psql("SELECT usename FROM pg_stat_replication WHERE application_name = 'cdc-connector'")
        .await
        .unwrap();
    assert_eq!(user.trim(), "cdc");

    stack
        .psql(
            "INSERT INTO users (email, full_name) VALUES ('lp@example.vn', 'Least Privilege'); \
             SELECT pg_logical_emit_message(true, 'cdc_connector.signal', \
               '{\"type\": \"execute-snapshot\", \"tables\": [\"public.users\"]}')",
        )
        .await
        .expect("a change and a re-snapshot request");
    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        let of_user = |operation: &str| {
            records.iter().any(|r| {
                r.operation() == operation && r.value["after_values"]["email"] == "lp@example.vn"
            })
        };
        of_user("INSERT") && of_user("READ")
    })
    .await;
    assert!(
        records.iter().all(|r| r.value["table_schema"].is_string()),
        "the catalog was readable for the metadata"
    );
    // Heartbeats (pg_logical_emit_message) succeed as cdc.
    let url = stack.connector_url();
    let metrics = eventually("two heartbeats", Duration::from_secs(20), || async {
        let metrics = metrics_text(&url).await?;
        let written = metric_value(&metrics, "cdc_heartbeats_total{outcome=\"written\"}");
        Ok((written >= 2.0).then_some(metrics))
    })
    .await
    .expect("heartbeats are written");
    assert_eq!(
        metric_value(&metrics, "cdc_heartbeats_total{outcome=\"failed\"}"),
        0.0
    );

    // And nothing else.
    stack
        .psql("CREATE TABLE unpublished (id int PRIMARY KEY)")
        .await
        .unwrap();
    for (sql, refused) in [
        (
            "INSERT INTO users (email, full_name) VALUES ('x@y.z', 'x')",
            "permission denied",
        ),
        ("DELETE FROM bookings", "permission denied"),
        ("SELECT * FROM unpublished", "permission denied"),
        ("CREATE TABLE mine (id int)", "permission denied"),
        (
            "CREATE PUBLICATION mine FOR TABLE users",
            "permission denied",
        ),
        ("CREATE ROLE other", "permission denied"),
    ] {
        let error = as_role(&stack, "cdc", sql)
            .await
            .expect_err(&format!("cdc may not {sql}"));
        assert!(error.contains(refused), "{sql}: {error}");
    }
    stack.shutdown().await.unwrap();
}
