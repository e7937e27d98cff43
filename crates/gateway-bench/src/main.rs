//! gateway-bench: loads the Rust gateway and the reference FastAPI + confluent-kafka gateway
//! (bench/gateway/reference) with the same requests on the same stack and machine, and writes
//! bench/gateway/REPORT.md and report.json (requests/s, events/s, p50/p99 latency for single
//! and batch posts, at each of several concurrency levels: a curve up to saturation); then
//! measures a well-behaved client of the Rust gateway alone and under
//! attacks ([`attacks`]), written to bench/gateway/ATTACKS.md and attacks.json.
//!
//! Run: `cargo build --release -p gateway -p schema-registry -p local-stack -p gateway-bench &&
//! target/release/gateway-bench` (or `cargo run --release -p gateway-bench`, after building the
//! gateway and registry in release mode).
//!
//! Every process the bench starts itself runs in its own process group, stopped as a whole
//! on success, on error and on SIGINT/SIGTERM/SIGHUP of the bench ([`procgroup`]); the stack's
//! services are stopped by [`Stack`]'s own shutdown or `Drop`.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

mod attacks;
mod ceiling;
mod http1;
mod procgroup;

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::Parser;
use http1::Connection;
use local_stack::{Stack, StackOptions, workspace_root};
use platform::{
    machine::CpuTicks,
    shutdown::{StopSignals, note},
};
use procgroup::ProcessGroup;
use serde::Serialize;
use serde_json::json;

/// The two gateways' names in the results.
const RUST: &str = "rust";
const REFERENCE: &str = "reference-fastapi";
/// The HTTP server alone, answering without any work ([`ceiling`]).
const CEILING: &str = "http-ceiling";
/// How long the reference gateway gets between SIGTERM and SIGKILL (in-flight requests wait
/// at most 5 s for the broker).
const REFERENCE_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark the gateway against the reference FastAPI + confluent-kafka gateway",
    after_help = "Total time: the comparison measures every concurrency level for each gateway \
        (2) and scenario (2), and the HTTP ceiling for single events, each point for \
        --duration-secs after a warm-up of a fifth of it (at least 1 s), and the Rust gateway \
        paced at 80 % of its maximum for each scenario, as long; unless --no-profile, once more \
        for each target the run missed (at most 4), under perf; then 7 attack phases of \
        --attack-secs + 2 s each; plus a few seconds to start and stop the stack. With the \
        defaults: (5 levels x 5 + 2) x (15 + 3) s + 7 x (10 + 2) s = 570 s, about 10 minutes \
        (`--duration-secs 2 --concurrency 4,16`: about 2 minutes). Every process the bench starts is stopped when it exits, \
        also on error and on Ctrl-C/SIGTERM (exit status 130/143)."
)]
struct Args {
    /// Seconds of measured load per point (gateway, scenario and concurrency level), after a
    /// warm-up of a fifth of it (at least 1 s).
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,
    /// Concurrency levels (requests in flight at once), comma-separated: each gateway and
    /// scenario is measured at every level, giving a throughput/latency curve. The Rust
    /// gateway answers each request after the producer's 5 ms linger, so up to about 256 in
    /// flight its single-event rate grows with the level; the highest default level is where
    /// it levels off on 2 cores (one run on an Intel Xeon host: 39,313 events/s at 256, 54,053
    /// at 512, 50,297 at 1,024), the saturation the targets mean.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "8,32,128,256,512")]
    concurrency: Vec<usize>,
    /// Events per batch request.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Worker processes of the reference gateway (uvicorn --workers); default: the core count.
    #[arg(long)]
    reference_workers: Option<usize>,
    /// Where REPORT.md, report.json, ATTACKS.md and attacks.json go [default: <repo>/bench/gateway].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Seconds the well-behaved client is measured in each attack phase.
    #[arg(long, default_value_t = 10)]
    attack_secs: u64,
    /// Only the attack phases (ATTACKS.md), not the comparison with the reference.
    #[arg(long)]
    attacks_only: bool,
    /// Skip the perf profiles of the Rust gateway: for each target this run missed, its load
    /// is run once more (uncounted) under `perf record`, and the hottest symbols go in the
    /// report.
    #[arg(long)]
    no_profile: bool,
    /// Internal: be an attacker of this kind against --target until SIGTERM (the niced
    /// attacker process), then print the answers' tally.
    #[arg(long, value_enum, requires = "target", hide = true)]
    attacker: Option<attacks::Attack>,
    /// Internal: the gateway the attacker process attacks.
    #[arg(long, hide = true)]
    target: Option<String>,
    /// Internal (tests): start only the reference gateway (without a stack: it connects to its
    /// broker and registry at its first event), wait until it answers /health, keep it for
    /// this many seconds, stop it and exit. Its logs go to --out-dir, else a temp directory.
    #[arg(long, hide = true, conflicts_with = "attacks_only")]
    reference_only_secs: Option<u64>,
    /// Internal: be the HTTP ceiling server ([`ceiling`]) on 127.0.0.1 at this port until
    /// SIGTERM.
    #[arg(long, hide = true)]
    ceiling_server_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    Single,
    Batch,
}

/// How requests are sent.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Each connection sends its next request as soon as the last one is answered: the curve.
    ClosedLoop,
    /// Requests fall due at this many per second, each sent by whichever connection is free;
    /// a request's latency counts from when it fell due, so a server that falls behind shows
    /// its queue in the latencies instead of slowing the load down.
    Rate(f64),
}

