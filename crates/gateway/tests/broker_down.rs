//! When the broker is gone: bounded waiting, then 503 with Retry-After and nothing claimed as
//! stored; readiness turns false; and SIGTERM still answers the request in flight before exit.

mod common;

use std::time::Duration;

use common::{post, stack_with_gateway};
use serde_json::{Value, json};

fn log_event(id: &str) -> String {
    json!({"log_id": id, "service": "payment-service", "level": "warn", "message": "slow", "timestamp": 1_768_000_000_000i64}).to_string()
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_broker_yields_503_with_retry_after_and_shutdown_drains_requests_in_flight() {
    let mut stack = stack_with_gateway(
        "gw-broker-down",
        &["--produce-timeout-ms", "1500", "--retry-after-secs", "3"],
    )
    .await;
    let base = stack.gateway_url();
    let logs = format!("{base}/events/logs");
    let (status, _, _) = post(&logs, "application/json", log_event("before"), None).await;
    assert_eq!(status, 201);

    stack.kill_broker().await.expect("stop the broker");
    let (status, headers, answer) =
        post(&logs, "application/json", log_event("during"), None).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("unavailable")),
        "{answer}"
    );
    assert_eq!(headers["retry-after"], "3");
    let batch = json!({"events": [{"kind": "log", "event": serde_json::from_str::<Value>(&log_event("b1")).unwrap()},
                                  {"kind": "log", "event": serde_json::from_str::<Value>(&log_event("b2")).unwrap()}]});
    let (status, headers, answer) = post(
        &format!("{base}/events/batch"),
        "application/json",
        batch.to_string(),
        None,
    )
    .await;
    assert_eq!(
        (status, answer["failed"].as_u64(), answer["stored"].as_u64()),
        (503, Some(2), Some(0)),
        "{answer}"
    );
    assert_eq!(headers["retry-after"], "3");
    // Bad input stays a 4xx even now.
    let (status, _, _) = post(&logs, "application/json", "{}", None).await;
    assert_eq!(status, 422);

    let mut health = reqwest::get(format!("{base}/health")).await.unwrap();
    for _ in 0..100 {
        if health.status() == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        health = reqwest::get(format!("{base}/health")).await.unwrap();
    }
    assert_eq!(health.status(), 503, "readiness follows the broker");
    let report: Value = health.json().await.unwrap();
    assert!(
        report["status"].as_str().unwrap().contains("unreachable"),
        "{report}"
    );

    // A request waiting for the (dead) broker when SIGTERM arrives still gets its answer.
    let in_flight = tokio::spawn({
        let logs = logs.clone();
        async move { post(&logs, "application/json", log_event("in-flight"), None).await }
    });
    while !in_flight.is_finished() && metric(&base, "gateway_produce_in_flight").await < 1.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the request should still be waiting for the broker"
    );
    let exit = stack
        .stop_gateway()
        .await
        .expect("the gateway stops on SIGTERM");
    let (status, headers, _) = in_flight.await.unwrap();
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap()),
        (503, "3")
    );
    assert!(exit.success(), "{exit}");
    stack.shutdown().await.unwrap();
}
