//! The gateway's API keys never leave it: after requests with the right key, a wrong key and
//! none, its log, `/health`, `/metrics` and every answer are searched for the key.

mod common;

use common::{post, stack_with_gateway};
use serde_json::json;

const KEY: &str = "Key-7d41c0aa-never-print-me";

#[tokio::test(flavor = "multi_thread")]
async fn no_output_contains_an_api_key() {
    let stack = stack_with_gateway("gw-secrets", &["--api-keys", KEY]).await;
    let base = stack.gateway_url();
    let logs_url = format!("{base}/events/logs");
    let event = |id: &str| {
        json!({"log_id": id, "service": "s", "level": "info", "message": "m",
               "timestamp": 1_768_000_000_000i64})
        .to_string()
    };
    let mut answers = Vec::new();
    for (id, key) in [
        ("with-key", Some(KEY)),
        ("wrong-key", Some("not-the-key")),
        ("no-key", None),
    ] {
        let (status, headers, body) = post(&logs_url, "application/json", event(id), key).await;
        answers.push(format!("{status} {headers:?} {body}"));
    }
    assert!(answers[0].starts_with("201"), "{answers:?}");
    assert!(
        answers[1].starts_with("401") && answers[2].starts_with("401"),
        "{answers:?}"
    );
    let text = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let health = text("/health").await;
    let metrics = text("/metrics").await;
    let log = std::fs::read_to_string(stack.options().log_file("gateway")).unwrap();
    assert!(log.contains("gateway listening"), "the log is real: {log}");
    for (what, text) in [
        ("log", log.as_str()),
        ("/health", health.as_str()),
        ("/metrics", metrics.as_str()),
        ("answers", &answers.join("\n")),
    ] {
        assert!(!text.contains(KEY), "{what} contains the API key:\n{text}");
    }
    stack.shutdown().await.unwrap();
}
