//! Bad environments give clear errors that name the cause, never a panic: retryable ones keep
//! the connector retrying (health says why), definite ones stop it with a message.

use std::{process::Stdio, time::Duration};

use e2e::{connector_args_with, stack_without_connector, wait_for_health_status};
use local_stack::{Stack, StackOptions};

fn connector(stack: &Stack, args: &[String]) -> tokio::process::Command {
    let mut command = e2e::connector_command(stack, args);
    command.stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_postgres_and_broker_are_retried_with_the_cause_in_health() {
    let stack = stack_without_connector("unreachable").await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };

    let dead_pg = format!("postgres://postgres@127.0.0.1:{closed_port}/travel");
    let (args, health) = connector_args_with(&stack, &[("--pg-url", &dead_pg)]);
    let mut child = connector(&stack, &args).spawn().unwrap();
    let body = wait_for_health_status(&health, "is unreachable", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        body["status"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{closed_port}")),
        "{body}"
    );
    assert_eq!(body["ready"], false);
    assert!(
        child.try_wait().unwrap().is_none(),
        "a retryable error does not stop the connector"
    );
    child.kill().await.unwrap();

    let dead_broker = format!("127.0.0.1:{closed_port}");
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--kafka-brokers", &dead_broker),
            ("--slot-name", "never_created"),
        ],
    );
    let mut child = connector(&stack, &args).spawn().unwrap();
    let body = wait_for_health_status(&health, "Kafka brokers", Duration::from_secs(45))
        .await
        .unwrap();
    assert!(
        body["status"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    assert!(child.try_wait().unwrap().is_none());
    child.kill().await.unwrap();
    // Nothing was streamed, so no slot was created or advanced behind Kafka's back.
    let slots = stack
        .psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'never_created'")
        .await
        .unwrap();
    assert_eq!(slots.trim(), "0");
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_without_replication_privilege_is_a_definite_error() {
    let stack = stack_without_connector("privileges").await;
    stack.psql("CREATE ROLE plain_app LOGIN").await.unwrap();
    let url = stack.pg_url().replacen("postgres@", "plain_app@", 1);
    assert_ne!(url, stack.pg_url(), "the URL names the role");
    let (args, _) = connector_args_with(&stack, &[("--pg-url", &url)]);
    let stderr = e2e::connector_stderr_after_failure(&stack, &args).await;
    assert!(
        stderr.contains("lacks the REPLICATION attribute"),
        "{stderr}"
    );
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_in_use_by_another_process_is_named_with_its_pid() {
    let mut options = StackOptions::for_tests("slot-in-use");
    options.start_connector = true;
    let stack = Stack::start(options).await.expect("start the stack");
    let (args, health) = connector_args_with(&stack, &[]);
    let mut second = connector(&stack, &args).spawn().unwrap();
    let body = wait_for_health_status(
        &health,
        "in use by another process",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let pid = stack
        .psql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'cdc_connector'")
        .await
        .unwrap();
    assert!(
        body["status"]
            .as_str()
            .unwrap()
            .contains(&format!("PID {}", pid.trim())),
        "{body}"
    );
    second.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_level_below_logical_is_a_definite_error_that_says_how_to_fix_it() {
    let mut stack = stack_without_connector("wal-level").await;
    stack
        .psql("ALTER SYSTEM SET wal_level = 'replica'")
        .await
        .unwrap();
    stack.restart_postgres().await.expect("restart PostgreSQL");
    assert_eq!(
        stack.psql("SHOW wal_level").await.unwrap().trim(),
        "replica"
    );
    let (args, _) = connector_args_with(&stack, &[]);
    let stderr = e2e::connector_stderr_after_failure(&stack, &args).await;
    assert!(
        stderr.contains("wal_level is 'replica'") && stderr.contains("wal_level = logical"),
        "{stderr}"
    );
    stack.shutdown().await.unwrap();
}
