//! The `schema-registry` service: the REST API, `/metrics` and `/health` on one port.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use platform::telemetry::{self, Health};
use schema_registry::{api, compatibility::CompatibilityLevel, registry::Registry};

/// A schema registry speaking the Confluent Schema Registry REST API (Avro schemas only).
#[derive(Parser, Debug)]
#[command(name = "schema-registry", version)]
struct Args {
    /// TOML file with defaults for these options, keyed by their long names
    /// (also taken from SCHEMA_REGISTRY_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to serve the REST API, /metrics and /health on.
    #[arg(long, env = "SCHEMA_REGISTRY_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Directory holding the append-only event log that makes the registry durable.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_DATA_DIR",
        default_value = "./schema-registry-data"
    )]
    data_dir: PathBuf,
    /// Global compatibility level until one is set with PUT /config: NONE, BACKWARD,
    /// BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_DEFAULT_COMPATIBILITY",
        default_value = "BACKWARD"
    )]
    default_compatibility: CompatibilityLevel,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = platform::config::load("SCHEMA_REGISTRY_CONFIG")?;
    telemetry::init_tracing();
    let prometheus = telemetry::install_prometheus()?;
    let health = Health::default();
    health.set(false, "replaying the event log");

    let registry = Registry::open(&args.data_dir, args.default_compatibility)
        .with_context(|| format!("cannot open the registry in {}", args.data_dir.display()))?;
    let app = api::router(Arc::new(registry)).merge(telemetry::router(prometheus, health.clone()));

    // Every change is fsync'd before it is acknowledged, so being killed at any moment is
    // safe and no graceful shutdown is needed.
    let server = telemetry::serve(args.listen, app).await?;
    health.set(true, "serving");
    tracing::info!(listen = %args.listen, data_dir = %args.data_dir.display(), "schema registry serving");
    server.await.context("HTTP server task failed")?;
    anyhow::bail!("HTTP server on {} stopped", args.listen)
}
