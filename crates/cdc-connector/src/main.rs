//! The `cdc-connector` binary: options, telemetry, and the library's [`cdc_connector::run`].

use anyhow::Context;
use cdc_connector::Options;
use platform::telemetry;

// One thread for the pipeline: the replication stream, the decoder, the encoder and the hand-off
// to librdkafka wake no other runtime thread per message (the snapshot readers have their own
// threads, librdkafka its own).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let options: Options = platform::config::load("CDC_CONFIG")?;
    platform::kafka_security::install_from(&options.kafka_security)?;
    let health = telemetry::Health::default();
    health.set(false, "starting");
    let prometheus = telemetry::install_prometheus()?;
    telemetry::serve(
        options.listen,
        telemetry::router(prometheus, health.clone()),
    )
    .await
    .context("--listen")?;
    cdc_connector::run(&options, &health, platform::shutdown::wait_for_signal())
        .await
        .map_err(|e| anyhow::anyhow!(e.with_hint()))
}
