//! Result delay: events written at a steady rate with event time = the wall clock, 2-second
//! windows, no allowed lateness; a reader notes when each window result becomes readable.
//! Delay = that moment − window end (both the bench's wall clock), i.e. how long after a window
//! ends a downstream reader can act on its result. It spans the last events' trip to the broker,
//! the processor's two stages (input → repartition topic → window), its commits (the
//! transaction makes the routed records and then the result visible) and the reader's fetch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::producer::Producer;
use serde_json::{Value, json};

use super::Env;
use super::load::{self, Encoder, Rng, Tally};
use super::results::{self, Check, Reader};
use super::run::{self, Guarantee};

pub const WINDOW_SECS: i64 = 2;
/// How long after the writes stop the bench waits for the last results.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Delay {
    pub guarantee: Guarantee,
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub written: u64,
    pub pacing_secs: f64,
    pub windows: usize,
    /// Results of the measured windows read, and not read within `waited_secs` of the end.
    pub results: usize,
    pub missing: usize,
    pub waited_secs: u64,
    /// Input records the processor had consumed at the end (its /metrics).
    pub processed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
    /// Per window: when its last result was readable (the whole window known).
    pub window_complete_p50_ms: f64,
    pub window_complete_p99_ms: f64,
    /// Per measured window, in order: seconds from the start of the writes to the window's
    /// end, and the delay of its last result (infinite when missing).
    pub window_delays: Vec<(f64, f64)>,
    pub processor_cpu_secs: f64,
    pub processor_cpu_per_million: f64,
    pub processor_peak_rss_mib: f64,
    pub broker_cpu_secs: Option<f64>,
    pub check: Check,
    pub commit_interval_ms: u64,
    pub args: Vec<String>,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

impl Delay {
    pub fn json(&self) -> Value {
        json!({
            "processing_guarantee": self.guarantee.flag(),
            "processor_args": self.args,
            "target_events_per_sec": self.target_rate,
            "achieved_events_per_sec": self.achieved_rate,
            "events_written": self.written,
            "pacing_secs": self.pacing_secs,
            "windows_measured": self.windows,
            "results_read": self.results,
            "results_missing": self.missing,
            "waited_after_writes_secs": self.waited_secs,
            "input_records_processed": self.processed,
            "delay_ms": {"p50": ms_json(self.p50_ms), "p99": ms_json(self.p99_ms), "max": ms_json(self.max_ms), "min": ms_json(self.min_ms)},
            "window_complete_delay_ms": {"p50": ms_json(self.window_complete_p50_ms), "p99": ms_json(self.window_complete_p99_ms)},
            "per_window": self.window_delays.iter().map(|(at, ms)| json!({"window_end_after_start_secs": at, "last_result_delay_ms": ms_json(*ms)})).collect::<Vec<_>>(),
            "processor_cpu_secs": self.processor_cpu_secs,
            "processor_cpu_secs_per_million_events": self.processor_cpu_per_million,
            "processor_peak_rss_mib": self.processor_peak_rss_mib,
            "broker_cpu_secs": self.broker_cpu_secs,
            "check": self.check.json(),
            "metrics": self.metrics,
        })
    }
}

/// A delay for JSON: null when the result never came.
fn ms_json(ms: f64) -> Value {
    if ms.is_finite() {
        json!(ms)
    } else {
        Value::Null
    }
}