/// One point of the curve, or the paced load at 80 % of the maximum. Throughput counts
/// successful answers only.
#[derive(Debug, Serialize)]
struct Measurement {
    gateway: &'static str,
    scenario: Scenario,
    /// Connections (requests in flight at most).
    concurrency: usize,
    /// Requests per second offered, for a paced load; none for a point of the curve.
    offered_requests_per_second: Option<f64>,
    requests: u64,
    errors: u64,
    events_per_request: usize,
    seconds: f64,
    requests_per_second: f64,
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The share of the machine's CPU time the hypervisor gave to other guests during the
    /// load (`None` where the kernel does not count it): the same code answers less then.
    stolen_percent: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let (Some(attack), Some(target)) = (args.attacker, &args.target) {
        return attacks::run_attacker(attack, target).await;
    }
    if let Some(port) = args.ceiling_server_port {
        return ceiling::serve(port).await;
    }
    if args.concurrency.contains(&0) {
        bail!("--concurrency levels must be at least 1");
    }
    args.concurrency.sort_unstable();
    args.concurrency.dedup();
    // Caught from the start, so an interrupted start-up stops cleanly too. Every process the
    // bench started is owned by the `run` future (the stack, the reference gateway's and the
    // attacker's process groups): dropping it stops them all, before we exit.
    let mut signals = StopSignals::install()?;
    let code = tokio::select! {
        result = run(args) => return result,
        (name, code) = signals.recv() => {
            note(format_args!(
                "gateway-bench: {name} received: stopping the reference gateway, the attacker and the stack ..."
            ));
            code
        }
    };
    note(format_args!(
        "gateway-bench: everything it started is stopped; exiting with status {code}"
    ));
    std::process::exit(code);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = args.reference_workers.unwrap_or(cores);
    if let Some(secs) = args.reference_only_secs {
        return reference_only(&args, &root, workers, Duration::from_secs(secs)).await;
    }
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| root.join("bench/gateway"));

    let mut options = StackOptions::for_tests("gateway-bench");
    options.bin_dir = std::env::current_exe()?
        .parent()
        .context("executable directory")?
        .to_path_buf();
    options.start_connector = false;
    options.start_gateway = true;
    eprintln!(
        "starting the stack and the Rust gateway from {} ...",
        options.bin_dir.display()
    );
    let stack = Stack::start(options).await?;

    if !args.attacks_only {
        let results = compare_with_reference(&stack, &args, &root, workers).await?;
        let profiles = if args.no_profile {
            Profiles::NotTaken("`--no-profile`".into())
        } else {
            // A failed profile is reported in its place; the measurements stand.
            profile_missed_targets(&stack, &args, &results)
                .await
                .unwrap_or_else(|error| Profiles::NotTaken(format!("profiling failed: {error:#}")))
        };
        write_report(&out_dir, &args, cores, workers, &results, &profiles)?;
        eprintln!("wrote {}/REPORT.md and report.json", out_dir.display());
    }
    let pid = stack.gateway_pid().context("the gateway's pid")?;
    let attacked = attacks::measure(
        &stack.gateway_url(),
        pid,
        Duration::from_secs(args.attack_secs),
    )
    .await?;
    stack.shutdown().await?;
    write_attack_report(&out_dir, &args, cores, &attacked)?;
    eprintln!("wrote {}/ATTACKS.md and attacks.json", out_dir.display());
    Ok(())
}

/// `--reference-only-secs`: the reference gateway alone, for `secs`, then stopped.
async fn reference_only(
    args: &Args,
    root: &std::path::Path,
    workers: usize,
    secs: Duration,
) -> anyhow::Result<()> {
    let log_dir = args.out_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gateway-bench-reference-{}", std::process::id()))
    });
    std::fs::create_dir_all(&log_dir)?;
    // Nothing listens there: the reference only connects at its first event.
    let (reference, url) = start_reference(
        root,
        workers,
        "127.0.0.1:9",
        "http://127.0.0.1:9",
        &log_dir.join("reference.log"),
    )
    .await?;
    // Through `note`: a test closes this stderr's pipe as soon as it reads "ready", maybe while
    // the line is still being written (`eprintln!` writes it in pieces, and panicked on the
    // closed pipe: exit status 101 instead of SIGTERM's 143).
    note(format_args!(
        "reference gateway ready at {url} (process group {}, {workers} workers); stopping it in {} s",
        reference.pgid(),
        secs.as_secs()
    ));
    tokio::time::sleep(secs).await;
    reference.stop().await;
    note(format_args!("reference gateway stopped"));
    Ok(())
}

/// Starts the reference gateway (`uvicorn --workers N`) in its own process group, logging to
/// `log` and `log` with extension `err.log`, and waits until it answers /health.
async fn start_reference(
    root: &std::path::Path,
    workers: usize,
    brokers: &str,
    registry: &str,
    log: &std::path::Path,
) -> anyhow::Result<(ProcessGroup, String)> {
    let port = free_port()?;
    let python = local_stack::python()?;
    let err_log = log.with_extension("err.log");
    let mut command = tokio::process::Command::new(&python);
    command
        .args([
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--workers",
            &workers.to_string(),
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
        ])
        .current_dir(root.join("bench/gateway/reference"))
        .env("REF_KAFKA_BROKERS", brokers)
        .env("REF_SCHEMA_REGISTRY_URL", registry)
        .env("REF_SCHEMA_FILE", root.join("schemas/AppEvent.avsc"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(&err_log)?);
    let mut reference = ProcessGroup::spawn("the reference gateway", &mut command, REFERENCE_GRACE)
        .context("scripts/install-deps.sh installs fastapi and uvicorn")?;
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, &mut reference, "the reference gateway", &err_log).await?;
    Ok((reference, url))
}

