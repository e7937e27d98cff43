//! One processor process: started with a fresh consumer group on empty output and internal
//! topics, measured from its /health turning 200 (partitions assigned, state restored) to the
//! moment the results topic holds every expected result.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::Env;
use super::load::Loaded;
use super::results::{self, Check, Reader, Seen};
use crate::broker::free_port;
use crate::consumers::log_summary;
use crate::procstat::{self, Proc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
}

impl Guarantee {
    pub fn flag(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "eos",
            Guarantee::AtLeastOnce => "alo",
        }
    }
}

/// A processor started and healthy.
pub struct Running {
    pub process: Proc,
    pub addr: SocketAddr,
    pub log: std::path::PathBuf,
    /// From start to /health 200 (topic provisioning, schemas, group join, restore).
    pub startup_secs: f64,
    pub healthy_at: Instant,
}

/// Starts a processor in a new consumer group and waits for /health 200.
pub async fn start(
    env: &Env,
    name: &str,
    guarantee: Guarantee,
    extra: &[String],
) -> Result<Running> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let group = format!("bench-{name}-{}", std::process::id());
    let log = env.logs.join(format!("processor-{name}.log"));
    let mut command = Command::new(&env.processor_bin);
    command
        .args(["--listen", &addr.to_string()])
        .args(["--kafka-brokers", &env.brokers])
        .args(["--schema-registry-url", &env.registry_url])
        .args(["--group", &group])
        .args(["--instance-id", "bench"])
        .args(["--processing-guarantee", guarantee.flag()])
        // The reference serves no queries; neither does the measured processor.
        .arg("--no-query")
        .args(extra)
        .env("RUST_LIB_BACKTRACE", "0");
    let started = Instant::now();
    let process = Proc::spawn("processor", command, &log)?;
    process
        .wait_healthy(addr, &log, Duration::from_secs(120))
        .await?;
    Ok(Running {
        process,
        addr,
        log,
        startup_secs: started.elapsed().as_secs_f64(),
        healthy_at: Instant::now(),
    })
}

/// One measured pass over a backlog.
#[derive(Debug, Clone)]
pub struct ProcRun {
    pub name: String,
    pub guarantee: Guarantee,
    /// Records of the backlog (events and closers).
    pub events: u64,
    pub startup_secs: f64,
    /// /health 200 → the last expected result readable.
    pub wall_secs: f64,
    /// Processor CPU (all threads) over that interval.
    pub cpu_secs: f64,
    /// Peak RSS (VmHWM) of its whole life until then.
    pub peak_rss_mib: f64,
    /// Broker CPU over the same interval.
    pub broker_cpu_secs: Option<f64>,
    pub check: Check,
    /// Counters from the processor's /metrics at the end (summed over labels).
    pub metrics: BTreeMap<String, f64>,
    /// Where the processing thread's time went over the measured interval.
    pub sched: Option<Sched>,
    /// What the run left in the processor's internal and output topics (read afterwards).
    pub volumes: Vec<super::ceiling::Volume>,
}

/// The processing thread (the busiest thread named `processor`) over the measured interval,
/// from the scheduler's accounting; and the commits, from the processor's own histogram.
#[derive(Debug, Clone, Copy)]
pub struct Sched {
    pub wall_secs: f64,
    /// On a CPU.
    pub cpu_secs: f64,
    /// Runnable but waiting for a CPU (other processes, or its own other threads).
    pub runqueue_secs: f64,
    /// Inside `commit` (flush or transaction commit, offsets), which blocks the thread.
    pub commit_secs: f64,
    pub commits: f64,
    /// Runnable-but-waiting time of all the processor's threads.
    pub all_threads_runqueue_secs: f64,
}

impl Sched {
    /// Neither running, nor runnable, nor committing: waiting in poll for records.
    pub fn other_blocked_secs(&self) -> f64 {
        (self.wall_secs - self.cpu_secs - self.runqueue_secs - self.commit_secs).max(0.0)
    }

