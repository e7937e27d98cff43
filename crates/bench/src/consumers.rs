//! The two consumers of a backlog: pg_recvlogical (the ceiling: the walsender's output written
//! nowhere) and the connector (every change Avro-encoded and acknowledged by Kafka).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use local_stack::Stack;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::broker::{Broker, free_port};
use crate::procstat::{self, Proc};
use crate::workload::{self, Backlog};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Recvlogical,
    Connector,
}

impl Consumer {
    pub fn label(self) -> &'static str {
        match self {
            Consumer::Recvlogical => "pg_recvlogical",
            Consumer::Connector => "connector (Kafka acked)",
        }
    }
}

/// One consumer reading one backlog.
#[derive(Debug, Clone)]
pub struct Run {
    pub consumer: Consumer,
    pub events: u64,
    /// From process start to the last change consumed (pg_recvlogical exited at --endpos; the
    /// connector's confirmed position passed the end, i.e. Kafka acknowledged everything).
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub peak_rss_mib: f64,
    /// CPU of the walsender serving the slot (the decoding ceiling), sampled at the end.
    pub walsender_cpu_secs: Option<f64>,
    /// CPU of the broker over the run (connector runs only).
    pub broker_cpu_secs: Option<f64>,
    /// Changes the connector counted as acknowledged by Kafka (`cdc_events_total` of its
    /// /metrics), for streaming connector runs.
    pub changes_acked: Option<u64>,
    /// What the connector staged on disk for streamed transactions, against their pgoutput
    /// bytes (streaming connector runs).
    pub spill: Option<Spill>,
}

/// `cdc_staged_bytes_total` and `cdc_staged_pgoutput_bytes_total` of the connector's /metrics.
#[derive(Debug, Clone, Copy)]
pub struct Spill {
    pub staged_bytes: u64,
    pub pgoutput_bytes: u64,
}

impl Spill {
    pub fn ratio(&self) -> f64 {
        self.staged_bytes as f64 / (self.pgoutput_bytes as f64).max(1.0)
    }
}

impl Run {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall_secs
    }

    pub fn cpu_secs_per_million(&self) -> f64 {
        self.cpu_secs / self.events as f64 * 1e6
    }

    pub fn to_json(&self) -> Value {
        json!({
            "consumer": self.consumer.label(),
            "events": self.events,
            "wall_secs": self.wall_secs,
            "events_per_sec": self.events_per_sec(),
            "cpu_secs": self.cpu_secs,
            "cpu_secs_per_million_events": self.cpu_secs_per_million(),
            "peak_rss_mib": self.peak_rss_mib,
            "walsender_cpu_secs": self.walsender_cpu_secs,
            "broker_cpu_secs": self.broker_cpu_secs,
            "changes_acked": self.changes_acked,
            "spill": self.spill.map(|s| json!({
                "staged_bytes": s.staged_bytes,
                "pgoutput_bytes": s.pgoutput_bytes,
                "ratio": s.ratio(),
                "staged_bytes_per_million_changes": s.staged_bytes as f64 / self.events as f64 * 1e6,
            })),
        })
    }
}

pub struct Env {
    pub stack: Stack,
    pub sql: Client,
    pub logs: PathBuf,
    pub recvlogical: PathBuf,
    /// `--snapshot-workers` for the snapshot run, when asked for.
    pub snapshot_workers: Option<u32>,
    /// The connector's snapshot modes, when this build has `--snapshot-mode`.
    pub snapshot_modes: Option<SnapshotModes>,
}

/// The spellings of the `--snapshot-mode` values the bench uses.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotModes {
    /// Stream from the slot without snapshotting first (every streaming run: the backlog is
    /// what is measured, not a snapshot of the tables it left behind).
    pub no_data: &'static str,
    /// Snapshot, publish, exit.
    pub initial_only: &'static str,
}

impl SnapshotModes {
    /// Reads `cdc-connector --help`: None when the build has no `--snapshot-mode`; kebab-case
    /// values (clap's default) or snake_case ones otherwise.
    pub fn of(connector: &Path) -> Result<Option<SnapshotModes>> {
        let output = Command::new(connector)
            .arg("--help")
            .output()
            .context("running cdc-connector --help")?;
        let help = String::from_utf8_lossy(&output.stdout);
        if !help.contains("--snapshot-mode") {
            return Ok(None);
        }
        Ok(Some(if help.contains("initial-only") {
            SnapshotModes {
                no_data: "no-data",
                initial_only: "initial-only",
            }
        } else {
            SnapshotModes {
                no_data: "no_data",
                initial_only: "initial_only",
            }
        }))
    }
}