/// Both gateways, single and batch posts, at every concurrency level, on the same stack.
async fn compare_with_reference(
    stack: &Stack,
    args: &Args,
    root: &std::path::Path,
    workers: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let (reference, reference_url) = start_reference(
        root,
        workers,
        &stack.kafka_brokers(),
        &stack.registry_url(),
        &stack.root().join("logs/reference.log"),
    )
    .await?;

    let (ceiling, ceiling_url) = start_ceiling(&stack.root().join("logs/ceiling.log")).await?;
    let mut results = Vec::new();
    for (name, url) in [
        (RUST, stack.gateway_url()),
        (REFERENCE, reference_url),
        (CEILING, ceiling_url),
    ] {
        // The ceiling answers without reading a batch's events: only single events compare.
        let scenarios: &[Scenario] = if name == CEILING {
            &[Scenario::Single]
        } else {
            &[Scenario::Single, Scenario::Batch]
        };
        for &scenario in scenarios {
            for &concurrency in &args.concurrency {
                eprintln!(
                    "{name} {scenario:?} at {concurrency} in flight: warming up, then {} s of load ...",
                    args.duration_secs
                );
                let measured =
                    warmed_up_load(&url, scenario, concurrency, Pace::ClosedLoop, args, name)
                        .await?;
                eprintln!(
                    "  {:.0} req/s, {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, CPU stolen {}",
                    measured.requests_per_second,
                    measured.events_per_second,
                    measured.p50_ms,
                    measured.p99_ms,
                    measured.errors,
                    percent(measured.stolen_percent)
                );
                results.push(measured);
            }
            if name == RUST {
                results.push(paced_at_80_percent(&url, scenario, args, &results).await?);
            }
        }
    }
    reference.stop().await;
    ceiling.stop().await;
    Ok(results)
}

/// Loads the Rust gateway at 80 % of the highest rate its curve reached, paced, on twice as
/// many connections as the curve's highest level (so a request falling due finds a free
/// connection): the latency a client sees below saturation.
async fn paced_at_80_percent(
    url: &str,
    scenario: Scenario,
    args: &Args,
    results: &[Measurement],
) -> anyhow::Result<Measurement> {
    let most = highest(points(results, RUST, scenario)).context("the Rust curve is empty")?;
    let rate = 0.8 * most.requests_per_second;
    let connections = paced_connections(args);
    eprintln!(
        "{RUST} {scenario:?} paced at {rate:.0} requests/s (80 % of its maximum) on {connections} connections: warming up, then {} s ...",
        args.duration_secs
    );
    let measured = warmed_up_load(url, scenario, connections, Pace::Rate(rate), args, RUST).await?;
    eprintln!(
        "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, CPU stolen {}",
        measured.requests_per_second,
        measured.p50_ms,
        measured.p99_ms,
        measured.errors,
        percent(measured.stolen_percent)
    );
    Ok(measured)
}

/// A share of the machine's CPU time stolen (a measurement's `stolen_percent`), for the report.
fn percent(share: Option<f64>) -> String {
    share.map_or("n/a".into(), |share| format!("{share:.0} %"))
}

/// A warm-up of a fifth of `--duration-secs` (at least 1 s), then the measured load.
async fn warmed_up_load(
    url: &str,
    scenario: Scenario,
    connections: usize,
    pace: Pace,
    args: &Args,
    gateway: &'static str,
) -> anyhow::Result<Measurement> {
    let warm_up = Duration::from_secs((args.duration_secs / 5).max(1));
    load(url, scenario, connections, pace, args, warm_up, gateway).await?;
    let measured = Duration::from_secs(args.duration_secs);
    load(url, scenario, connections, pace, args, measured, gateway).await
}

fn paced_connections(args: &Args) -> usize {
    2 * args.concurrency.iter().copied().max().unwrap_or(1)
}