    pub fn json(&self) -> Value {
        json!({
            "wall_secs": self.wall_secs,
            "on_cpu_secs": self.cpu_secs,
            "waiting_for_cpu_secs": self.runqueue_secs,
            "in_commit_secs": self.commit_secs,
            "commits": self.commits,
            "other_blocked_secs": self.other_blocked_secs(),
            "all_threads_waiting_for_cpu_secs": self.all_threads_runqueue_secs,
        })
    }
}

fn sched(
    before: &BTreeMap<i32, procstat::ThreadTimes>,
    after: &BTreeMap<i32, procstat::ThreadTimes>,
    metrics_before: &BTreeMap<String, f64>,
    metrics_after: &BTreeMap<String, f64>,
    wall_secs: f64,
) -> Option<Sched> {
    let delta = |tid: &i32, t: &procstat::ThreadTimes| {
        let b = before.get(tid)?;
        Some((t.cpu_secs - b.cpu_secs, t.wait_secs - b.wait_secs))
    };
    let (cpu_secs, runqueue_secs) = after
        .iter()
        .filter(|(_, t)| t.name == "processor")
        .filter_map(|(tid, t)| delta(tid, t))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    let all_threads_runqueue_secs = after
        .iter()
        .filter_map(|(tid, t)| delta(tid, t))
        .map(|(_, w)| w)
        .sum();
    let diff = |name: &str| {
        metrics_after.get(name).copied().unwrap_or(0.0)
            - metrics_before.get(name).copied().unwrap_or(0.0)
    };
    Some(Sched {
        wall_secs,
        cpu_secs,
        runqueue_secs,
        commit_secs: diff("processor_commit_seconds_sum"),
        commits: diff("processor_commit_seconds_count"),
        all_threads_runqueue_secs,
    })
}

impl ProcRun {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall_secs
    }

    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / self.events as f64 * 1e6
    }

    pub fn events_per_cpu_sec(&self) -> f64 {
        self.events as f64 / self.cpu_secs
    }

    pub fn broker_cpu_per_million(&self) -> Option<f64> {
        self.broker_cpu_secs.map(|b| b / self.events as f64 * 1e6)
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "processing_guarantee": self.guarantee.flag(),
            "events": self.events,
            "startup_secs": self.startup_secs,
            "wall_secs": self.wall_secs,
            "events_per_sec": self.events_per_sec(),
            "cpu_secs": self.cpu_secs,
            "cpu_secs_per_million_events": self.cpu_per_million(),
            "events_per_cpu_sec": self.events_per_cpu_sec(),
            "peak_rss_mib": self.peak_rss_mib,
            "broker_cpu_secs": self.broker_cpu_secs,
            "broker_cpu_secs_per_million_events": self.broker_cpu_per_million(),
            "check": self.check.json(),
            "metrics": self.metrics,
            "processing_thread": self.sched.map(|s| s.json()),
            "topic_volumes": self.volumes.iter().map(super::ceiling::Volume::json).collect::<Vec<_>>(),
        })
    }
}

