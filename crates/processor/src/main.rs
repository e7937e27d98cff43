//! processor: see the library documentation and `--help`.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::Context;
use platform::telemetry;
use processor::{config::Args, engine};

/// Commit and restore latencies (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let args: Args = platform::config::load("PROCESSOR_CONFIG")?;
    platform::kafka_security::install_from(&args.kafka_security)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let prometheus = telemetry::install_prometheus_with_latency_buckets(LATENCY_BUCKETS)?;
    let health = telemetry::Health::default();
    health.set(false, "starting");
    let stop = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let mut router = telemetry::router(prometheus, health.clone());
        if !args.no_query {
            router = router.merge(processor::query::start(&args).await?);
        }
        telemetry::serve(args.listen, router).await?;
        let stop = stop.clone();
        tokio::spawn(async move {
            platform::shutdown::wait_for_signal().await;
            tracing::info!("stopping: committing what was processed and leaving the group");
            stop.store(true, Ordering::Relaxed);
        });
        anyhow::Ok(())
    })?;
    let handle = runtime.handle().clone();
    let outcome = std::thread::Builder::new()
        .name("processor".into())
        .spawn(move || engine::run(args, health, stop, handle).map_err(anyhow::Error::new))
        .context("starting the processing thread")?
        .join();
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.context("processor stopped")),
        Err(_) => anyhow::bail!("the processing thread panicked"),
    }
}