/// Starts the HTTP ceiling server (this program with `--ceiling-server-port`) in its own
/// process group and waits until it answers.
async fn start_ceiling(log: &std::path::Path) -> anyhow::Result<(ProcessGroup, String)> {
    let port = free_port()?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .args(["--ceiling-server-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    let mut ceiling =
        ProcessGroup::spawn("the HTTP ceiling server", &mut command, REFERENCE_GRACE)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, &mut ceiling, "the HTTP ceiling server", log).await?;
    Ok((ceiling, url))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until the server of `process` answers `/health` with a success.
async fn wait_healthy(
    url: &str,
    process: &mut ProcessGroup,
    what: &str,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Some(status) = process.exited() {
            bail!(
                "{what} exited ({status}); {}:\n{}",
                log.display(),
                local_stack::log_tail(log, 30)
            );
        }
        if let Ok(response) = reqwest::get(format!("{url}/health")).await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} did not start; {}:\n{}",
        log.display(),
        local_stack::log_tail(log, 30)
    )
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Appends a user event with a new id (so no request is deduplicated) to `into`, as JSON.
/// Written straight into the request's buffer: the generator's own CPU is taken from the
/// gateway it loads.
fn write_user_event(into: &mut String, gateway: &str) {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (user, session) = (n % 1000, n % 5000);
    let timestamp = chrono::Utc::now().timestamp_millis();
    // Writing into a String cannot fail.
    let _ = write!(
        into,
        r#"{{"event_id":"{gateway}-{n}","event_type":"search","user_id":"u-{user}","session_id":"s-{session}","app_type":"mobile","timestamp":{timestamp},"device":{{"device_type":"ios","os_version":"iOS 18.1","app_version":"4.12.0"}},"properties":{{"query":"Da Nang","guests":"2","check_in":"2026-12-20"}}}}"#
    );
}

/// Writes the next request's body into `into` (cleared first); the path it goes to.
fn write_body(
    into: &mut String,
    scenario: Scenario,
    batch_size: usize,
    gateway: &str,
) -> &'static str {
    into.clear();
    match scenario {
        Scenario::Single => {
            write_user_event(into, gateway);
            "/events/user"
        }
        Scenario::Batch => {
            into.push_str(r#"{"events":["#);
            for i in 0..batch_size {
                if i > 0 {
                    into.push(',');
                }
                into.push_str(r#"{"kind":"user","event":"#);
                write_user_event(into, gateway);
                into.push('}');
            }
            into.push_str("]}");
            "/events/batch"
        }
    }
}

/// `concurrency` loops posting for `duration`, at `pace`; latencies of every answered request,
/// the throughput of the successful ones.
async fn load(
    base: &str,
    scenario: Scenario,
    concurrency: usize,
    pace: Pace,
    args: &Args,
    duration: Duration,
    gateway: &'static str,
) -> anyhow::Result<Measurement> {
    let errors = Arc::new(AtomicU64::new(0));
    let ticks_at_start = CpuTicks::now();
    let started = Instant::now();
    let deadline = started + duration;
    // A JoinSet: if the run is dropped (a signal), the loops stop with it.
    let mut tasks = tokio::task::JoinSet::new();
    let next_due = Arc::new(AtomicU64::new(0));
    for _ in 0..concurrency {
        let mut connection = Connection::new(base)?;
        let (errors, next_due, batch_size) = (errors.clone(), next_due.clone(), args.batch_size);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut body = String::with_capacity(512 * batch_size);
            loop {
                let due = match pace {
                    Pace::ClosedLoop => Instant::now(),
                    Pace::Rate(per_second) => {
                        let n = next_due.fetch_add(1, Ordering::Relaxed);
                        started + Duration::from_secs_f64(n as f64 / per_second)
                    }
                };
                if due >= deadline {
                    break;
                }
                if matches!(pace, Pace::Rate(_)) {
                    tokio::time::sleep_until(due.into()).await;
                }
                let path = write_body(&mut body, scenario, batch_size, gateway);
                let answer = connection.post_json(path, body.as_bytes()).await;
                latencies.push(due.elapsed());
                if !matches!(answer, Ok(status) if (200..300).contains(&status)) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(task) = tasks.join_next().await {
        latencies.extend(task.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    let stolen_percent = CpuTicks::now()
        .zip(ticks_at_start)
        .and_then(|(now, start)| now.stolen_percent_since(start));
    latencies.sort();
    let quantile = |q: f64| attacks::quantile(&latencies, q);
    let events_per_request = match scenario {
        Scenario::Single => 1,
        Scenario::Batch => args.batch_size,
    };
    let requests = latencies.len() as u64;
    let errors = errors.load(Ordering::Relaxed);
    let succeeded = requests.saturating_sub(errors) as f64;
    Ok(Measurement {
        gateway,
        scenario,
        concurrency,
        offered_requests_per_second: match pace {
            Pace::ClosedLoop => None,
            Pace::Rate(per_second) => Some(per_second),
        },
        requests,
        errors,
        events_per_request,
        seconds,
        requests_per_second: succeeded / seconds,
        events_per_second: succeeded * events_per_request as f64 / seconds,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        stolen_percent,
    })
}

/// Where a scenario's curves saturate, against the issue's targets.
#[derive(Debug, Serialize)]
struct Saturation {
    scenario: Scenario,
    rust_max_events_per_second: f64,
    rust_max_at_concurrency: usize,
    reference_max_events_per_second: f64,
    reference_max_at_concurrency: usize,
    /// Rust over reference, maxima over the levels (target: at least 10).
    ratio: Option<f64>,
    /// The paced load at 80 % of the Rust maximum: events/s offered and answered.
    rust_paced_offered_events_per_second: f64,
    rust_paced_events_per_second: f64,
    /// The Rust p99 under that load, from when each request fell due (target: at most 50 ms).
    rust_p99_ms: f64,
    /// CPU time stolen at the Rust maximum and during the paced load: when the hypervisor takes
    /// more during the paced load, 80 % of the maximum is more than 80 % of what is left.
    rust_max_stolen_percent: Option<f64>,
    rust_paced_stolen_percent: Option<f64>,
    /// The HTTP server alone, answering without any work (single events only): the most any
    /// gateway could answer on this machine.
    http_ceiling_max_requests_per_second: Option<f64>,
}

impl Saturation {
    fn ratio_met(&self) -> bool {
        self.ratio.is_some_and(|r| r >= TARGET_RATIO)
    }

    fn p99_met(&self) -> bool {
        self.rust_p99_ms <= TARGET_P99_MS
    }
}

/// Target of the issue: the Rust gateway saturates at 10x the reference's events/s or more...
const TARGET_RATIO: f64 = 10.0;
/// ... with a p99 of at most 50 ms at 80 % of its maximum rate.
const TARGET_P99_MS: f64 = 50.0;

/// The points of a gateway's curve (closed-loop loads) for a scenario.
fn points<'a>(
    results: &'a [Measurement],
    gateway: &'a str,
    scenario: Scenario,
) -> impl Iterator<Item = &'a Measurement> + 'a {
    results.iter().filter(move |m| {
        m.gateway == gateway && m.scenario == scenario && m.offered_requests_per_second.is_none()
    })
}

/// A gateway's paced load for a scenario.
fn paced<'a>(
    results: &'a [Measurement],
    gateway: &str,
    scenario: Scenario,
) -> Option<&'a Measurement> {
    results.iter().find(|m| {
        m.gateway == gateway && m.scenario == scenario && m.offered_requests_per_second.is_some()
    })
}

fn highest<'a>(points: impl Iterator<Item = &'a Measurement>) -> Option<&'a Measurement> {
    points.max_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second))
}

fn saturation(results: &[Measurement], scenario: Scenario) -> Option<Saturation> {
    let rust = highest(points(results, RUST, scenario))?;
    let reference = highest(points(results, REFERENCE, scenario))?;
    let paced = paced(results, RUST, scenario)?;
    Some(Saturation {
        scenario,
        rust_max_events_per_second: rust.events_per_second,
        rust_max_at_concurrency: rust.concurrency,
        reference_max_events_per_second: reference.events_per_second,
        reference_max_at_concurrency: reference.concurrency,
        ratio: (reference.events_per_second > 0.0)
            .then(|| rust.events_per_second / reference.events_per_second),
        rust_paced_offered_events_per_second: paced.offered_requests_per_second.unwrap_or_default()
            * paced.events_per_request as f64,
        rust_paced_events_per_second: paced.events_per_second,
        rust_p99_ms: paced.p99_ms,
        rust_max_stolen_percent: rust.stolen_percent,
        rust_paced_stolen_percent: paced.stolen_percent,
        http_ceiling_max_requests_per_second: highest(points(results, CEILING, scenario))
            .map(|m| m.requests_per_second),
    })
}

