//! The gateway's options: flags, `GATEWAY_*` environment variables and an optional TOML file.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::tarpit::TarpitPolicy;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "gateway",
    version,
    about = "HTTP ingestion API: validates events and answers 2xx only once Kafka acknowledged them"
)]
pub struct Args {
    /// TOML file with defaults for any option below; keys are the long option names
    /// (e.g. `kafka-brokers = "..."`). Flags and environment variables override it.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the HTTP API (events, /health, /stats, /metrics, /docs) listens on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "GATEWAY_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Kafka TLS and SASL (see the `--kafka-security-protocol` options).
    #[command(flatten)]
    pub kafka_security: platform::kafka_security::KafkaSecurityArgs,
    /// Base URL of the Confluent-compatible schema registry.
    #[arg(
        long,
        env = "GATEWAY_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,
    /// API keys, comma-separated, accepted in `X-API-Key` or `Authorization: Bearer KEY` on the
    /// /events endpoints; none disables authentication.
    #[arg(long, env = "GATEWAY_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// Most events accepted in one POST /events/batch (more get 413).
    #[arg(long, env = "GATEWAY_MAX_BATCH_EVENTS", default_value_t = 500)]
    pub max_batch_events: usize,
    /// Milliseconds an event may wait for the broker's acknowledgement before the client gets
    /// 503 with Retry-After.
    #[arg(long, env = "GATEWAY_PRODUCE_TIMEOUT_MS", default_value_t = 5_000)]
    pub produce_timeout_ms: u64,
    /// Milliseconds an event may wait in the producer for others to share its request to the
    /// broker (librdkafka's linger.ms). Every answer waits for the broker, so this is part of
    /// every request's latency; longer costs the broker less per event.
    #[arg(long, env = "GATEWAY_KAFKA_LINGER_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub kafka_linger_ms: u64,
    /// Seconds a client is told to wait (Retry-After) after a 503.
    #[arg(long, env = "GATEWAY_RETRY_AFTER_SECS", default_value_t = 5)]
    pub retry_after_secs: u64,
    /// Seconds an acknowledged event id is remembered, so that a client retry within this window
    /// does not produce a second record.
    #[arg(long, env = "GATEWAY_DEDUP_WINDOW_SECS", default_value_t = 600)]
    pub dedup_window_secs: u64,
    /// Most event ids remembered for deduplication; beyond it the oldest are forgotten first.
    /// The window's tables are reserved for this many at start-up, so that it never stalls
    /// requests to grow (their pages are touched as ids arrive).
    #[arg(long, env = "GATEWAY_DEDUP_CAPACITY", default_value_t = 200_000)]
    pub dedup_capacity: usize,
    /// Seconds an event timestamp may lie in the future (client clock skew) before it is rejected.
    #[arg(long, env = "GATEWAY_MAX_FUTURE_SKEW_SECS", default_value_t = 86_400)]
    pub max_future_skew_secs: u64,
    /// Seconds a client may take to send a request's body; a slower one (a stalled or
    /// trickling upload) gets 408 and its connection is freed. The request head has its own
    /// limit (10 s, every service).
    #[arg(long, env = "GATEWAY_BODY_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout_secs: u64,
    /// Client errors (4xx answers) a client address may cause at once before each further one
    /// is answered only after `--client-error-delay-ms` (a tarpit for floods of bad requests;
    /// valid requests are never delayed).
    #[arg(long, env = "GATEWAY_CLIENT_ERROR_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub client_error_burst: u32,
    /// Client errors per second an address earns back after its burst.
    #[arg(long, env = "GATEWAY_CLIENT_ERRORS_PER_SEC", default_value_t = 20)]
    pub client_errors_per_sec: u32,
    /// Milliseconds a client error answer beyond the address's budget is held before it is
    /// sent; 0 turns the tarpit off (e.g. behind a reverse proxy, where every client shares the
    /// proxy's address).
    #[arg(long, env = "GATEWAY_CLIENT_ERROR_DELAY_MS", default_value_t = 1_000)]
    pub client_error_delay_ms: u64,
    /// Error answers held back at the same time at most; beyond it they are sent at once and
    /// close their connection.
    #[arg(long, env = "GATEWAY_CLIENT_ERROR_MAX_HELD", default_value_t = 4_096)]
    pub client_error_max_held: usize,
    /// Seconds shutdown waits for requests in flight to finish before the process exits.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

impl Args {
    pub fn tarpit_policy(&self) -> TarpitPolicy {
        TarpitPolicy {
            burst: self.client_error_burst,
            per_second: f64::from(self.client_errors_per_sec),
            delay: Duration::from_millis(self.client_error_delay_ms),
            max_held: self.client_error_max_held,
        }
    }

    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms.max(1))
    }
}
