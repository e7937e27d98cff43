//! Kafka over TLS for every service: the broker (tansu, plaintext only) sits behind a TLS
//! terminator that it advertises, with a certificate for 127.0.0.1 signed by a test CA. The
//! connector and the gateway, given `--kafka-security-protocol ssl` and the CA, provision their
//! topics, produce and get acknowledged through TLS, and this test reads their records back
//! through TLS too. A connector given another CA says why it cannot connect.
//!
//! SASL (PLAIN, SCRAM) cannot be tested here: tansu does not authenticate. Its settings are
//! unit-tested in `platform::kafka_security`.

use std::{process::Stdio, time::Duration};

use e2e::{
    cdc_records,
    certificates::{make_ca, make_server_certificate},
    connector_args_with, connector_command, read_topic_until,
    tls_terminator::TlsTerminator,
};
use local_stack::{Stack, StackOptions};
use platform::kafka_security::{KafkaSecurityArgs, SecurityProtocol};
use serde_json::json;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread")]
async fn every_service_talks_to_kafka_over_tls_and_a_wrong_ca_is_named() {
    let certificates = tempfile::tempdir().unwrap();
    let ca = make_ca(certificates.path(), "kafka-ca");
    make_server_certificate(certificates.path(), "kafka-ca", "IP:127.0.0.1");
    let other_ca = make_ca(certificates.path(), "other-ca");

    let mut options = StackOptions::for_tests("kafka-tls");
    let broker = ([127, 0, 0, 1], options.ports.kafka).into();
    let terminator = TlsTerminator::start(
        &certificates.path().join("server.crt"),
        &certificates.path().join("server.key"),
        broker,
    )
    .await
    .unwrap();
    options.kafka_advertised_port = Some(terminator.port());
    let ca_path = ca.to_string_lossy().into_owned();
    let tls_args = [
        "--kafka-security-protocol",
        "ssl",
        "--kafka-ssl-ca-location",
        &ca_path,
    ]
    .map(String::from);
    options.connector_extra_args.extend(tls_args.clone());
    options.start_gateway = true;
    options.gateway_extra_args.extend(tls_args);
    let stack = Stack::start(options)
        .await
        .expect("start the stack over TLS");

    // This process reads the topics back over TLS as well.
    platform::kafka_security::install_from(&KafkaSecurityArgs {
        kafka_security_protocol: SecurityProtocol::Ssl,
        kafka_ssl_ca_location: Some(ca.clone()),
        ..KafkaSecurityArgs::default()
    })
    .unwrap();

    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('tls@example.vn', 'Over TLS')")
        .await
        .unwrap();
    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        records.iter().any(|r| r.operation() == "INSERT")
    })
    .await;
    assert!(records.iter().any(|r| r.table() == "public.users"));

    let event = json!({"log_id": "tls-1", "service": "tls-test", "level": "info",
                       "message": "over TLS", "timestamp": 1_768_000_000_000i64});
    let status = reqwest::Client::new()
        .post(format!("{}/events/logs", stack.gateway_url()))
        .json(&event)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    read_topic_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        platform::topics::APP_LOGS.name,
        Duration::from_secs(60),
        |records| records.iter().any(|r| r.value["log_id"] == "tls-1"),
    )
    .await
    .unwrap();
    assert!(
        terminator.handshakes() >= 3,
        "connector, gateway and reader each made TLS connections: {}",
        terminator.handshakes()
    );

    // A connector that trusts another CA cannot connect, and says why.
    let other = other_ca.to_string_lossy().into_owned();
    let (args, _) = connector_args_with(
        &stack,
        &[
            ("--kafka-ssl-ca-location", other.as_str()),
            ("--slot-name", "tls_wrong_ca"),
        ],
    );
    let mut wrong = connector_command(&stack, &args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = wrong.stderr.take().unwrap();
    let mut log = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buffer = [0u8; 4096];
        while !log.contains("certificate verify failed") {
            match stderr.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => log.push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
    })
    .await;
    wrong.kill().await.unwrap();
    assert!(log.contains("certificate verify failed"), "{log}");
    stack.shutdown().await.unwrap();
}
