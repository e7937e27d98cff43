//! Each endpoint against the real broker and registry: accepted events land in their topic and
//! decode with the registered schema; rejected ones (with precise 4xx answers) are not there;
//! retries of one id (sequential, concurrent, in a batch) are stored once; keys are enforced.

mod common;

use std::collections::BTreeSet;

use common::{post, read_topic, record_count, stack_with_gateway};
use platform::topics;
use serde_json::{Value, json};

const KEY: &str = "test-key-1";
const JSON: &str = "application/json";

fn user_event(id: &str) -> Value {
    json!({
        "event_id": id, "event_type": "search", "user_id": "u-42", "session_id": "s-1", "app_type": "mobile",
        "timestamp": "2026-01-15T08:30:00.250Z", "device": {"device_type": "ios", "os_version": "iOS 18.1"},
        "properties": {"query": "Hội An", "guests": "2"}
    })
}

fn booking_event(id: &str) -> Value {
    json!({"event_id": id, "event_type": "booking_confirmed", "booking_id": "BK-7", "user_id": "u-42", "timestamp": 1_768_000_000_000i64, "properties": {"amount": "12500000.50"}})
}

fn click_event(id: &str) -> Value {
    json!({"event_id": id, "session_id": "s-1", "interaction": "tap", "page_url": "/hotels/furama", "x": 120, "y": -4, "viewport_width": 390, "device_type": "android", "timestamp": 1_768_000_000_000i64})
}

fn log_event(id: &str) -> Value {
    json!({"log_id": id, "service": "booking-api", "level": "error", "message": "payment declined", "trace_id": "t-9", "attributes": {"code": "51"}, "timestamp": 1_768_000_000_000i64})
}

fn external_event(id: &str) -> Value {
    json!({"record_id": id, "source_type": "weather", "pipeline": "weather-hourly", "location": "Da Nang", "observed_at": 1_768_000_000_000i64, "fetched_at": 1_768_000_060_000i64, "payload": {"temp_c": 31.5, "sky": "clear"}, "quality_warnings": ["stale by 2 min"]})
}