/// A warning when a gateway's maximum is at the highest level measured: its curve may still
/// be rising, so the maximum is a lower bound of its saturation rate.
fn unsaturated(s: &Saturation, levels: &[usize]) -> String {
    let top = levels.iter().copied().max().unwrap_or(0);
    let mut which = Vec::new();
    if s.rust_max_at_concurrency == top {
        which.push("Rust");
    }
    if s.reference_max_at_concurrency == top {
        which.push("reference");
    }
    if which.is_empty() {
        return String::new();
    }
    let who = match which.as_slice() {
        [one] => format!("{one} maximum is"),
        _ => "Rust and reference maxima are".to_string(),
    };
    format!(
        " Note: the {who} at the highest level measured ({top} in flight), so the curve may not have \
         saturated yet (a lower bound; add a higher `--concurrency` level to see the plateau)."
    )
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// Where the Rust gateway's CPU went under the loads of the targets a run missed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Profiles {
    Taken(Vec<Profile>),
    /// Why none was taken.
    NotTaken(String),
}

/// One missed target's load, run once more (uncounted) under `perf record`.
#[derive(Debug, Serialize)]
struct Profile {
    target: String,
    load: String,
    /// `perf report --no-children --sort dso,sym` lines: percent, library, symbol.
    top_symbols: Vec<String>,
}

/// For each target the run missed, its load again (a warm-up, then `--duration-secs`) with
/// `perf record` sampling the Rust gateway: the report's profile of that target.
async fn profile_missed_targets(
    stack: &Stack,
    args: &Args,
    results: &[Measurement],
) -> anyhow::Result<Profiles> {
    let logs = stack.root().join("logs");
    if !local_stack::perf::available(&logs.join("perf-probe.data")) {
        return Ok(Profiles::NotTaken(
            "`perf record` is not usable here".into(),
        ));
    }
    let pid = stack.gateway_pid().context("the gateway's pid")?;
    let url = stack.gateway_url();
    let mut profiles = Vec::new();
    for missed in missed_targets(results) {
        eprintln!("profiling the Rust gateway: {} ...", missed.target);
        let warm_up = Duration::from_secs((args.duration_secs / 5).max(1));
        let (scenario, connections, pace) = (missed.scenario, missed.connections, missed.pace);
        load(&url, scenario, connections, pace, args, warm_up, RUST).await?;
        let data = logs.join(format!("perf-{}.data", profiles.len()));
        let recording = local_stack::perf::Recording::start(pid, &data, &logs.join("perf.log"))?;
        let duration = Duration::from_secs(args.duration_secs);
        let measured = load(&url, scenario, connections, pace, args, duration, RUST).await?;
        recording.finish().await?;
        profiles.push(Profile {
            target: missed.target,
            load: format!(
                "{connections} connections, {:.0} events/s answered, p99 {:.2} ms, CPU stolen {}",
                measured.events_per_second,
                measured.p99_ms,
                percent(measured.stolen_percent)
            ),
            top_symbols: local_stack::perf::top_symbols(&data, 30)?,
        });
    }
    Ok(Profiles::Taken(profiles))
}

/// A target the run missed, and the load that measured it.
#[derive(Debug)]
struct MissedTarget {
    target: String,
    scenario: Scenario,
    connections: usize,
    pace: Pace,
}

/// The targets of `results` not met: a ratio under 10x (the Rust curve's highest point), a
/// paced p99 over 50 ms (the paced load).
fn missed_targets(results: &[Measurement]) -> Vec<MissedTarget> {
    let mut missed = Vec::new();
    for scenario in [Scenario::Single, Scenario::Batch] {
        let Some(s) = saturation(results, scenario) else {
            continue;
        };
        if !s.ratio_met() {
            missed.push(MissedTarget {
                target: format!(
                    "{scenario:?} events at saturation, at least {TARGET_RATIO}x the reference"
                ),
                scenario,
                connections: s.rust_max_at_concurrency,
                pace: Pace::ClosedLoop,
            });
        }
        if let Some(paced) = paced(results, RUST, scenario).filter(|_| !s.p99_met())
            && let Some(rate) = paced.offered_requests_per_second
        {
            missed.push(MissedTarget {
                target: format!(
                    "{scenario:?} events paced at 80 % of the maximum, p99 at most {TARGET_P99_MS} ms"
                ),
                scenario,
                connections: paced.concurrency,
                pace: Pace::Rate(rate),
            });
        }
    }
    missed
}

/// The report's profiles: one section per missed target.
fn profiles_section(profiles: &Profiles) -> String {
    let mut md = String::from(
        "
## Profiles of the missed targets

",
    );
    match profiles {
        Profiles::NotTaken(why) => md.push_str(&format!("Not taken: {why}.\n")),
        Profiles::Taken(profiles) if profiles.is_empty() => {
            md.push_str("Every target was met in this run: no profile taken.\n")
        }
        Profiles::Taken(profiles) => {
            md.push_str(
                "Each missed target's load once more after the measured ones (uncounted), with \
                 `perf record -e cpu-clock -F 999 -p <gateway>` over its measured seconds; self time by library \
                 and symbol (`perf report --no-children --sort dso,sym`), top entries. The kernel's entries \
                 are the gateway's system calls (loopback TCP, futex, epoll).\n",
            );
            for profile in profiles {
                md.push_str(&format!(
                    "\n### {}\n\nLoad: {}.\n\n```\n{}\n```\n",
                    profile.target,
                    profile.load,
                    profile.top_symbols.join("\n")
                ));
            }
        }
    }
    md
}