/// How long a consumer may take for `events` changes before the bench gives up on it: far more
/// than any plausible run (10k changes/s), so only a stuck consumer trips it.
fn time_limit(events: u64) -> Duration {
    Duration::from_secs(120 + events / 10_000)
}

impl Env {
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    pub async fn run(&self, consumer: Consumer, slot: &str, backlog: &Backlog) -> Result<Run> {
        match consumer {
            Consumer::Recvlogical => self.run_recvlogical(slot, backlog).await,
            Consumer::Connector => self.run_connector(slot, backlog, None).await,
        }
    }

    /// A connector run under `perf record` (its figures are not counted: perf perturbs them).
    pub async fn run_profiled(
        &self,
        slot: &str,
        backlog: &Backlog,
        perf_data: &Path,
    ) -> Result<Run> {
        self.run_connector(slot, backlog, Some(perf_data)).await
    }

    async fn run_recvlogical(&self, slot: &str, backlog: &Backlog) -> Result<Run> {
        let log = self.log("pg_recvlogical");
        let mut command = Command::new(&self.recvlogical);
        command
            .args([
                "-d",
                &self.stack.pg_url(),
                "-S",
                slot,
                "--start",
                "-f",
                "/dev/null",
                "--no-loop",
            ])
            .args(["-P", "pgoutput", "-o", "proto_version=2", "-o"])
            .arg(format!(
                "publication_names={}",
                local_stack::DEFAULT_PUBLICATION
            ))
            .args(["-o", "streaming=on"])
            .arg(format!("--endpos={}", backlog.end_lsn));
        let started = Instant::now();
        let process = Proc::spawn("pg_recvlogical", command, &log)?;
        let limit = time_limit(backlog.events);
        let mut walsender = None;
        let mut walsender_cpu = None;
        let exit = loop {
            if let Some(exit) = process.try_wait()? {
                break exit;
            }
            // The walsender ends with its client: keep its last reading.
            if walsender.is_none() {
                walsender = workload::slot_progress(&self.sql, slot, &backlog.end_lsn)
                    .await?
                    .1;
            }
            if let Some(pid) = walsender {
                walsender_cpu = procstat::sample(pid).map(|u| u.cpu_secs).or(walsender_cpu);
            }
            if started.elapsed() > limit {
                process.terminate(Duration::from_secs(5)).await?;
                bail!(
                    "pg_recvlogical did not reach {} within {}s",
                    backlog.end_lsn,
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let wall_secs = started.elapsed().as_secs_f64();
        if exit.code != Some(0) {
            bail!(
                "pg_recvlogical failed ({:?}): {}",
                exit.code,
                log_summary(&log)
            );
        }
        Ok(Run {
            consumer: Consumer::Recvlogical,
            events: backlog.events,
            wall_secs,
            cpu_secs: exit.usage.cpu_secs,
            peak_rss_mib: exit.usage.peak_rss_mib(),
            walsender_cpu_secs: walsender_cpu,
            broker_cpu_secs: None,
            changes_acked: None,
            spill: None,
        })
    }

    /// The connector's arguments for `slot` on `broker`: status updates every second so the
    /// slot shows progress promptly (an acknowledgement sends one anyway), no heartbeats (they
    /// would add WAL and records of their own).
    /// Returns the command and the address of its /health listener.
    fn connector_command(
        &self,
        slot: &str,
        broker: &Broker,
        extra: &[&str],
    ) -> Result<(Command, std::net::SocketAddr)> {
        let mut args = self.stack.connector_args();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let listen = addr.to_string();
        for (flag, value) in [
            ("--slot-name", slot),
            ("--kafka-brokers", broker.brokers.as_str()),
            ("--listen", listen.as_str()),
            ("--status-interval-secs", "1"),
            ("--heartbeat-interval-secs", "0"),
        ] {
            match args.iter().position(|a| a == flag) {
                Some(i) => args[i + 1] = value.to_string(),
                None => args.extend([flag.to_string(), value.to_string()]),
            }
        }
        if let Some(modes) = self.snapshot_modes
            && !extra.contains(&"--snapshot-mode")
        {
            args.extend(["--snapshot-mode".to_string(), modes.no_data.to_string()]);
        }
        let mut command = Command::new(self.stack.connector_binary());
        // An error then reads as one line in its log, not a backtrace (anyhow honours this).
        command
            .args(args)
            .args(extra)
            .env("RUST_LIB_BACKTRACE", "0");
        Ok((command, addr))
    }

    async fn run_connector(
        &self,
        slot: &str,
        backlog: &Backlog,
        perf_data: Option<&Path>,
    ) -> Result<Run> {
        let log = self.log("connector");
        let broker = Broker::start(&self.log("broker")).await?;
        let result = self
            .stream_with_connector(slot, backlog, &broker, &log, perf_data)
            .await;
        let stopped = broker.stop().await;
        let run = result?;
        stopped?;
        Ok(run)
    }

    async fn stream_with_connector(
        &self,
        slot: &str,
        backlog: &Backlog,
        broker: &Broker,
        log: &Path,
        perf_data: Option<&Path>,
    ) -> Result<Run> {
        let (command, metrics) = self.connector_command(slot, broker, &[])?;
        let broker_cpu_before = broker.usage().map(|u| u.cpu_secs).unwrap_or(0.0);
        let log_start = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let process = Proc::spawn("cdc-connector", command, log)?;
        let perf = self.profile(&process, perf_data)?;
        let limit = time_limit(backlog.events);
        let mut checked_log = Instant::now();
        let walsender = loop {
            if let Some(exit) = process.try_wait()? {
                bail!(
                    "the connector exited ({:?}) before reaching the end: {}",
                    exit.code,
                    log_summary(log)
                );
            }
            let (reached, walsender) =
                workload::slot_progress(&self.sql, slot, &backlog.end_lsn).await?;
            if reached {
                break walsender;
            }
            // A restarted session resumes from the slot and reads the backlog again: the run
            // no longer measures one pass, and whatever ended the session will likely recur.
            let restarted = if checked_log.elapsed() > Duration::from_secs(1) {
                checked_log = Instant::now();
                session_restart(log, log_start)
            } else {
                None
            };
            if restarted.is_some() || started.elapsed() > limit {
                let so_far = process.sample().unwrap_or_default();
                process.terminate(Duration::from_secs(10)).await?;
                let why = match restarted {
                    Some(line) => format!("its replication session failed and restarted ({line})"),
                    None => format!(
                        "it did not confirm {} within {} s",
                        backlog.end_lsn,
                        limit.as_secs()
                    ),
                };
                bail!(
                    "connector run stopped after {:.0} s: {why}; so far: {:.1} CPU-s, peak RSS {:.1} MiB",
                    started.elapsed().as_secs_f64(),
                    so_far.cpu_secs,
                    so_far.peak_rss_mib()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let wall_secs = started.elapsed().as_secs_f64();
        let usage = process
            .sample()
            .context("reading the connector's CPU and memory")?;
        let walsender_cpu_secs = walsender.and_then(procstat::sample).map(|u| u.cpu_secs);
        let broker_cpu_secs = broker.usage().map(|u| u.cpu_secs - broker_cpu_before);
        if let Some(perf) = perf {
            crate::profile::stop(perf).await?;
        }
        let counters = tokio::task::spawn_blocking(move || connector_counters(metrics)).await??;
        process.terminate(Duration::from_secs(30)).await?;
        Ok(Run {
            consumer: Consumer::Connector,
            events: backlog.events,
            wall_secs,
            cpu_secs: usage.cpu_secs,
            peak_rss_mib: usage.peak_rss_mib(),
            walsender_cpu_secs,
            broker_cpu_secs,
            changes_acked: Some(counters.changes_acked),
            spill: (counters.spill.staged_bytes > 0).then_some(counters.spill),
        })
    }

    /// Starts sampling `process` into `perf_data`, when given.
    fn profile(&self, process: &Proc, perf_data: Option<&Path>) -> Result<Option<Proc>> {
        perf_data
            .map(|path| crate::profile::record(process.pid, path, &self.log("perf")))
            .transpose()
    }

    /// `--snapshot-mode initial-only`: snapshot the publication's tables, publish READ records,
    /// wait for Kafka's acknowledgements and exit. Measured from start to exit; sampled by
    /// `perf record` into `perf_data` when given.
    pub async fn run_snapshot(
        &self,
        slot: &str,
        rows: u64,
        modes: SnapshotModes,
        perf_data: Option<&Path>,
    ) -> Result<Run> {
        let log = self.log("connector-snapshot");
        let broker = Broker::start(&self.log("broker")).await?;
        let workers = self.snapshot_workers.map(|w| w.to_string());
        let mut extra = vec!["--snapshot-mode", modes.initial_only];
        if let Some(workers) = &workers {
            extra.extend(["--snapshot-workers", workers.as_str()]);
        }
        let result = async {
            let (command, _) = self.connector_command(slot, &broker, &extra)?;
            let broker_cpu_before = broker.usage().map(|u| u.cpu_secs).unwrap_or(0.0);
            let started = Instant::now();
            let process = Proc::spawn("cdc-connector (snapshot)", command, &log)?;
            let perf = self.profile(&process, perf_data)?;
            let exit = process.wait(time_limit(rows)).await?;
            let wall_secs = started.elapsed().as_secs_f64();
            if let Some(perf) = perf {
                crate::profile::stop(perf).await?;
            }
            if exit.code != Some(0) {
                bail!(
                    "the snapshot run exited with {:?}: {}",
                    exit.code,
                    log_summary(&log)
                );
            }
            let broker_cpu_secs = broker.usage().map(|u| u.cpu_secs - broker_cpu_before);
            Ok(Run {
                consumer: Consumer::Connector,
                events: rows,
                wall_secs,
                cpu_secs: exit.usage.cpu_secs,
                peak_rss_mib: exit.usage.peak_rss_mib(),
                walsender_cpu_secs: None,
                broker_cpu_secs,
                changes_acked: None,
                spill: None,
            })
        }
        .await;
        let stopped = broker.stop().await;
        let run = result?;
        stopped?;
        Ok(run)
    }

    /// Starts a connector on `slot` (created by the connector if missing) with a fresh broker,
    /// waits until it reports healthy, and returns both (the latency phase drives it).
    pub async fn start_connector(&self, slot: &str) -> Result<(Proc, Broker)> {
        let broker = Broker::start(&self.log("broker")).await?;
        let (command, addr) = self.connector_command(slot, &broker, &[])?;
        let log = self.log("connector-latency");
        let process = Proc::spawn("cdc-connector", command, &log)?;
        match process
            .wait_healthy(addr, &log, Duration::from_secs(60))
            .await
        {
            Ok(()) => Ok((process, broker)),
            Err(error) => {
                broker.stop().await?;
                Err(error)
            }
        }
    }
}

struct ConnectorCounters {
    changes_acked: u64,
    spill: Spill,
}

/// The sum of the connector's `cdc_events_total` (changes whose delivery Kafka acknowledged)
/// and its spill counters.
fn connector_counters(addr: std::net::SocketAddr) -> Result<ConnectorCounters> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .context("connecting to the connector's /metrics")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .context("reading /metrics")?;
    let sum = |name: &str| {
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Ok(ConnectorCounters {
        changes_acked: sum("cdc_events_total"),
        spill: Spill {
            staged_bytes: sum("cdc_staged_bytes_total"),
            pgoutput_bytes: sum("cdc_staged_pgoutput_bytes_total"),
        },
    })
}

/// The connector's "retrying" warning, if its log (past `from`) has one: the session ended and
/// started again.
fn session_restart(log: &Path, from: u64) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(bytes.get(usize::try_from(from).ok()?..)?);
    text.lines().find(|l| l.contains("retrying in")).map(|l| {
        l.split_once("WARN")
            .map_or(l, |(_, rest)| rest)
            .trim()
            .to_string()
    })
}

/// The last few lines of a log that say something, without backtrace frames, on one line.
pub fn log_summary(log: &Path) -> String {
    let tail = local_stack::log_tail(log, 60);
    let lines: Vec<&str> = tail
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("at ")
                // a backtrace frame: "12: function"
                && l.split_once(':').is_none_or(|(n, _)| n.parse::<u32>().is_err())
        })
        .collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}