/// Asserts a 4xx answer naming `path` (when given) and returns the body.
async fn rejected(
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    status: u16,
    path: Option<&str>,
) -> Value {
    let (got, _, answer) = post(url, content_type, body, Some(KEY)).await;
    assert_eq!(got, status, "{url}: {answer}");
    if let Some(path) = path {
        let details = answer["details"]
            .as_array()
            .unwrap_or_else(|| panic!("details in {answer}"));
        let detail = details
            .iter()
            .find(|d| d["path"] == path)
            .unwrap_or_else(|| panic!("no detail for {path} in {answer}"));
        assert!(
            detail["expected"].as_str().is_some_and(|s| !s.is_empty()) && detail["got"].is_string(),
            "{answer}"
        );
    }
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_stores_valid_events_in_its_topic_and_rejects_bad_ones() {
    let stack = stack_with_gateway(
        "gw-endpoints",
        &[
            "--api-keys",
            "other-key,test-key-1",
            "--max-body-bytes",
            "65536",
            "--max-batch-events",
            "10",
        ],
    )
    .await;
    let base = stack.gateway_url();
    let url = |path: &str| format!("{base}{path}");

    // One valid event per endpoint: 201 with where it was stored.
    let singles = [
        (
            "/events/user",
            user_event("user-1"),
            topics::APP_EVENTS.name,
        ),
        (
            "/events/booking",
            booking_event("booking-1"),
            topics::APP_EVENTS.name,
        ),
        (
            "/events/clickstream",
            click_event("click-1"),
            topics::CLICKSTREAM.name,
        ),
        ("/events/logs", log_event("log-1"), topics::APP_LOGS.name),
        (
            "/events/external",
            external_event("ext-1"),
            topics::EXTERNAL_DATA.name,
        ),
    ];
    for (path, event, topic) in &singles {
        let (status, _, answer) = post(&url(path), JSON, event.to_string(), Some(KEY)).await;
        assert_eq!(status, 201, "{path}: {answer}");
        assert_eq!(
            (answer["status"].as_str(), answer["topic"].as_str()),
            (Some("stored"), Some(*topic)),
            "{answer}"
        );
    }

    // Authentication: no key or a wrong key is refused before anything is read.
    let (status, headers, _) = post(
        &url("/events/user"),
        JSON,
        user_event("unauth-1").to_string(),
        None,
    )
    .await;
    assert_eq!(
        (status, headers.get("www-authenticate").is_some()),
        (401, true)
    );
    let (status, _, _) = post(
        &url("/events/user"),
        JSON,
        user_event("unauth-2").to_string(),
        Some("test-key-2"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = reqwest::Client::new()
        .post(url("/events/logs"))
        .header("content-type", JSON)
        .header("authorization", "Bearer other-key")
        .body(log_event("log-bearer").to_string())
        .send()
        .await
        .map(|r| (r.status().as_u16(), (), ()))
        .unwrap();
    assert_eq!(status, 201);

    // Idempotency: a sequential retry answers 200 with the first receipt...
    let (status, _, first) = post(
        &url("/events/user"),
        JSON,
        user_event("retry-1").to_string(),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, again) = post(
        &url("/events/user"),
        JSON,
        user_event("retry-1").to_string(),
        Some(KEY),
    )
    .await;
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(
        (&again["partition"], &again["offset"]),
        (&first["partition"], &first["offset"])
    );
    // ...and concurrent posts of one new id store it once.
    let clicks_url = url("/events/clickstream");
    let concurrent = futures::future::join_all((0..12).map(|_| {
        post(
            &clicks_url,
            JSON,
            click_event("click-concurrent").to_string(),
            Some(KEY),
        )
    }))
    .await;
    let statuses: Vec<u16> = concurrent.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        11,
        "{statuses:?}"
    );

    // A batch of mixed kinds with one bad item and one repeated id: per-item results.
    let batch = json!({"events": [
        {"kind": "user", "event": user_event("batch-user")},
        {"kind": "log", "event": log_event("batch-log")},
        {"kind": "external", "event": external_event("batch-ext")},
        {"kind": "booking", "event": {"event_id": "rejected-batch", "event_type": "booking_teleported", "booking_id": "B", "timestamp": 1_768_000_000_000i64}},
        {"kind": "user", "event": user_event("batch-user")},
    ]});
    let (status, _, answer) = post(&url("/events/batch"), JSON, batch.to_string(), Some(KEY)).await;
    assert_eq!(status, 207, "{answer}");
    let results: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    let mut sorted_last = [results[0], results[4]];
    sorted_last.sort();
    assert_eq!(sorted_last, ["duplicate", "stored"], "{answer}");
    assert_eq!(&results[1..4], ["stored", "stored", "rejected"], "{answer}");
    assert_eq!(
        answer["results"][3]["error"]["details"][0]["path"], "events[3].event.event_type",
        "{answer}"
    );
    assert_eq!(
        (
            answer["stored"].as_u64(),
            answer["duplicates"].as_u64(),
            answer["rejected"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
    );
    let (status, _, _) = post(
        &url("/events/batch"),
        JSON,
        json!({"events": [{"kind": "log", "event": log_event("batch-only-log")}]}).to_string(),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 200);

    // Bad input: precise 4xx, never stored.
    let mut bad = user_event("rejected-type");
    bad["event_type"] = json!("teleport");
    let answer = rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("event_type"),
    )
    .await;
    assert!(
        answer["details"][0]["got"]
            .as_str()
            .unwrap()
            .contains("teleport"),
        "{answer}"
    );
    let mut bad = user_event("rejected-time");
    bad["timestamp"] = json!("yesterday");
    rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("timestamp"),
    )
    .await;
    let mut bad = user_event("rejected-epoch-seconds");
    bad["timestamp"] = json!(1_768_000_000);
    rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("timestamp"),
    )
    .await;
    let mut bad = user_event("rejected-future");
    bad["timestamp"] = json!("2100-01-01T00:00:00Z");
    rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("timestamp"),
    )
    .await;
    let mut bad = user_event("rejected-unknown-field");
    bad["colour"] = json!("blue");
    rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("colour"),
    )
    .await;
    let mut bad = user_event("rejected-device");
    bad["device"]["device_type"] = json!("toaster");
    rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("device.device_type"),
    )
    .await;
    let mut bad = user_event("rejected-missing");
    bad.as_object_mut().unwrap().remove("session_id");
    rejected(
        &url("/events/user"),
        JSON,
        bad.to_string(),
        422,
        Some("session_id"),
    )
    .await;
    let mut bad = click_event("rejected-x");
    bad["x"] = json!("120");
    rejected(
        &url("/events/clickstream"),
        JSON,
        bad.to_string(),
        422,
        Some("x"),
    )
    .await;
    let mut bad = log_event("rejected-level");
    bad["level"] = json!("LOUD");
    rejected(
        &url("/events/logs"),
        JSON,
        bad.to_string(),
        422,
        Some("level"),
    )
    .await;
    let mut bad = external_event("rejected-payload");
    bad["payload"] = json!("not an object");
    rejected(
        &url("/events/external"),
        JSON,
        bad.to_string(),
        422,
        Some("payload"),
    )
    .await;
    let mut bad = booking_event("rejected-blank");
    bad["booking_id"] = json!("  ");
    rejected(
        &url("/events/booking"),
        JSON,
        bad.to_string(),
        422,
        Some("booking_id"),
    )
    .await;
    rejected(
        &url("/events/user"),
        JSON,
        "[\"rejected-array\"]",
        422,
        Some("$"),
    )
    .await;
    rejected(
        &url("/events/user"),
        "text/plain",
        user_event("rejected-content-type").to_string(),
        415,
        None,
    )
    .await;
    rejected(
        &url("/events/user"),
        JSON,
        "{\"event_id\": \"rejected-syntax\",",
        400,
        None,
    )
    .await;
    let mut huge = user_event("rejected-huge");
    huge["properties"]["blob"] = json!("x".repeat(70_000));
    rejected(&url("/events/user"), JSON, huge.to_string(), 413, None).await;
    let many = json!({"events": (0..11).map(|i| json!({"kind": "log", "event": log_event(&format!("rejected-many-{i}"))})).collect::<Vec<_>>()});
    rejected(&url("/events/batch"), JSON, many.to_string(), 413, None).await;
    rejected(
        &url("/events/batch"),
        JSON,
        json!({"events": []}).to_string(),
        422,
        Some("events"),
    )
    .await;
    let (status, _, _) = post(&url("/events/nothing"), JSON, "{}", Some(KEY)).await;
    assert_eq!(status, 404);

    // What Kafka holds: every accepted id exactly once, decoded; nothing rejected.
    let expect = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let app = expect(&["user-1", "booking-1", "retry-1", "batch-user"]);
    let clicks = expect(&["click-1", "click-concurrent"]);
    let logs = expect(&["log-1", "log-bearer", "batch-log", "batch-only-log"]);
    let external = expect(&["ext-1", "batch-ext"]);
    for (topic, id_field, ids) in [
        (&topics::APP_EVENTS, "event_id", &app),
        (&topics::CLICKSTREAM, "event_id", &clicks),
        (&topics::APP_LOGS, "log_id", &logs),
        (&topics::EXTERNAL_DATA, "record_id", &external),
    ] {
        let records = read_topic(&stack, topic, id_field, ids).await;
        assert_eq!(
            record_count(&stack, topic),
            ids.len() as i64,
            "{}: one record per accepted id, none for rejected ones",
            topic.name
        );
        assert!(
            records.keys().all(|id| ids.contains(id)),
            "{}: unexpected {:?}",
            topic.name,
            records.keys()
        );
        if topic.name == topics::APP_EVENTS.name {
            let user = &records["user-1"][0];
            assert_eq!(user["source"], "MOBILE_APP");
            assert_eq!(user["event_type"], "search");
            assert_eq!(user["timestamp"], 1_768_465_800_250i64);
            assert_eq!(
                user["properties"],
                json!({"guests": "2", "query": "Hội An"})
            );
            assert_eq!(
                user["device"],
                json!({"device_type": "IOS", "os_version": "iOS 18.1", "app_version": null, "user_agent": null})
            );
            assert!(user["received_at"].as_i64().unwrap() > 1_768_465_800_250i64);
            assert_eq!(records["booking-1"][0]["source"], "BOOKING_SYSTEM");
        }
        if topic.name == topics::CLICKSTREAM.name {
            let click = &records["click-1"][0];
            assert_eq!(
                (
                    click["interaction"].as_str(),
                    click["y"].as_i64(),
                    click["device_type"].as_str()
                ),
                (Some("TAP"), Some(-4), Some("android"))
            );
        }
        if topic.name == topics::APP_LOGS.name {
            assert_eq!(records["log-1"][0]["level"], "ERROR");
        }
        if topic.name == topics::EXTERNAL_DATA.name {
            let record = &records["ext-1"][0];
            let payload: Value =
                serde_json::from_str(record["payload_json"].as_str().unwrap()).unwrap();
            assert_eq!(payload, json!({"temp_c": 31.5, "sky": "clear"}));
            assert_eq!(record["source_type"], "WEATHER");
        }
    }

    // Statistics, metrics and the API description.
    let stats: Value = reqwest::get(url("/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["events"]["by_topic"]["topic_clickstream"]["duplicate"], 11,
        "{stats}"
    );
    assert_eq!(
        stats["events"]["by_event_type"]["search"]["stored"], 3,
        "{stats}"
    );
    // 15 rejected single events and 1 rejected batch item (whole-batch refusals count as requests).
    assert_eq!(stats["events"]["by_outcome"]["rejected"], 16, "{stats}");
    assert_eq!(stats["requests"]["/events/user"]["401"], 2, "{stats}");
    let metrics = reqwest::get(url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_request_duration_seconds_bucket{endpoint=\"/events/user\""),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_events_total{event_type=\"tap\",topic=\"topic_clickstream\",outcome=\"stored\"} 2"), "{metrics}");
    assert!(
        metrics.contains("gateway_producer_queue_depth"),
        "{metrics}"
    );
    let openapi: Value = reqwest::get(url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/events/user",
        "/events/booking",
        "/events/batch",
        "/events/clickstream",
        "/events/logs",
        "/events/external",
        "/stats",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
    assert_eq!(
        openapi["components"]["schemas"]["UserEvent"]["properties"]["event_type"]["$ref"],
        "#/components/schemas/UserEventType"
    );
    let docs = reqwest::get(url("/docs")).await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("/openapi.json"));
    assert_eq!(reqwest::get(url("/health")).await.unwrap().status(), 200);

    stack.shutdown().await.unwrap();
}