fn write_report(
    out_dir: &std::path::Path,
    args: &Args,
    cores: usize,
    workers: usize,
    results: &[Measurement],
    profiles: &Profiles,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let cpu = platform::machine::cpu_model();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let command = format!(
        "cargo build --release -p gateway -p schema-registry -p local-stack -p gateway-bench && {}",
        command.replace(&workspace_root().display().to_string(), ".")
    );
    let scenarios = [Scenario::Single, Scenario::Batch];
    let saturations: Vec<Saturation> = scenarios
        .iter()
        .filter_map(|s| saturation(results, *s))
        .collect();
    let warm_up = (args.duration_secs / 5).max(1);
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "command": command,
        "machine": {"cores": cores, "cpu": cpu},
        "settings": {
            "duration_secs": args.duration_secs, "warm_up_secs": warm_up,
            "concurrency": args.concurrency, "batch_size": args.batch_size,
            "reference_workers": workers,
        },
        "targets": {"ratio_at_least": TARGET_RATIO, "rust_p99_ms_at_most": TARGET_P99_MS, "p99_at_fraction_of_max": 0.8},
        "results": results,
        "saturation": saturations,
        "profiles": profiles,
    });
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;

    let levels = args
        .concurrency
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut md = String::new();
    md.push_str("# Gateway benchmark\n\n");
    md.push_str(&format!(
        "Generated by `gateway-bench` on {} ({} cores, {cpu}).\n\nCommand: `{command}`\n\n",
        report["date"].as_str().unwrap_or_default(),
        cores
    ));
    md.push_str(&format!(
        "Both gateways run on the same machine against the same stack (tansu broker with memory storage, the project's schema registry), \
         behind the same load generator (`src/http1.rs`: one keep-alive connection per request in flight, each request one write), \
         at each concurrency level in turn ({levels} requests in flight): {} s measured per point after a {warm_up} s warm-up, \
         every event with a new id. \
         Each does the same work per event: strict validation, Avro encoding with the registered `AppEvent` schema, an idempotent \
         `acks=all` produce, an answer only after the broker's acknowledgement, an idempotency window on `event_id`. \
         The Rust gateway uses all cores (tokio); the reference runs {workers} uvicorn worker process(es). \
         The load generator shares the machine's cores with the gateway under test, the broker and the registry, so absolute figures \
         are lower than on dedicated hardware; the comparison is what matters. Requests/s and events/s count successful (2xx) answers only; \
         errors are non-2xx answers or failed requests; latencies are over every answered request. \
         \"CPU stolen\" is the share of the machine's CPU time the hypervisor gave to other guests during the point \
         (/proc/stat): on a shared virtual machine it swings within minutes, and every process here slows with it. \
         After its curve, the Rust gateway is also loaded at a fixed 80 % of the highest rate the curve reached, paced (requests fall due at that rate, \
         each latency counted from when its request fell due), for the p99 target.\n\n\
         Targets (from the performance issue): the Rust gateway saturates at {TARGET_RATIO}x the reference's events/s or more, \
         with a p99 of at most {TARGET_P99_MS} ms at 80 % of its maximum rate.\n",
        args.duration_secs,
    ));
    for scenario in scenarios {
        let events_per_request = match scenario {
            Scenario::Single => 1,
            Scenario::Batch => args.batch_size,
        };
        md.push_str(&match scenario {
            Scenario::Single => "\n## Single events (`POST /events/user`)\n\n".to_string(),
            Scenario::Batch => {
                format!("\n## Batches of {events_per_request} events (`POST /events/batch`)\n\n")
            }
        });
        md.push_str(
            "| in flight | Rust requests/s | Rust events/s | Rust p50 ms | Rust p99 ms \
             | reference requests/s | reference events/s | reference p50 ms | reference p99 ms \
             | events/s Rust / reference | errors Rust / reference | CPU stolen Rust / reference |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for &level in &args.concurrency {
            let at = |gateway| points(results, gateway, scenario).find(|m| m.concurrency == level);
            let (rust, reference) = (at(RUST), at(REFERENCE));
            let cells = |m: Option<&Measurement>| match m {
                Some(m) => format!(
                    "{:.0} | {:.0} | {:.2} | {:.2}",
                    m.requests_per_second, m.events_per_second, m.p50_ms, m.p99_ms
                ),
                None => "- | - | - | -".into(),
            };
            let ratio = match (rust, reference) {
                (Some(r), Some(f)) if f.events_per_second > 0.0 => {
                    format!("{:.1}x", r.events_per_second / f.events_per_second)
                }
                _ => "n/a".into(),
            };
            let errors = |m: Option<&Measurement>| m.map_or("-".into(), |m| m.errors.to_string());
            let stolen =
                |m: Option<&Measurement>| m.map_or("-".into(), |m| percent(m.stolen_percent));
            md.push_str(&format!(
                "| {level} | {} | {} | {ratio} | {} / {} | {} / {} |\n",
                cells(rust),
                cells(reference),
                errors(rust),
                errors(reference),
                stolen(rust),
                stolen(reference)
            ));
        }
        if let Some(s) = saturations.iter().find(|s| s.scenario == scenario) {
            let ratio = s
                .ratio
                .map_or("n/a (the reference answered nothing)".into(), |r| {
                    format!("{r:.1}x")
                });
            md.push_str(&format!(
                "\nSaturation: Rust {:.0} events/s (at {} in flight), reference {:.0} events/s (at {} in flight): \
                 Rust / reference {ratio} (target at least {TARGET_RATIO}x: {}). \
                 Rust p99 at 80 % of its maximum rate (paced: {:.0} events/s offered on {} connections, {:.0} answered, \
                 CPU stolen {} against {} at the maximum; latency from when each request fell due): \
                 {:.2} ms (target at most {TARGET_P99_MS} ms: {}).{}\n",
                s.rust_max_events_per_second,
                s.rust_max_at_concurrency,
                s.reference_max_events_per_second,
                s.reference_max_at_concurrency,
                verdict(s.ratio_met()),
                s.rust_paced_offered_events_per_second,
                paced_connections(args),
                s.rust_paced_events_per_second,
                percent(s.rust_paced_stolen_percent),
                percent(s.rust_max_stolen_percent),
                s.rust_p99_ms,
                verdict(s.p99_met()),
                unsaturated(s, &args.concurrency),
            ));
        }
        if points(results, CEILING, scenario).next().is_some() {
            md.push_str(&ceiling_section(
                results,
                scenario,
                &args.concurrency,
                saturations.iter().find(|s| s.scenario == scenario),
            ));
        }
    }
    md.push_str(&profiles_section(profiles));
    md.push_str("\nRaw figures (every point, and the saturation figures): `report.json` beside this file. Reference implementation: `reference/app.py`.\n");
    std::fs::write(out_dir.join("REPORT.md"), md)?;
    Ok(())
}

