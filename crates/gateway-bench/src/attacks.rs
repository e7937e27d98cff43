//! The Rust gateway under attack: a well-behaved client (a few requests in flight, paced) is
//! measured alone, then while attackers run beside it, each attack in turn:
//! - **slowloris**: hundreds of connections trickling a request head, a byte a second;
//! - **flood**: many requests in flight, each a small malformed body (a client error);
//! - **huge bodies**: requests far over the body limit.
//!
//! Reported per phase: the well-behaved client's p50 and p99 and the ratio of its p99 to the
//! unloaded one (the target is at most 2x), its errors, the attackers' answers by class (a
//! client error must never get a 5xx), and the gateway's peak resident memory.
//!
//! Each attack runs twice. Once in this process, at the gateway's priority: on this 2-core
//! machine the attacker then takes a core from the gateway, the broker and the client, which
//! measures the machine as much as the gateway. Once in a separate process at `nice 19`
//! (`gateway-bench --attacker KIND`), standing in for attackers on other machines: the
//! attacker gets the CPU the platform leaves, and still sends all the gateway will take.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinHandle};

use crate::procgroup::ProcessGroup;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    None,
    Slowloris,
    Flood,
    HugeBodies,
}

impl Attack {
    pub const ALL: [Attack; 4] = [
        Attack::None,
        Attack::Slowloris,
        Attack::Flood,
        Attack::HugeBodies,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Attack::None => "none (the unloaded reference)",
            Attack::Slowloris => {
                "slowloris: 400 connections sending a request head a byte a second"
            }
            Attack::Flood => "flood: 64 requests in flight, each a 1-byte malformed JSON body",
            Attack::HugeBodies => "huge bodies: 8 requests in flight, each announcing 64 MiB",
        }
    }
}

/// Where the attackers run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Tasks of this process, at the gateway's priority.
    SamePriority,
    /// A separate process at `nice 19`.
    Niced,
}

impl Placement {
    pub fn describe(self) -> &'static str {
        match self {
            Placement::SamePriority => "same priority",
            Placement::Niced => "nice 19",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AttackMeasurement {
    pub attack: Attack,
    pub placement: Placement,
    pub client_requests: u64,
    pub client_errors: u64,
    pub client_p50_ms: f64,
    pub client_p99_ms: f64,
    /// This phase's p99 over the unloaded one.
    pub p99_ratio: f64,
    pub attacker_requests: u64,
    pub attacker_4xx: u64,
    pub attacker_5xx: u64,
    pub gateway_peak_rss_mib: f64,
}

/// Runs every phase for `duration` each against the gateway at `base` (process `pid`).
pub async fn measure(
    base: &str,
    pid: u32,
    duration: Duration,
) -> anyhow::Result<Vec<AttackMeasurement>> {
    let mut results: Vec<AttackMeasurement> = Vec::new();
    let mut phases = vec![(Attack::None, Placement::SamePriority)];
    for placement in [Placement::SamePriority, Placement::Niced] {
        phases.extend(
            Attack::ALL
                .into_iter()
                .filter(|a| *a != Attack::None)
                .map(|attack| (attack, placement)),
        );
    }
    for (attack, placement) in phases {
        eprintln!(
            "attack {attack:?} ({}): {} s ...",
            placement.describe(),
            duration.as_secs()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(AttackerTally::default());
        let running = match placement {
            Placement::SamePriority => {
                Running::Tasks(AbortOnDrop(start_attackers(attack, base, &stop, &tally)))
            }
            Placement::Niced => Running::Process(Box::new(spawn_niced_attacker(attack, base)?)),
        };
        // Let the attack take hold before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sampler = sample_rss(pid, stop.clone());
        let (latencies, client_errors) = well_behaved_client(base, duration).await;
        stop.store(true, Ordering::Relaxed);
        let attacker = match running {
            Running::Tasks(tasks) => {
                drop(tasks);
                tally.counts()
            }
            Running::Process(attacker) => stop_attacker_process(*attacker).await,
        };
        let peak_rss = sampler.await.unwrap_or_default();
        let p50 = quantile(&latencies, 0.50);
        let p99 = quantile(&latencies, 0.99);
        let unloaded_p99 = results.first().map(|r| r.client_p99_ms).unwrap_or(p99);
        let measurement = AttackMeasurement {
            attack,
            placement,
            client_requests: latencies.len() as u64,
            client_errors,
            client_p50_ms: p50,
            client_p99_ms: p99,
            p99_ratio: p99 / unloaded_p99.max(f64::EPSILON),
            attacker_requests: attacker.requests,
            attacker_4xx: attacker.client_errors,
            attacker_5xx: attacker.server_errors,
            gateway_peak_rss_mib: peak_rss,
        };
        eprintln!(
            "  client p50 {:.2} ms, p99 {:.2} ms ({:.2}x), attacker 4xx {} 5xx {}, peak RSS {:.1} MiB",
            measurement.client_p50_ms,
            measurement.client_p99_ms,
            measurement.p99_ratio,
            measurement.attacker_4xx,
            measurement.attacker_5xx,
            measurement.gateway_peak_rss_mib
        );
        results.push(measurement);
    }
    Ok(results)
}

enum Running {
    Tasks(AbortOnDrop),
    /// Stopped with the rest of its process group when dropped, also on an error or a signal.
    Process(Box<ProcessGroup>),
}

/// Attacker tasks, aborted when this is dropped: at the end of their phase, or when the run
/// is dropped (a signal).
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// This program again as `--attacker KIND --target BASE` under `nice -n 19`, in its own
/// process group.
fn spawn_niced_attacker(attack: Attack, base: &str) -> anyhow::Result<ProcessGroup> {
    let exe = std::env::current_exe()?;
    let kind = clap::ValueEnum::to_possible_value(&attack)
        .ok_or_else(|| anyhow::anyhow!("{attack:?} has no name"))?;
    let mut command = tokio::process::Command::new("nice");
    command
        .args(["-n", "19"])
        .arg(exe)
        .args(["--attacker", kind.get_name(), "--target", base])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    ProcessGroup::spawn("the niced attacker", &mut command, Duration::from_secs(5))
}

/// SIGTERM to the attacker's process group; the tally the attacker prints as it exits.
async fn stop_attacker_process(mut attacker: ProcessGroup) -> Counts {
    let stdout = attacker.take_stdout();
    attacker.stop().await;
    let mut output = Vec::new();
    if let Some(mut stdout) = stdout {
        // Every writer has exited: this reads what is buffered, then the end.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut output),
        )
        .await;
    }
    serde_json::from_slice(&output).unwrap_or_default()
}

/// `gateway-bench --attacker KIND`: attacks `base` until SIGTERM, then prints its tally as JSON.
pub async fn run_attacker(attack: Attack, base: &str) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(AttackerTally::default());
    let tasks = start_attackers(attack, base, &stop, &tally);
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
        .recv()
        .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    println!("{}", serde_json::to_string(&tally.counts())?);
    Ok(())
}

/// The attackers' answers.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Counts {
    requests: u64,
    client_errors: u64,
    server_errors: u64,
}

