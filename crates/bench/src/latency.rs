//! Commit-to-consumer latency at a steady write rate: paced writers commit small transactions
//! while a Kafka consumer notes when each change record becomes readable. A record's latency is
//! that moment minus the source commit time it carries (`source.commit_timestamp`, PostgreSQL's
//! clock, the same machine's). It spans WAL decoding, the connector, the broker's acknowledgement
//! and the consumer's fetch, i.e. when a downstream reader can act on the change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use local_stack::CDC_TOPIC;
use platform::registry::RegistryClient;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

use crate::consumers::Env;
use crate::workload;

#[derive(Debug, Clone)]
pub struct Latency {
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub written: u64,
    pub received: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Records over 50 ms (the target), and the span of their commit times in seconds after
    /// the writes started: a stall shows as one short window, a slow path as many records.
    pub over_50ms: u64,
    pub over_50ms_window: Option<(f64, f64)>,
    /// CPU seconds the hypervisor took from this machine's cores during the writes.
    pub stolen_cpu_secs: Option<f64>,
    pub connector_cpu_secs_per_million: f64,
    pub connector_peak_rss_mib: f64,
}

impl Latency {
    pub fn to_json(&self) -> Value {
        json!({
            "target_changes_per_sec": self.target_rate,
            "achieved_changes_per_sec": self.achieved_rate,
            "changes_written": self.written,
            "records_received": self.received,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "records_over_50ms": self.over_50ms,
            "over_50ms_commit_window_secs": self.over_50ms_window.map(|(a, b)| [a, b]),
            "stolen_cpu_secs_during_writes": self.stolen_cpu_secs,
            "connector_cpu_secs_per_million": self.connector_cpu_secs_per_million,
            "connector_peak_rss_mib": self.connector_peak_rss_mib,
        })
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Writers: `connections` sessions, each committing every 10 ms one statement of
/// `rate / connections / 100` rows, alternately inserting users and updating the ones it
/// inserted last. Returns the number of changes written.
async fn write_paced(url: &str, rate: u64, connections: u64, duration: Duration) -> Result<u64> {
    let per_tick = (rate / connections / 100).max(1) as i64;
    let written = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for writer in 0..connections {
        let sql = workload::connect(url).await?;
        let written = written.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            // A late tick is made up at once, so the average rate holds.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let end = Instant::now() + duration;
            let mut last_ids: Vec<i64> = Vec::new();
            let mut tick = 0u64;
            while Instant::now() < end {
                ticker.tick().await;
                let changes = if tick.is_multiple_of(2) || last_ids.is_empty() {
                    let tag = format!("lat-{writer}-{tick}");
                    let rows = sql
                        .query(
                            "INSERT INTO users (email, full_name) \
                             SELECT format('%s-%s@example.vn', $1::text, g), 'Lê Văn ' || g FROM generate_series(1, $2::bigint) g \
                             RETURNING user_id",
                            &[&tag, &per_tick],
                        )
                        .await?;
                    last_ids = rows.iter().map(|r| r.get(0)).collect();
                    rows.len() as u64
                } else {
                    sql.execute("UPDATE users SET loyalty_tier = 'gold' WHERE user_id = ANY($1)", &[&last_ids]).await?
                };
                written.fetch_add(changes, Ordering::Relaxed);
                tick += 1;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(written.load(Ordering::Relaxed))
}

fn consumer(brokers: &str) -> Result<StreamConsumer> {
    platform::kafka::client_config(brokers)
        .set("group.id", format!("bench-latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("session.timeout.ms", "6000")
        // librdkafka's default fetch wait (500 ms) would dominate the figure when the broker
        // answers a fetch only at its deadline; a short wait measures availability instead.
        .set("fetch.wait.max.ms", "5")
        .create()
        .context("creating the latency consumer")
}

pub async fn measure(
    env: &Env,
    rate: u64,
    connections: u64,
    duration: Duration,
) -> Result<Latency> {
    let slot = "bench_latency";
    let (connector, broker) = env.start_connector(slot).await?;
    let result = measure_with(
        env,
        &broker.brokers,
        rate,
        connections,
        duration,
        &connector,
    )
    .await;
    let stopped = connector.terminate(Duration::from_secs(30)).await;
    broker.stop().await?;
    workload::drop_slot(&env.sql, slot).await?;
    stopped?;
    result
}

async fn measure_with(
    env: &Env,
    brokers: &str,
    rate: u64,
    connections: u64,
    duration: Duration,
    connector: &crate::procstat::Proc,
) -> Result<Latency> {
    let consumer = Arc::new(consumer(brokers)?);
    consumer.subscribe(&[CDC_TOPIC]).context("subscribing")?;
    // Warm-up: write single rows until one arrives, so the group is joined and the partitions'
    // positions are set before the measured writes start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        env.sql
            .execute("INSERT INTO users (email, full_name) VALUES (format('warmup-%s@example.vn', clock_timestamp()), 'warm-up')", &[])
            .await?;
        if let Ok(received) =
            tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
        {
            received.context("reading the change topic")?;
            break;
        }
        if Instant::now() > deadline {
            bail!("no change record reached the consumer within 60 s of warm-up");
        }
    }
    let baseline = connector.sample().context("sampling the connector")?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        // Payloads are kept and decoded afterwards, so decoding does not compete for the CPU
        // with the connector while it is being measured.
        tokio::spawn(async move {
            let mut seen: Vec<(i64, Vec<u8>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(message) =
                    tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
                {
                    let message = message.context("reading the change topic")?;
                    seen.push((now_micros(), message.payload().unwrap_or_default().to_vec()));
                }
            }
            anyhow::Ok(seen)
        })
    };
    let writes_started = now_micros();
    let started = Instant::now();
    let stolen_before = crate::procstat::stolen_cpu_secs();
    let written = write_paced(&env.stack.pg_url(), rate, connections, duration).await?;
    let stolen_cpu_secs = crate::procstat::stolen_since(stolen_before);
    let achieved_rate = written as f64 / started.elapsed().as_secs_f64();
    // Let the last records arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = reader.await??;
    let usage = connector.sample().context("sampling the connector")?;

    let registry = RegistryClient::new(&env.stack.registry_url());
    let mut latencies_ms = Vec::with_capacity(seen.len());
    let mut slow_commits: Vec<f64> = Vec::new();
    for (received_at, payload) in &seen {
        let value = platform::avro::decode(&registry, payload)
            .await
            .context("decoding a change record")?;
        let json = platform::avro::to_json(&value);
        let committed = json["source"]["commit_timestamp"]
            .as_i64()
            .context("a record without source.commit_timestamp")?;
        // Records of the warm-up rows are not part of the measurement.
        if committed >= writes_started {
            let latency = (received_at - committed) as f64 / 1000.0;
            if latency > 50.0 {
                slow_commits.push((committed - writes_started) as f64 / 1e6);
            }
            latencies_ms.push(latency);
        }
    }
    if latencies_ms.is_empty() {
        bail!("no change record of the paced writes reached the consumer");
    }
    latencies_ms.sort_by(f64::total_cmp);
    let received = latencies_ms.len() as u64;
    Ok(Latency {
        target_rate: rate,
        achieved_rate,
        written,
        received,
        p50_ms: percentile(&latencies_ms, 0.50),
        p99_ms: percentile(&latencies_ms, 0.99),
        max_ms: *latencies_ms.last().unwrap_or(&0.0),
        over_50ms: slow_commits.len() as u64,
        over_50ms_window: slow_commits
            .iter()
            .copied()
            .reduce(f64::min)
            .zip(slow_commits.iter().copied().reduce(f64::max)),
        stolen_cpu_secs,
        connector_cpu_secs_per_million: (usage.cpu_secs - baseline.cpu_secs) / received as f64
            * 1e6,
        connector_peak_rss_mib: usage.peak_rss_mib(),
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