/// The HTTP ceiling's curve, and the target rate as a share of it.
fn ceiling_section(
    results: &[Measurement],
    scenario: Scenario,
    levels: &[usize],
    saturation: Option<&Saturation>,
) -> String {
    let mut md = String::from(
        "\n### The machine's HTTP ceiling\n\n\
         The gateway's HTTP server alone (`src/ceiling.rs`: the same hyper server on every core, answering `201` with a \
         gateway-sized body as soon as the request's body is read, with no middleware, validation, encoding or broker), \
         loaded the same way in the same run. No gateway on this machine answers more single events than this.\n\n\
         | in flight | ceiling requests/s | ceiling p50 ms | ceiling p99 ms | Rust / ceiling |\n|---:|---:|---:|---:|---:|\n",
    );
    for &level in levels {
        let at = |gateway| points(results, gateway, scenario).find(|m| m.concurrency == level);
        let Some(ceiling) = at(CEILING) else { continue };
        let share = at(RUST)
            .filter(|_| ceiling.requests_per_second > 0.0)
            .map_or("n/a".into(), |rust| {
                format!(
                    "{:.0} %",
                    100.0 * rust.requests_per_second / ceiling.requests_per_second
                )
            });
        md.push_str(&format!(
            "| {level} | {:.0} | {:.2} | {:.2} | {share} |\n",
            ceiling.requests_per_second, ceiling.p50_ms, ceiling.p99_ms
        ));
    }
    if let Some(s) = saturation
        && let Some(ceiling) = s.http_ceiling_max_requests_per_second.filter(|c| *c > 0.0)
    {
        let wanted = TARGET_RATIO * s.reference_max_events_per_second;
        md.push_str(&format!(
            "\nCeiling: {ceiling:.0} requests/s. {TARGET_RATIO}x the reference's maximum is {wanted:.0} events/s, \
             {:.0} % of what the HTTP server alone answers here; the Rust gateway's maximum is {:.0} % of it.\n",
            100.0 * wanted / ceiling,
            100.0 * s.rust_max_events_per_second / ceiling,
        ));
    }
    md
}