impl Delay {
    /// A delay for people: "> 20 s" when the result never came.
    pub fn show(&self, ms: f64) -> String {
        if ms.is_finite() {
            format!("{ms:.0} ms")
        } else {
            format!("> {} s", self.waited_secs)
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Writes `rate` events/s for `duration`, event time = now; returns the tally, the count and
/// the pacing's start and end (epoch ms).
fn write_paced(
    brokers: &str,
    encoder: &Encoder,
    partitions: i32,
    rate: u64,
    duration: Duration,
) -> Result<(Tally, u64, i64, i64)> {
    let topic = platform::topics::APP_EVENTS.name;
    let kinds = load::kinds(partitions);
    // A short linger, as a gateway would use: the batch wait is part of the delay.
    let producer = load::producer(brokers, 5)?;
    let mut rng = Rng::new(7);
    let mut tally = Tally::new(WINDOW_SECS * 1000);
    let started = Instant::now();
    let start_ms = now_millis();
    let mut written = 0u64;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while written < due {
            let kind = &kinds[rng.kind(&kinds)];
            let user = (!rng.chance(0.1)).then(|| rng.below(10_000));
            let time = now_millis();
            let payload = encoder.event(&mut rng, kind, time, user)?;
            load::send(&producer, topic, kind.partition, &kind.key, &payload, time)?;
            tally.add(kind, time, user);
            written += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let end_ms = now_millis();
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the paced writes")?;
    let failed = producer
        .context()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        anyhow::bail!("{failed} of the {written} paced records were not delivered");
    }
    Ok((tally, written, start_ms, end_ms))
}

pub async fn measure(
    env: &Env,
    rate: u64,
    secs: u64,
    guarantee: Guarantee,
    commit_interval_ms: u64,
) -> Result<Delay> {
    env.reset_topics(true).await?;
    let reader = Reader::start(
        &env.brokers,
        platform::topics::PROCESSED_EVENTS.name,
        env.result_partitions,
        Default::default(),
    )?;
    let args: Vec<String> = [
        "--app-events-window-secs",
        &WINDOW_SECS.to_string(),
        "--allowed-lateness-ms",
        "0",
        "--commit-interval-ms",
        &commit_interval_ms.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let running = run::start(
        env,
        &format!("latency-{}", guarantee.short()),
        guarantee,
        &args,
    )
    .await?;
    let before = running.process.sample().context("sampling the processor")?;
    let broker_before = env.broker_cpu();
    let writer = {
        let brokers = env.brokers.clone();
        let encoder = env.encoder.clone();
        let partitions = env.input_partitions;
        tokio::task::spawn_blocking(move || {
            write_paced(
                &brokers,
                &encoder,
                partitions,
                rate,
                Duration::from_secs(secs),
            )
        })
    };
    // Stop early if the processor dies.
    let (tally, written, start_ms, end_ms) = loop {
        if writer.is_finished() {
            break writer.await??;
        }
        if let Some(exit) = running.process.try_wait()? {
            anyhow::bail!(
                "the processor exited ({:?}) during the paced writes: {}",
                exit.code,
                crate::consumers::log_summary(&running.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pacing_secs = (end_ms - start_ms) as f64 / 1000.0;
    let window_ms = WINDOW_SECS * 1000;
    // Full windows only: the first one starting after the writes began, the last one ending
    // before they stopped.
    let in_scope = move |start: i64| start >= start_ms && start + window_ms <= end_ms;
    let expected = tally.expected(in_scope);
    // Wait for the last of them (the events after the last measured window move the
    // watermark past it).
    let deadline = Instant::now() + WAIT;
    while reader.missing(expected.results.keys()) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let usage = running.process.sample().context("sampling the processor")?;
    let broker_after = env.broker_cpu();
    let metrics = {
        let addr = running.addr;
        tokio::task::spawn_blocking(move || run::metrics(addr))
            .await?
            .unwrap_or_default()
    };
    running.process.terminate(Duration::from_secs(30)).await?;
    let seen = reader.finish();
    let check = results::check(&seen, &expected, in_scope);
    // A result that never came counts as infinitely late: a percentile past the share of
    // missing results is then "more than the wait".
    let mut delays: Vec<f64> = Vec::new();
    let mut window_done: std::collections::BTreeMap<i64, f64> = expected
        .results
        .values()
        .map(|r| (r.window_start, f64::MIN))
        .collect();
    let mut counted = std::collections::HashSet::new();
    for s in &seen {
        if !expected.results.contains_key(&s.id) || !counted.insert(s.id.clone()) {
            continue;
        }
        let delay = s.read_at_ms - s.window_end as f64;
        delays.push(delay);
        let done = window_done.entry(s.window_start).or_insert(f64::MIN);
        *done = done.max(delay);
    }
    let received = delays.len();
    let missing = expected.results.len() - received;
    delays.extend(std::iter::repeat_n(f64::INFINITY, missing));
    delays.sort_by(f64::total_cmp);
    for r in expected.results.values() {
        if !counted.contains(&super::load::result_id(r.window_start, &r.group)) {
            window_done.insert(r.window_start, f64::INFINITY);
        }
    }
    let window_delays: Vec<(f64, f64)> = window_done
        .iter()
        .map(|(start, ms)| ((start + window_ms - start_ms) as f64 / 1000.0, *ms))
        .collect();
    let mut complete: Vec<f64> = window_done.values().copied().collect();
    complete.sort_by(f64::total_cmp);
    let cpu = usage.cpu_secs - before.cpu_secs;
    Ok(Delay {
        guarantee,
        target_rate: rate,
        achieved_rate: written as f64 / pacing_secs,
        written,
        pacing_secs,
        windows: expected.windows(),
        results: received,
        missing,
        waited_secs: WAIT.as_secs(),
        processed: metrics
            .get("processor_input_records_total")
            .copied()
            .unwrap_or(0.0) as u64,
        p50_ms: percentile(&delays, 0.50),
        p99_ms: percentile(&delays, 0.99),
        max_ms: delays.last().copied().unwrap_or(f64::NAN),
        min_ms: delays.first().copied().unwrap_or(f64::NAN),
        window_complete_p50_ms: percentile(&complete, 0.50),
        window_complete_p99_ms: percentile(&complete, 0.99),
        window_delays,
        processor_cpu_secs: cpu,
        processor_cpu_per_million: cpu / written.max(1) as f64 * 1e6,
        processor_peak_rss_mib: usage.peak_rss_mib(),
        broker_cpu_secs: broker_before.zip(broker_after).map(|(b, a)| a - b),
        check,
        commit_interval_ms,
        args,
        metrics,
    })
}
