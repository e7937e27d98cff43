//! The processor's options: flags, `PROCESSOR_*` environment variables and an optional TOML file.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "processor",
    version,
    about = "Kafka stream processor: event-time windows, heat maps, CDC analytics, compacted state topics and alerts, exactly once"
)]
pub struct Args {
    /// TOML file with defaults for any option below; keys are the long option names
    /// (e.g. `allowed-lateness-ms = 5000`). Flags and environment variables override it.
    #[arg(long, env = "PROCESSOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of `/metrics` and `/health`.
    #[arg(long, env = "PROCESSOR_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long,
        env = "PROCESSOR_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_brokers: String,
    /// Kafka TLS and SASL (see the `--kafka-security-protocol` options).
    #[command(flatten)]
    pub kafka_security: platform::kafka_security::KafkaSecurityArgs,
    /// Base URL of the Confluent-compatible schema registry.
    #[arg(
        long,
        env = "PROCESSOR_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,
    /// Consumer group shared by every instance: instances in one group split the partitions.
    #[arg(long, env = "PROCESSOR_GROUP", default_value = "processor")]
    pub group: String,
    /// This instance's name, used in its transactional id (`<group>-<instance-id>`); a
    /// restarted instance should keep its name so the broker fences its former self.
    /// Default: a random name.
    #[arg(long, env = "PROCESSOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// `exactly-once`: input offsets, results, state changelog and internal records commit in
    /// one Kafka transaction. `at-least-once`: no transactions (faster; a crash repeats work,
    /// which the deterministic result ids make visible as duplicates with equal values).
    #[arg(
        long,
        env = "PROCESSOR_PROCESSING_GUARANTEE",
        value_enum,
        default_value = "exactly-once"
    )]
    pub processing_guarantee: Guarantee,
    /// How often state, results and offsets are committed (one transaction each), in ms.
    #[arg(long, env = "PROCESSOR_COMMIT_INTERVAL_MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub commit_interval_ms: u64,
    /// How far behind the highest event time seen an event may arrive and still be counted:
    /// the watermark is the minimum over the input partitions of their highest event time,
    /// minus this.
    #[arg(long, env = "PROCESSOR_ALLOWED_LATENESS_MS", default_value_t = 5_000)]
    pub allowed_lateness_ms: u64,
    /// An input partition without records for this long stops holding the watermark back.
    #[arg(long, env = "PROCESSOR_IDLE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub idle_timeout_ms: u64,
    /// Tumbling window of the app-events job, in seconds.
    #[arg(long, env = "PROCESSOR_APP_EVENTS_WINDOW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub app_events_window_secs: u64,
    /// Tumbling window of the clickstream job, in seconds.
    #[arg(long, env = "PROCESSOR_CLICKSTREAM_WINDOW_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub clickstream_window_secs: u64,
    /// Tumbling window of the CDC job (operations per table, delete bursts, failed payments).
    #[arg(long, env = "PROCESSOR_CDC_WINDOW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cdc_window_secs: u64,
    /// Tumbling window of the logs job, in seconds.
    #[arg(long, env = "PROCESSOR_LOGS_WINDOW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub logs_window_secs: u64,
    /// Side of a heat-map cell in CSS pixels: a click at (x, y) counts in cell
    /// (x / cell, y / cell).
    #[arg(long, env = "PROCESSOR_HEATMAP_CELL_PX", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub heatmap_cell_px: u32,
    /// DELETEs on one table within one CDC window that raise a DELETE_BURST alert.
    #[arg(long, env = "PROCESSOR_DELETE_BURST_THRESHOLD", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub delete_burst_threshold: u64,
    /// Failed payments of one user within one CDC window that raise a FAILED_PAYMENTS alert.
    #[arg(long, env = "PROCESSOR_FAILED_PAYMENTS_THRESHOLD", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub failed_payments_threshold: u64,
    /// A payment turning `refunded` with an amount above this raises a LARGE_REFUND alert
    /// (exact decimal, in the payment's currency units).
    #[arg(
        long,
        env = "PROCESSOR_LARGE_REFUND_AMOUNT",
        default_value = "10000000"
    )]
    pub large_refund_amount: rust_decimal::Decimal,
    /// Serve SQL over the PostgreSQL wire protocol here (`psql -h HOST -p PORT`): window
    /// results, alerts and state tables of every partition. `--no-query` turns it off.
    #[arg(long, env = "PROCESSOR_SQL_LISTEN", default_value = "127.0.0.1:5433")]
    pub sql_listen: SocketAddr,
    /// Run without the query layer: no SQL port, no live page, no reading of the result and
    /// state topics (for instances that should only process).
    #[arg(long, env = "PROCESSOR_NO_QUERY")]
    pub no_query: bool,
    /// Memory all SQL queries may use together, in MiB; a query needing more fails with
    /// SQLSTATE 53200 instead of growing the process.
    #[arg(long, env = "PROCESSOR_SQL_MEMORY_LIMIT_MB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..))]
    pub sql_memory_limit_mb: u64,
    /// Closed windows and alerts older than this are dropped from the queryable view, in
    /// seconds (the topics keep them for their own retention).
    #[arg(long, env = "PROCESSOR_QUERY_RETENTION_SECS", default_value_t = 86_400)]
    pub query_retention_secs: u64,
    /// Rows the queryable view keeps per table at most (the oldest windows go first).
    #[arg(long, env = "PROCESSOR_QUERY_MAX_ROWS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub query_max_rows: u64,
    /// Give up (exit non-zero) when Kafka stays unreachable this long at start-up, in seconds.
    #[arg(long, env = "PROCESSOR_STARTUP_TIMEOUT_SECS", default_value_t = 120)]
    pub startup_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
}

/// The settings the processing logic needs, in its own units (milliseconds).
#[derive(Debug, Clone)]
pub struct Settings {
    pub allowed_lateness_ms: i64,
    pub idle_timeout: Duration,
    pub app_events_window_ms: i64,
    pub clickstream_window_ms: i64,
    pub cdc_window_ms: i64,
    pub logs_window_ms: i64,
    pub heatmap_cell_px: u32,
    pub delete_burst_threshold: u64,
    pub failed_payments_threshold: u64,
    pub large_refund_amount: rust_decimal::Decimal,
}

impl Args {
    pub fn settings(&self) -> Settings {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Settings {
            allowed_lateness_ms: i64::try_from(self.allowed_lateness_ms).unwrap_or(i64::MAX),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            app_events_window_ms: ms(self.app_events_window_secs),
            clickstream_window_ms: ms(self.clickstream_window_secs),
            cdc_window_ms: ms(self.cdc_window_secs),
            logs_window_ms: ms(self.logs_window_secs),
            heatmap_cell_px: self.heatmap_cell_px,
            delete_burst_threshold: self.delete_burst_threshold,
            failed_payments_threshold: self.failed_payments_threshold,
            large_refund_amount: self.large_refund_amount,
        }
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_lateness_ms: 5_000,
            idle_timeout: Duration::from_secs(10),
            app_events_window_ms: 300_000,
            clickstream_window_ms: 600_000,
            cdc_window_ms: 300_000,
            logs_window_ms: 300_000,
            heatmap_cell_px: 50,
            delete_burst_threshold: 50,
            failed_payments_threshold: 3,
            large_refund_amount: rust_decimal::Decimal::from(10_000_000),
        }
    }
}
