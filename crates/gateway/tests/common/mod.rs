//! Shared by the gateway's end-to-end tests: a stack with the gateway, and reading topics back.
// Each test binary uses its own subset of these helpers.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of these helpers"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use local_stack::{Stack, StackOptions};
use platform::{avro, kafka, registry::RegistryClient, topics::TopicSpec};
use rdkafka::{Message, consumer::Consumer};
use serde_json::Value;

/// A stack (broker, registry and gateway; no CDC connector) with the gateway's extra flags.
pub async fn stack_with_gateway(name: &str, gateway_args: &[&str]) -> Stack {
    let mut options = StackOptions::for_tests(name);
    options.start_connector = false;
    options.start_gateway = true;
    options.gateway_extra_args = gateway_args.iter().map(|a| a.to_string()).collect();
    Stack::start(options)
        .await
        .expect("start the stack with the gateway")
}

/// Every record of `topic`, decoded through the registry, by the id in `id_field`; fails if
/// the ids in `expected` do not all arrive within a minute.
pub async fn read_topic(
    stack: &Stack,
    topic: &TopicSpec,
    id_field: &str,
    expected: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Value>> {
    let group = format!("gateway-test-{}-{}", topic.name, std::process::id());
    let consumer =
        kafka::consumer(&stack.kafka_brokers(), &group, "gateway-test", true).expect("consumer");
    consumer.subscribe(&[topic.name]).expect("subscribe");
    let registry = RegistryClient::new(&stack.registry_url());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    while !expected.iter().all(|id| records.contains_key(id)) {
        assert!(
            Instant::now() < deadline,
            "{}: only {:?} of {expected:?} arrived\ngateway log:\n{}",
            topic.name,
            records.keys().collect::<Vec<_>>(),
            stack.log_tail("gateway", 30)
        );
        let Ok(message) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await
        else {
            continue;
        };
        let message = message.expect("read the topic");
        let value = avro::decode(&registry, message.payload().expect("a value"))
            .await
            .expect("records decode with their registered schema");
        let json = avro::to_json(&value);
        let id = json[id_field].as_str().expect("an id").to_string();
        records.entry(id).or_default().push(json);
    }
    records
}

/// How many records `topic` holds (sum over partitions of high minus low watermark).
pub fn record_count(stack: &Stack, topic: &TopicSpec) -> i64 {
    let consumer = kafka::consumer(
        &stack.kafka_brokers(),
        "gateway-test-watermarks",
        "gateway-test",
        true,
    )
    .expect("consumer");
    (0..topic.partitions)
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic.name, partition, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// Posts JSON text with a content type and an optional API key; returns status, headers, body.
pub async fn post(
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    api_key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = api_key {
        request = request.header("x-api-key", key);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