fn write_attack_report(
    out_dir: &std::path::Path,
    args: &Args,
    cores: usize,
    results: &[attacks::AttackMeasurement],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let command = format!(
        "cargo build --release -p gateway -p schema-registry -p local-stack -p gateway-bench && {}",
        command.replace(&workspace_root().display().to_string(), ".")
    );
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        out_dir.join("attacks.json"),
        serde_json::to_string_pretty(&json!({
            "date": date, "command": command, "cores": cores,
            "attack_secs": args.attack_secs, "results": results,
        }))? + "\n",
    )?;
    let mut md = format!(
        "# The gateway under attack\n\nGenerated by `gateway-bench` on {date} ({cores} cores).\n\n\
         Command: `{command}`\n\n\
         A well-behaved client (4 loops, each posting a valid `POST /events/user` and pausing 20 ms) \
         is measured for {} s alone, then beside each attack in turn (after 2 s for the attack to \
         take hold), on the same stack and machine: the attackers share the two cores with the \
         gateway, the broker and the registry. Target: the client's p99 at most 2x its unloaded \
         p99; no 5xx answer to a client error; the gateway's memory bounded.\n\n\
         Each attack runs twice: in the bench process at the gateway's priority (on two cores \
         the attacker then takes a core from the gateway, the broker and the client: that \
         measures the machine as much as the gateway), and in a separate process at `nice 19`, \
         standing in for attackers on other machines, which sends as much as the CPU the \
         platform leaves allows.\n\n\
         | attack | attacker priority | client p50 ms | client p99 ms | p99 / unloaded | client errors | attacker requests answered | attacker 4xx | attacker 5xx | gateway peak RSS MiB |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.attack_secs
    );
    for r in results {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2}x | {} | {} | {} | {} | {:.1} |\n",
            r.attack.describe(),
            r.placement.describe(),
            r.client_p50_ms,
            r.client_p99_ms,
            r.p99_ratio,
            r.client_errors,
            r.attacker_requests,
            r.attacker_4xx,
            r.attacker_5xx,
            r.gateway_peak_rss_mib
        ));
    }
    md.push_str(
        "\nSlowloris connections are not requests: the gateway drops each after its 10 s \
         header-read timeout and the attacker opens another. Raw figures: `attacks.json`.\n",
    );
    std::fs::write(out_dir.join("ATTACKS.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written bodies are the JSON the gateways validate: every event whole, with a
    /// new id each time.
    #[test]
    fn bodies_are_json_with_a_new_id_per_event() {
        let mut body = String::new();
        assert_eq!(
            write_body(&mut body, Scenario::Single, 3, RUST),
            "/events/user"
        );
        let single: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(single["device"]["os_version"], "iOS 18.1");
        assert_eq!(single["properties"]["check_in"], "2026-12-20");
        assert!(single["timestamp"].as_i64().unwrap() > 1_700_000_000_000);

        assert_eq!(
            write_body(&mut body, Scenario::Batch, 3, RUST),
            "/events/batch"
        );
        let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
        let events = batch["events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        let mut ids: Vec<_> = events
            .iter()
            .chain([&single])
            .map(|item| {
                let event = item.get("event").unwrap_or(item);
                assert!(item.get("kind").is_none_or(|kind| kind == "user"));
                event["event_id"].as_str().unwrap().to_string()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "{ids:?}");
    }

    fn point(
        gateway: &'static str,
        concurrency: usize,
        offered: Option<f64>,
        per_second: f64,
        p99_ms: f64,
    ) -> Measurement {
        Measurement {
            gateway,
            scenario: Scenario::Single,
            concurrency,
            offered_requests_per_second: offered,
            requests: 1000,
            errors: 0,
            events_per_request: 1,
            seconds: 10.0,
            requests_per_second: per_second,
            events_per_second: per_second,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            stolen_percent: Some(3.0),
        }
    }

    /// The paced load gives the p99, and is not a point of the curve even when it answered
    /// more than every point did.
    #[test]
    fn the_paced_load_gives_the_p99_and_stays_off_the_curve() {
        let results = vec![
            point(RUST, 32, None, 10_000.0, 9.0),
            point(RUST, 256, None, 20_000.0, 30.0),
            point(RUST, 512, Some(16_000.0), 25_000.0, 44.0),
            point(REFERENCE, 32, None, 2_500.0, 80.0),
            point(CEILING, 256, None, 80_000.0, 5.0),
        ];
        let s = saturation(&results, Scenario::Single).unwrap();
        assert_eq!(s.rust_max_events_per_second, 20_000.0);
        assert_eq!(s.rust_max_at_concurrency, 256);
        assert_eq!(s.ratio, Some(8.0));
        assert_eq!(s.rust_paced_offered_events_per_second, 16_000.0);
        assert_eq!(s.rust_p99_ms, 44.0);
        assert_eq!(s.http_ceiling_max_requests_per_second, Some(80_000.0));

        let section = ceiling_section(&results, Scenario::Single, &[32, 256], Some(&s));
        assert!(
            section.contains("| 256 | 80000 | 2.50 | 5.00 | 25 % |"),
            "{section}"
        );
        // 10x the reference (25,000) against the ceiling (80,000), and the Rust maximum.
        assert!(section.contains("25000 events/s, 31 %"), "{section}");
        assert!(section.contains("maximum is 25 % of it"), "{section}");
    }

    /// Each point of the report's curve gives the share of CPU time stolen during it, and
    /// says so where the kernel did not count it; the paced load's is set beside the maximum's.
    #[test]
    fn the_report_gives_the_cpu_stolen_at_each_point() {
        let mut reference = point(REFERENCE, 32, None, 2_500.0, 80.0);
        reference.stolen_percent = None;
        let mut paced = point(RUST, 64, Some(8_000.0), 8_000.0, 12.0);
        paced.stolen_percent = Some(12.0);
        let results = vec![point(RUST, 32, None, 10_000.0, 9.0), paced, reference];
        let out_dir = tempfile::tempdir().unwrap();
        let args = Args::parse_from(["gateway-bench", "--concurrency", "32"]);
        write_report(
            out_dir.path(),
            &args,
            2,
            2,
            &results,
            &Profiles::NotTaken("a test".into()),
        )
        .unwrap();
        let md = std::fs::read_to_string(out_dir.path().join("REPORT.md")).unwrap();
        assert!(
            md.contains("| 32 | 10000 | 10000 | 4.50 | 9.00 | 2500 | 2500 | 40.00 | 80.00 | 4.0x | 0 / 0 | 3 % / n/a |"),
            "{md}"
        );
        assert!(
            md.contains("8000 answered, CPU stolen 12 % against 3 % at the maximum;"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.path().join("report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["results"][0]["stolen_percent"], 3.0);
        assert!(json["results"][2]["stolen_percent"].is_null());
    }

    /// Each missed target, and only those, is profiled under the load that measured it; the
    /// report gives every profile under its target.
    #[test]
    fn the_missed_targets_are_profiled_under_their_own_loads() {
        let mut results = vec![
            // Single events: 8x the reference (missed), paced p99 44 ms (met).
            point(RUST, 32, None, 10_000.0, 9.0),
            point(RUST, 256, None, 20_000.0, 30.0),
            point(RUST, 512, Some(16_000.0), 16_000.0, 44.0),
            point(REFERENCE, 32, None, 2_500.0, 80.0),
        ];
        // Batches: 12x the reference (met), paced p99 80 ms (missed).
        for (gateway, concurrency, offered, per_second, p99) in [
            (RUST, 128, None, 1_200.0, 20.0),
            (RUST, 512, Some(960.0), 950.0, 80.0),
            (REFERENCE, 8, None, 100.0, 90.0),
        ] {
            let mut batch = point(gateway, concurrency, offered, per_second, p99);
            batch.scenario = Scenario::Batch;
            results.push(batch);
        }
        let missed = missed_targets(&results);
        assert_eq!(missed.len(), 2, "{missed:?}");
        assert_eq!(
            (missed[0].scenario, missed[0].connections),
            (Scenario::Single, 256)
        );
        assert!(matches!(missed[0].pace, Pace::ClosedLoop));
        assert!(missed[0].target.contains("at least 10x"), "{missed:?}");
        assert_eq!(
            (missed[1].scenario, missed[1].connections),
            (Scenario::Batch, 512)
        );
        assert!(matches!(missed[1].pace, Pace::Rate(rate) if rate == 960.0));
        assert!(missed[1].target.contains("p99 at most 50 ms"), "{missed:?}");

        let profiles = Profiles::Taken(vec![Profile {
            target: missed[0].target.clone(),
            load: "256 connections".into(),
            top_symbols: vec!["7.71% [kernel.kallsyms] [k] finish_task_switch".into()],
        }]);
        let section = profiles_section(&profiles);
        assert!(
            section.contains("### Single events at saturation, at least 10x the reference"),
            "{section}"
        );
        assert!(section.contains("7.71% [kernel.kallsyms]"), "{section}");
        assert!(
            profiles_section(&Profiles::Taken(Vec::new())).contains("no profile taken"),
            "a run that met every target says why it has no profile"
        );
    }

    #[test]
    fn without_a_paced_load_there_is_no_saturation_verdict() {
        let results = vec![
            point(RUST, 256, None, 20_000.0, 30.0),
            point(REFERENCE, 32, None, 2_500.0, 80.0),
        ];
        assert!(saturation(&results, Scenario::Single).is_none());
    }
}
