//! External pipelines on a compressed clock: runs happen at their cron times, a flaky source is
//! retried until it answers, a dead one is retried and then reported, never dropped silently.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, http::StatusCode, routing::get};
use workload::{
    clock::VirtualClock,
    external::{RunOutcome, Scheduler, parse_pipelines},
    streams::sink::{Sink, SinkKind, SinkSettings},
};

/// A real HTTP source: `/flaky` fails its first two requests, `/down` always answers 503.
async fn serve_sources() -> (String, Arc<AtomicUsize>) {
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = flaky_calls.clone();
    let app = Router::new()
        .route(
            "/flaky",
            get(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        (StatusCode::INTERNAL_SERVER_ERROR, "warming up".to_string())
                    } else {
                        (StatusCode::OK, r#"{"items": [{"usd_vnd": 25400.5}, {"usd_vnd": 99999.0}, {"note": "no rate"}]}"#.to_string())
                    }
                }
            }),
        )
        .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}"), flaky_calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_pipelines_run_on_schedule_with_retries_and_failures_reported() {
    let (base, flaky_calls) = serve_sources().await;
    let config = format!(
        r#"
[[pipeline]]
name = "weather"
source_type = "WEATHER"
schedule = "0 0 */6 * * *"
locations = ["Ha Noi", "Ho Chi Minh", "Da Nang", "Can Tho", "Hai Phong"]
fetch = {{ kind = "synthetic", fields = {{ temperature_c = {{ range = [20.0, 35.0], decimals = 1 }} }} }}

[[pipeline]]
name = "fx"
source_type = "MARKET_DATA"
schedule = "0 0 * * * *"
max_attempts = 3
retry_backoff_ms = 10
fetch = {{ kind = "http", url = "{base}/flaky", records = "/items" }}
enrich = {{ provider = "test" }}
validate = {{ required = ["usd_vnd"], ranges = {{ usd_vnd = [20000.0, 30000.0] }} }}

[[pipeline]]
name = "dead"
source_type = "NEWS"
schedule = "0 0 */6 * * *"
max_attempts = 2
retry_backoff_ms = 10
fetch = {{ kind = "http", url = "{base}/down" }}
"#
    );
    let pipelines = parse_pipelines(&config).unwrap();
    let sink = Arc::new(
        Sink::connect(&SinkSettings {
            kind: SinkKind::Stdout,
            gateway_url: String::new(),
            kafka_brokers: String::new(),
            schema_registry_url: String::new(),
            max_retries: 0,
            request_timeout: std::time::Duration::from_secs(1),
        })
        .await
        .unwrap(),
    );
    // 12 virtual hours from 00:30 at 36 000× (20 minutes a second... of real time, about 1.2 s).
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:30:00Z")
        .unwrap()
        .timestamp_millis();
    let clock = VirtualClock::new(start, 36_000.0);
    let until = start + 12 * 3_600_000;
    let reports = Arc::new(Scheduler::new(pipelines, 1))
        .run(clock, sink, Some(until), false, std::future::pending())
        .await;

    let of = |name: &str| {
        reports
            .iter()
            .filter(|r| r.pipeline == name)
            .collect::<Vec<_>>()
    };
    let weather = of("weather");
    assert_eq!(weather.len(), 2, "06:00 and 12:00");
    for run in &weather {
        assert_eq!(
            run.outcome,
            RunOutcome::Published {
                records: 5,
                rejected: 0,
                warnings: 0
            }
        );
    }
    let hour = 3_600_000;
    assert_eq!(
        weather
            .iter()
            .map(|r| (r.scheduled_at_ms - start + hour / 2) / hour)
            .collect::<Vec<_>>(),
        [6, 12]
    );

    let fx = of("fx");
    assert_eq!(fx.len(), 12, "hourly from 01:00 to 12:00");
    assert_eq!(
        fx.iter().map(|r| r.attempts).sum::<u32>(),
        14,
        "two failed attempts retried"
    );
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 14);
    for run in &fx {
        // One record kept, one flagged as implausible, one rejected for lacking the rate.
        assert_eq!(
            run.outcome,
            RunOutcome::Published {
                records: 2,
                rejected: 1,
                warnings: 1
            },
            "{run:?}"
        );
    }

    let dead = of("dead");
    assert_eq!(dead.len(), 2);
    for run in &dead {
        assert_eq!(run.attempts, 2);
        assert!(
            matches!(&run.outcome, RunOutcome::Failed { error } if error.contains("503")),
            "{run:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_pipeline_records_are_reproducible_for_a_seed() {
    let pipelines = || parse_pipelines(workload::external::DEFAULT_PIPELINES).unwrap();
    let sink = Arc::new(Sink::Stdout);
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    let run = |seed| {
        let sink = sink.clone();
        let pipelines = pipelines();
        async move {
            // Scale 0: no waiting; run every pipeline once, now.
            Arc::new(Scheduler::new(pipelines, seed))
                .run(
                    VirtualClock::new(start, 0.0),
                    sink,
                    Some(start + 1),
                    true,
                    std::future::pending(),
                )
                .await
                .into_iter()
                .flat_map(|r| r.record_ids)
                .collect::<Vec<_>>()
        }
    };
    let first = run(5).await;
    assert!(
        first.len() >= 5 + 10 + 6 + 1 + 3 + 5,
        "every shipped pipeline published: {}",
        first.len()
    );
    assert_eq!(first, run(5).await);
    assert_ne!(first, run(6).await);
}
