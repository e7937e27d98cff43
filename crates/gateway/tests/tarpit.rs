//! A client that keeps sending bad requests has its error answers held back once it has spent
//! its budget of client errors, while valid requests from the same address are answered at once:
//! a flood of garbage cannot take the CPU that well-behaved clients need.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

const DELAY: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread")]
async fn error_answers_beyond_the_budget_are_delayed_and_valid_requests_are_not() {
    let stack = common::stack_with_gateway(
        "gateway-tarpit",
        &[
            "--client-error-burst",
            "5",
            "--client-errors-per-sec",
            "1",
            "--client-error-delay-ms",
            &DELAY.as_millis().to_string(),
        ],
    )
    .await;
    let url = format!("{}/events/logs", stack.gateway_url());
    let malformed = || common::post(&url, "application/json", "{", None);

    for attempt in 1..=5 {
        let started = Instant::now();
        let (status, _, _) = malformed().await;
        assert_eq!(status, 400, "attempt {attempt}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "attempt {attempt} is within the burst, yet took {:?}",
            started.elapsed()
        );
    }

    let started = Instant::now();
    let (status, _, body) = malformed().await;
    assert_eq!(
        status, 400,
        "the delayed answer is still the right one: {body}"
    );
    assert!(
        started.elapsed() >= DELAY,
        "the sixth error in a burst of five was answered after {:?}, not held for {DELAY:?}",
        started.elapsed()
    );

    // The same address, over its error budget, sends a valid event: no delay.
    let event = json!({"log_id": "tarpit-valid", "service": "booking-api", "level": "info", "message": "ok", "timestamp": 1_768_000_000_000i64});
    let started = Instant::now();
    let (status, _, body) = common::post(&url, "application/json", event.to_string(), None).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a valid request was held: {:?}",
        started.elapsed()
    );

    let metrics = reqwest::get(format!("{}/metrics", stack.gateway_url()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let delayed: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("gateway_client_errors_delayed_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gateway_client_errors_delayed_total in:\n{metrics}"));
    assert_eq!(delayed, 1.0);
}
