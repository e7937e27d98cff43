//! Streaming sources through the real sinks: Avro to a real broker with the registered schemas
//! (read back and decoded through the registry), and JSON lines from the `workload` binary.

use std::{collections::HashSet, sync::Arc, time::Duration};

use local_stack::{Stack, StackOptions};
use platform::{avro, kafka, registry::RegistryClient, topics};
use rdkafka::{Message, consumer::Consumer};
use workload::{
    clock::VirtualClock,
    external::{DEFAULT_PIPELINES, Scheduler, parse_pipelines},
    streams::{
        generate::{StreamKind, Traffic},
        run::{StreamSettings, run},
        sink::{Sink, SinkKind, SinkSettings},
    },
};

const EVENTS: u64 = 300;
const START_MS: i64 = 1_780_000_000_000;

fn all_streams() -> Vec<(StreamKind, f64)> {
    StreamKind::ALL
        .iter()
        .map(|k| (*k, k.default_rate()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_kafka_sink_publishes_every_event_with_the_registered_schemas() {
    let mut options = StackOptions::for_tests("workload-sink");
    options.start_connector = false;
    let stack = Stack::start(options).await.expect("start the stack");
    let sink = Arc::new(
        Sink::connect(&SinkSettings {
            kind: SinkKind::Kafka,
            gateway_url: String::new(),
            kafka_brokers: stack.kafka_brokers(),
            schema_registry_url: stack.registry_url(),
            max_retries: 0,
            request_timeout: Duration::from_secs(5),
        })
        .await
        .expect("connect the Kafka sink"),
    );
    let settings = StreamSettings {
        count: Some(EVENTS),
        duration: None,
        max_in_flight: 16,
        progress_every: Duration::from_secs(60),
    };
    let summary = run(
        Traffic::new(8, &all_streams(), START_MS),
        VirtualClock::new(START_MS, 0.0),
        sink.clone(),
        &settings,
        std::future::pending(),
    )
    .await;
    assert_eq!((summary.sent, summary.failed), (EVENTS, 0));
    let reports = Arc::new(Scheduler::new(
        parse_pipelines(DEFAULT_PIPELINES).unwrap(),
        8,
    ))
    .run(
        VirtualClock::new(START_MS, 0.0),
        sink,
        Some(START_MS + 1),
        true,
        std::future::pending(),
    )
    .await;

    // What should be there: the same seed regenerates the same events.
    let mut expected: HashSet<(String, String)> = HashSet::new();
    let mut traffic = Traffic::new(8, &all_streams(), START_MS);
    for _ in 0..EVENTS {
        let event = traffic.next_event().unwrap();
        expected.insert((event.topic().to_string(), event.id().to_string()));
    }
    for report in &reports {
        for id in &report.record_ids {
            expected.insert((topics::EXTERNAL_DATA.name.to_string(), id.clone()));
        }
    }
    let topic_names: HashSet<&str> = expected.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topic_names.len(), 4, "every streaming topic is used");

    let consumer =
        kafka::consumer(&stack.kafka_brokers(), "workload-sink-test", "test", true).unwrap();
    consumer
        .subscribe(&[
            topics::APP_EVENTS.name,
            topics::CLICKSTREAM.name,
            topics::APP_LOGS.name,
            topics::EXTERNAL_DATA.name,
        ])
        .unwrap();
    let registry = RegistryClient::new(&stack.registry_url());
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < expected.len() && tokio::time::Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await
        else {
            continue;
        };
        let value = avro::to_json(
            &avro::decode(&registry, message.payload().unwrap())
                .await
                .expect("decodes with its writer schema"),
        );
        let id = ["event_id", "log_id", "record_id"]
            .iter()
            .find_map(|f| value[*f].as_str())
            .expect("an id")
            .to_string();
        assert!(value["received_at"].as_i64().is_some());
        assert!(
            seen.insert((message.topic().to_string(), id)),
            "no duplicates"
        );
    }
    assert_eq!(seen, expected);
    stack.shutdown().await.unwrap();
}

async fn stdout_run(seed: &str) -> Vec<serde_json::Value> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_workload"))
        .args([
            "all",
            "--sink",
            "stdout",
            "--time-scale",
            "0",
            "--count",
            "200",
            "--seed",
            seed,
            "--virtual-hours",
            "0",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_stdout_sink_prints_gateway_json_and_a_seed_replays_it() {
    let first = stdout_run("21").await;
    assert_eq!(first.len(), 200);
    for line in &first {
        let event = &line["event"];
        let path = line["path"].as_str().unwrap();
        assert!(path.starts_with("/events/"), "{line}");
        // Stream events carry `timestamp`; external readings (the continuous external
        // simulator) `observed_at` and `fetched_at`.
        let times: &[&str] = if path == "/events/external" {
            &["observed_at", "fetched_at"]
        } else {
            &["timestamp"]
        };
        for field in times {
            assert!(
                event[*field]
                    .as_str()
                    .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
                "{field}: {line}"
            );
        }
        if path == "/events/user" {
            assert!(
                matches!(event["app_type"].as_str(), Some("mobile" | "web")),
                "{line}"
            );
            assert!(event["session_id"].is_string());
        }
    }
    // Timestamps follow the wall clock at start; everything else is the seed's.
    let strip = |lines: Vec<serde_json::Value>| {
        lines
            .into_iter()
            .map(|mut l| {
                let event = l["event"].as_object_mut().unwrap();
                for field in ["timestamp", "observed_at", "fetched_at"] {
                    event.remove(field);
                }
                l
            })
            .collect::<Vec<_>>()
    };
    let (first, second) = (strip(first), strip(stdout_run("21").await));
    let differs = first.iter().zip(&second).position(|(a, b)| a != b);
    assert_eq!(differs, None, "first difference at line {differs:?}");
    assert_eq!(first.len(), second.len());
}
