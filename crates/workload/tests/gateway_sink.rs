//! The gateway sink against a real HTTP server speaking the gateway's contract: 503 with
//! Retry-After is retried a bounded number of times, 4xx is a rejection, 2xx is stored.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::post};
use serde_json::Value;
use workload::streams::{
    generate::{StreamKind, Traffic},
    sink::{Sink, SinkError, SinkKind, SinkSettings},
};

/// `/events/user`: 503 (Retry-After: 0) for the first two calls, then 202. `/events/logs`:
/// always 503. `/events/clickstream`: 400.
async fn gateway() -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Value>>>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (user_calls, stored) = (calls.clone(), bodies.clone());
    let app = Router::new()
        .route(
            "/events/user",
            post(move |Json(body): Json<Value>| {
                let n = user_calls.fetch_add(1, Ordering::SeqCst);
                let stored = stored.clone();
                async move {
                    if n < 2 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "0")],
                            "busy",
                        )
                            .into_response()
                    } else {
                        stored.lock().unwrap().push(body);
                        StatusCode::ACCEPTED.into_response()
                    }
                }
            }),
        )
        .route(
            "/events/logs",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "0")],
                    "down",
                )
            }),
        )
        .route(
            "/events/clickstream",
            post(|| async { (StatusCode::BAD_REQUEST, "bad x") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}"), calls, bodies)
}

fn first_event(kind: StreamKind) -> workload::streams::event::Event {
    Traffic::new(1, &[(kind, 60.0)], 1_780_000_000_000)
        .next_event()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_gateway_sink_retries_503_boundedly_and_reports_rejections() {
    let (url, calls, bodies) = gateway().await;
    let sink = Sink::connect(&SinkSettings {
        kind: SinkKind::Gateway,
        gateway_url: url,
        kafka_brokers: String::new(),
        schema_registry_url: String::new(),
        max_retries: 3,
        request_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();

    let mobile = first_event(StreamKind::Mobile);
    sink.send(&mobile).await.expect("stored after two 503s");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(bodies.lock().unwrap()[0], mobile.to_gateway_json());

    match sink.send(&first_event(StreamKind::Logs)).await {
        Err(SinkError::GaveUp { attempts, .. }) => {
            assert_eq!(attempts, 4, "one try and three retries")
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    match sink.send(&first_event(StreamKind::Clickstream)).await {
        Err(SinkError::Rejected { status, .. }) => assert_eq!(status, 400),
        other => panic!("expected a rejection, got {other:?}"),
    }
}
