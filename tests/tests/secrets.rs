//! Secrets never leave the connector: with a database password in `--pg-url` and a hash salt,
//! at debug level, through start-up, streaming (a hashed column), `/health`, `/metrics`, and an
//! error (the database going away, which the connector reports and retries), no output contains
//! either secret.

use std::{process::Stdio, time::Duration};

use e2e::{
    cdc_records, connector_args_with, connector_command, metrics_text, stack_without_connector,
    wait_for_health_status,
};

const PASSWORD: &str = "Pw-5f3a9c1e-never-print-me";
const SALT: &str = "Salt-8b2d7e40-never-print-me";

#[tokio::test(flavor = "multi_thread")]
async fn no_output_contains_a_secret() {
    let mut stack = stack_without_connector("secrets").await;
    // The local server trusts local connections: the password is carried, never needed.
    let url = stack
        .pg_url()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--pg-url", &url),
            ("--hash-columns", "public.users.email"),
            ("--hash-salt", SALT),
            ("--max-retry-backoff-secs", "1"),
        ],
    );
    // Output to a file, not a pipe: debug logs would fill a pipe nobody reads meanwhile.
    let log_path = std::env::temp_dir().join(format!("secrets-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut command = connector_command(&stack, &args);
    command
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(log.try_clone().expect("the log file")))
        .stderr(Stdio::from(log));
    let mut connector = command.spawn().expect("start the connector");
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .expect("the connector streams");
    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('secret@example.vn', 'S')")
        .await
        .unwrap();
    cdc_records(&stack, Duration::from_secs(30), |records| {
        records
            .iter()
            .any(|r| r.table() == "public.users" && r.operation() == "INSERT")
    })
    .await;
    // An error that names the database: it goes away and the connector says so.
    stack.stop_postgres().await.expect("stop PostgreSQL");
    let retrying = wait_for_health_status(&health, "retrying", Duration::from_secs(30))
        .await
        .expect("the connector reports the outage");
    let metrics = metrics_text(&health).await.expect("/metrics");
    stack.start_postgres().await.expect("start PostgreSQL");
    let health_body = wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .expect("the connector resumes")
        .to_string();

    // Stop it and read everything it wrote.
    let pid = connector.id().expect("a pid");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    tokio::time::timeout(Duration::from_secs(30), connector.wait())
        .await
        .expect("the connector stops")
        .expect("its exit status");
    let logs = std::fs::read_to_string(&log_path).expect("the connector's output");
    let _ = std::fs::remove_file(&log_path);
    assert!(
        logs.contains("streaming") && logs.lines().count() > 10,
        "the logs are real: {logs}"
    );
    assert!(
        retrying.to_string().contains("PostgreSQL"),
        "the error is real: {retrying}"
    );
    for (what, text) in [
        ("logs", logs.as_str()),
        ("/health while retrying", &retrying.to_string()),
        ("/health", &health_body),
        ("/metrics", &metrics),
    ] {
        for secret in [PASSWORD, SALT] {
            assert!(!text.contains(secret), "{what} contains {secret}:\n{text}");
        }
    }
    stack.shutdown().await.unwrap();
}

const SASL_PASSWORD: &str = "Sasl-3c9e1b77-never-print-me";

/// The Kafka SASL password, from the environment, through a broker that refuses the SASL
/// handshake (tansu does not authenticate): the logs at debug level, `/health` while the
/// connector retries, and `/metrics` never show it.
#[tokio::test(flavor = "multi_thread")]
async fn the_kafka_sasl_password_is_never_shown() {
    let stack = stack_without_connector("secrets-sasl").await;
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--kafka-security-protocol", "sasl_plaintext"),
            ("--kafka-sasl-mechanism", "SCRAM-SHA-256"),
            ("--kafka-sasl-username", "connector"),
            ("--max-retry-backoff-secs", "1"),
        ],
    );
    let log_path = std::env::temp_dir().join(format!("secrets-sasl-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut command = connector_command(&stack, &args);
    command
        .env("RUST_LOG", "debug")
        .env("KAFKA_SASL_PASSWORD", SASL_PASSWORD)
        .stdout(Stdio::from(log.try_clone().expect("the log file")))
        .stderr(Stdio::from(log));
    let mut connector = command.spawn().expect("start the connector");
    let retrying = wait_for_health_status(&health, "retrying", Duration::from_secs(60))
        .await
        .expect("the connector cannot authenticate and retries");
    let metrics = metrics_text(&health).await.expect("/metrics");
    connector.kill().await.expect("stop the connector");
    let logs = std::fs::read_to_string(&log_path).expect("the connector's output");
    let _ = std::fs::remove_file(&log_path);
    assert!(
        retrying.to_string().contains("Kafka"),
        "the error is real: {retrying}"
    );
    for (what, text) in [
        ("logs", logs.as_str()),
        ("/health while retrying", &retrying.to_string()),
        ("/metrics", &metrics),
    ] {
        assert!(
            !text.contains(SASL_PASSWORD),
            "{what} contains the SASL password:\n{text}"
        );
    }
    stack.shutdown().await.unwrap();
}
