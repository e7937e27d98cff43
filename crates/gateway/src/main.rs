//! gateway: the HTTP ingestion API. See the library documentation and `/docs` of a running one.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use gateway::{
    api::{self, AppState, Limits},
    auth::ApiKeys,
    config::Args,
    dedup::Dedup,
    publisher::Publisher,
    readiness,
    stats::Stats,
    tarpit::Tarpit,
};
use platform::{kafka, shutdown, telemetry};

/// Every request allocates and frees many small objects (JSON values, strings, the Avro
/// record) on the runtime's worker threads; glibc's malloc spent about a quarter of the
/// gateway's CPU on them under load (`perf`, bench/gateway/REPORT.md), mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Request latency buckets (seconds): a 2xx waits for the broker, so milliseconds to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let args: Args = platform::config::load("GATEWAY_CONFIG")?;
    platform::kafka_security::install_from(&args.kafka_security)?;
    let prometheus = telemetry::install_prometheus_with_latency_buckets(LATENCY_BUCKETS)?;
    let health = telemetry::Health::default();
    health.set(false, "starting");

    let producer = kafka::bounded_producer(
        &args.kafka_brokers,
        "gateway",
        kafka::ProducerBounds {
            linger: Duration::from_millis(args.kafka_linger_ms),
            ..kafka::ProducerBounds::new(args.produce_timeout())
        },
    )
    .context("cannot create the Kafka producer")?;
    let dedup = Dedup::new(
        Duration::from_secs(args.dedup_window_secs),
        args.dedup_capacity,
    );
    let publisher = Arc::new(Publisher::new(producer, dedup, args.produce_timeout()));
    let keys = ApiKeys::new(&args.api_keys);
    let state = Arc::new(AppState {
        publisher: publisher.clone(),
        stats: Arc::new(Stats::default()),
        tarpit: Arc::new(Tarpit::new(args.tarpit_policy())),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_batch_events: args.max_batch_events.max(1),
            max_future_skew_millis: i64::try_from(args.max_future_skew_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            retry_after_secs: args.retry_after_secs.max(1),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
        },
    });

    let (signalled_tx, mut signalled) = tokio::sync::watch::channel(false);
    let shutdown = {
        let health = health.clone();
        async move {
            shutdown::wait_for_signal().await;
            // Load balancers stop sending while the requests in flight finish.
            health.set(false, "shutting down");
            tracing::info!("shutting down: no new connections, draining requests in flight");
            let _ = signalled_tx.send(true);
        }
    };
    let app = api::router(state, keys.clone(), prometheus, health.clone());
    let mut server = telemetry::serve_with_shutdown(args.listen, app, shutdown)
        .await
        .context("--listen")?;
    tracing::info!(listen = %args.listen, authentication = keys.enabled(), "gateway listening");

    let mut start = tokio::spawn(readiness::run(
        args.kafka_brokers.clone(),
        args.schema_registry_url.clone(),
        publisher.clone(),
        health,
    ));
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    tokio::select! {
        _ = &mut server => {}
        error = &mut start => {
            let error = error.context("start-up task")?;
            anyhow::bail!("cannot start: {error}");
        }
        _ = async { let _ = signalled.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "requests still in flight after the grace period; exiting");
        }
    }
    start.abort();
    // Every answered event was acknowledged already; this only lets unanswered ones land.
    let flushing = publisher.clone();
    tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5)))
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}