#[derive(Default)]
struct AttackerTally {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
}

impl AttackerTally {
    fn counts(&self) -> Counts {
        Counts {
            requests: self.requests.load(Ordering::Relaxed),
            client_errors: self.client_errors.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
        }
    }

    fn answer(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => self.client_errors.fetch_add(1, Ordering::Relaxed),
            500..=599 => self.server_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

fn start_attackers(
    attack: Attack,
    base: &str,
    stop: &Arc<AtomicBool>,
    tally: &Arc<AttackerTally>,
) -> Vec<JoinHandle<()>> {
    let address = base.trim_start_matches("http://").to_string();
    match attack {
        Attack::None => Vec::new(),
        Attack::Slowloris => (0..400)
            .map(|_| {
                let (address, stop) = (address.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut socket) = TcpStream::connect(&address).await else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        let head = "POST /events/user HTTP/1.1\r\nHost: gateway\r\nX-Slow: ";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            continue;
                        }
                        // A byte a second until the server gives up on the head.
                        while socket.write_all(b"a").await.is_ok() {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                })
            })
            .collect(),
        Attack::Flood => (0..64)
            .map(|_| {
                let (base, stop, tally) = (base.to_string(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let answer = client
                            .post(format!("{base}/events/user"))
                            .header("content-type", "application/json")
                            .body("{")
                            .send()
                            .await;
                        if let Ok(response) = answer {
                            tally.answer(response.status().as_u16());
                        }
                    }
                })
            })
            .collect(),
        Attack::HugeBodies => (0..8)
            .map(|_| {
                let (address, stop, tally) = (address.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(status) = huge_body(&address).await {
                            tally.answer(status);
                        }
                    }
                })
            })
            .collect(),
    }
}

/// Announces a 64 MiB body and sends it in 64 KiB pieces until the server answers or hangs up;
/// the answer's status.
async fn huge_body(address: &str) -> Option<u16> {
    let mut socket = TcpStream::connect(address).await.ok()?;
    let head = format!(
        "POST /events/user HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        64 << 20
    );
    socket.write_all(head.as_bytes()).await.ok()?;
    let piece = vec![b' '; 64 << 10];
    let (mut reader, mut writer) = socket.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..1024 {
            if writer.write_all(&piece).await.is_err() {
                break;
            }
        }
    });
    let mut answer = [0u8; 64];
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read(&mut reader, &mut answer),
    )
    .await;
    sender.abort();
    let read = read.ok()?.ok()?;
    let line = String::from_utf8_lossy(&answer[..read]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Four loops, each posting a valid event and pausing 20 ms; every latency, and the errors.
async fn well_behaved_client(base: &str, duration: Duration) -> (Vec<Duration>, u64) {
    let deadline = Instant::now() + duration;
    let errors = Arc::new(AtomicU64::new(0));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (base, errors) = (base.to_string(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let Ok(mut connection) = crate::http1::Connection::new(&base) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return latencies;
                };
                let mut event = String::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    event.clear();
                    crate::write_user_event(&mut event, "well-behaved");
                    let answer = connection.post_json("/events/user", event.as_bytes()).await;
                    latencies.push(sent.elapsed());
                    if !matches!(answer, Ok(status) if (200..300).contains(&status)) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in loops {
        latencies.extend(task.await.unwrap_or_default());
    }
    latencies.sort();
    (latencies, errors.load(Ordering::Relaxed))
}

/// The p-quantile of sorted latencies, in milliseconds.
pub fn quantile(sorted: &[Duration], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Samples the process's resident memory every 100 ms until `stop`; the peak in MiB.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak = 0.0f64;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kib) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                peak = peak.max(kib / 1024.0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}