/// Runs a processor over `loaded` (already in topic_app_events) until every expected result
/// is readable. With `perf_data`, `perf record` samples it over the measured interval.
pub async fn measure(
    env: &Env,
    name: &str,
    guarantee: Guarantee,
    extra: &[String],
    loaded: &Loaded,
    perf_data: Option<&Path>,
) -> Result<(ProcRun, Vec<Seen>)> {
    env.reset_topics(false).await?;
    let ids = loaded.expected.results.keys().cloned().collect();
    let reader = Reader::start(
        &env.brokers,
        platform::topics::PROCESSED_EVENTS.name,
        env.result_partitions,
        ids,
    )?;
    let running = start(env, name, guarantee, extra).await?;
    let before = running.process.sample().context("sampling the processor")?;
    let broker_before = env.broker_cpu();
    let threads_before = procstat::thread_times(running.process.pid);
    let metrics_before = fetch_metrics(running.addr).await;
    let perf = match perf_data {
        Some(path) => Some(crate::profile::record_with(
            running.process.pid,
            path,
            &env.logs.join("perf.log"),
            &["--call-graph", "dwarf,16384"],
        )?),
        None => None,
    };
    let limit = Duration::from_secs(120 + loaded.records / 4_000);
    let outcome = loop {
        if let Some(done) = reader.complete_at() {
            break Ok(done);
        }
        if let Some(exit) = running.process.try_wait()? {
            break Err(anyhow::anyhow!(
                "the processor exited ({:?}) with {} of {} results read: {}",
                exit.code,
                reader.seen_count(),
                loaded.expected.results.len(),
                log_summary(&running.log)
            ));
        }
        if running.healthy_at.elapsed() > limit {
            break Err(anyhow::anyhow!(
                "{} of {} results after {} s{}; processor log: {}",
                reader.seen_count(),
                loaded.expected.results.len(),
                limit.as_secs(),
                reader
                    .error()
                    .map(|e| format!(" (reader: {e})"))
                    .unwrap_or_default(),
                log_summary(&running.log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let usage = running.process.sample();
    let broker_after = env.broker_cpu();
    let threads_after = procstat::thread_times(running.process.pid);
    let metrics = fetch_metrics(running.addr).await;
    if let Some(perf) = perf {
        crate::profile::stop(perf).await?;
    }
    let stopped = running.process.terminate(Duration::from_secs(30)).await;
    let seen = reader.finish();
    let done = outcome?;
    stopped.context("stopping the processor")?;
    let usage = usage.context("sampling the processor")?;
    let end = super::load::START_MS + loaded.spec.span_ms;
    let check = results::check(&seen, &loaded.expected, |start| start < end);
    let wall_secs = done.duration_since(running.healthy_at).as_secs_f64();
    let volumes = {
        let brokers = env.brokers.clone();
        tokio::task::spawn_blocking(move || {
            use platform::topics::{PROCESSED_EVENTS, PROCESSOR_CHANGELOG, PROCESSOR_REPARTITION};
            [PROCESSOR_REPARTITION, PROCESSOR_CHANGELOG, PROCESSED_EVENTS]
                .iter()
                .filter_map(|t| super::ceiling::volume(&brokers, t.name, t.partitions).ok())
                .collect::<Vec<_>>()
        })
        .await?
    };
    let sched = sched(
        &threads_before,
        &threads_after,
        &metrics_before,
        &metrics,
        wall_secs,
    );
    Ok((
        ProcRun {
            name: name.to_string(),
            guarantee,
            events: loaded.records,
            startup_secs: running.startup_secs,
            wall_secs,
            cpu_secs: usage.cpu_secs - before.cpu_secs,
            peak_rss_mib: usage.peak_rss_mib(),
            broker_cpu_secs: broker_before.zip(broker_after).map(|(b, a)| a - b),
            check,
            metrics,
            sched,
            volumes,
        },
        seen,
    ))
}

/// [`metrics`] off the async runtime; empty when unreachable.
pub async fn fetch_metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    tokio::task::spawn_blocking(move || metrics(addr))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// The processor's /metrics, summed by metric name over labels (counters, gauges, histogram
/// sums and counts).
pub fn metrics(addr: SocketAddr) -> Result<BTreeMap<String, f64>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .context("connecting to the processor's /metrics")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .context("reading /metrics")?;
    let mut sums = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || !line.starts_with("processor_") {
            continue;
        }
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels
            .split_once('{')
            .map_or(name_labels, |(n, _)| n)
            .to_string();
        if name.ends_with("_bucket")
            || name == "processor_consumer_lag"
            || name == "processor_watermark_ms"
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *sums.entry(name).or_insert(0.0) += v;
        }
    }
    Ok(sums)
}
