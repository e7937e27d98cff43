//! gateway-bench: loads the Rust gateway and the reference FastAPI + confluent-kafka gateway
//! (bench/gateway/reference) with the same requests on the same stack and machine, and writes
//! bench/gateway/REPORT.md and report.json (requests/s, events/s, p50/p99 latency for single
//! and batch posts); then measures a well-behaved client of the Rust gateway alone and under
//! attacks ([`attacks`]), written to bench/gateway/ATTACKS.md and attacks.json.
//!
//! Run: `cargo build --release -p gateway -p schema-registry -p local-stack -p gateway-bench &&
//! target/release/gateway-bench` (or `cargo run --release -p gateway-bench`, after building the
//! gateway and registry in release mode).

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

use anyhow::{Context, bail};
use clap::Parser;
use local_stack::{Stack, StackOptions, workspace_root};
use serde::Serialize;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Benchmark the gateway against the reference FastAPI + confluent-kafka gateway")]
struct Args {
    /// Seconds of measured load per gateway and scenario (after a warm-up of a fifth of it).
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
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
    /// Internal: be an attacker of this kind against --target until SIGTERM (the niced
    /// attacker process), then print the answers' tally.
    #[arg(long, value_enum, requires = "target", hide = true)]
    attacker: Option<attacks::Attack>,
    /// Internal: the gateway the attacker process attacks.
    #[arg(long, hide = true)]
    target: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    Single,
    Batch,
}

#[derive(Debug, Serialize)]
struct Measurement {
    gateway: &'static str,
    scenario: Scenario,
    requests: u64,
    errors: u64,
    events_per_request: usize,
    seconds: f64,
    requests_per_second: f64,
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(attack), Some(target)) = (args.attacker, &args.target) {
        return attacks::run_attacker(attack, target).await;
    }
    let root = workspace_root();
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| root.join("bench/gateway"));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = args.reference_workers.unwrap_or(cores);

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
        write_report(&out_dir, &args, cores, workers, &results)?;
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

/// Both gateways, single and batch posts, on the same stack.
async fn compare_with_reference(
    stack: &Stack,
    args: &Args,
    root: &std::path::Path,
    workers: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let reference_port = free_port()?;
    let reference_dir = root.join("bench/gateway/reference");
    let python = local_stack::python()?;
    let reference_log = stack.root().join("logs/reference.log");
    let mut reference = tokio::process::Command::new(&python)
        .args([
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            &reference_port.to_string(),
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
        .current_dir(&reference_dir)
        .env("REF_KAFKA_BROKERS", stack.kafka_brokers())
        .env("REF_SCHEMA_REGISTRY_URL", stack.registry_url())
        .env("REF_SCHEMA_FILE", root.join("schemas/AppEvent.avsc"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&reference_log)?)
        .stderr(std::fs::File::create(
            reference_log.with_extension("err.log"),
        )?)
        .kill_on_drop(true)
        .spawn()
        .context(
            "starting the reference gateway (scripts/install-deps.sh installs fastapi and uvicorn)",
        )?;
    let reference_url = format!("http://127.0.0.1:{reference_port}");
    wait_healthy(&reference_url, &reference_log.with_extension("err.log")).await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let mut results = Vec::new();
    for (name, url) in [
        ("rust", stack.gateway_url()),
        ("reference-fastapi", reference_url.clone()),
    ] {
        for scenario in [Scenario::Single, Scenario::Batch] {
            eprintln!(
                "{name} {scenario:?}: warming up, then {} s of load ...",
                args.duration_secs
            );
            let warm_up = Duration::from_secs((args.duration_secs / 5).max(1));
            load(&client, &url, scenario, args, warm_up, name).await;
            let measured = load(
                &client,
                &url,
                scenario,
                args,
                Duration::from_secs(args.duration_secs),
                name,
            )
            .await;
            eprintln!(
                "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                measured.requests_per_second, measured.p50_ms, measured.p99_ms, measured.errors
            );
            results.push(measured);
        }
    }
    let _ = reference.start_kill();
    let _ = reference.wait().await;
    Ok(results)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_healthy(url: &str, log: &std::path::Path) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(response) = reqwest::get(format!("{url}/health")).await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the reference gateway did not start; {}:\n{}",
        log.display(),
        local_stack::log_tail(log, 30)
    )
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A user event with a new id (so no request is deduplicated).
fn user_event(gateway: &str) -> serde_json::Value {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    json!({
        "event_id": format!("{gateway}-{n}"), "event_type": "search", "user_id": format!("u-{}", n % 1000),
        "session_id": format!("s-{}", n % 5000), "app_type": "mobile", "timestamp": chrono::Utc::now().timestamp_millis(),
        "device": {"device_type": "ios", "os_version": "iOS 18.1", "app_version": "4.12.0"},
        "properties": {"query": "Da Nang", "guests": "2", "check_in": "2026-12-20"}
    })
}

fn body(scenario: Scenario, batch_size: usize, gateway: &str) -> (String, String) {
    match scenario {
        Scenario::Single => ("/events/user".into(), user_event(gateway).to_string()),
        Scenario::Batch => (
            "/events/batch".into(),
            json!({"events": (0..batch_size).map(|_| json!({"kind": "user", "event": user_event(gateway)})).collect::<Vec<_>>()}).to_string(),
        ),
    }
}

/// Posts a JSON body and reads the answer to the end (so the connection can be reused);
/// whether it was a success.
async fn post_json(client: &reqwest::Client, url: &str, body: String) -> bool {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => r.status().is_success() & r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// `concurrency` loops posting for `duration`; latencies of every answered request.
async fn load(
    client: &reqwest::Client,
    base: &str,
    scenario: Scenario,
    args: &Args,
    duration: Duration,
    gateway: &'static str,
) -> Measurement {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, base, errors, batch_size) = (
                client.clone(),
                base.to_string(),
                errors.clone(),
                args.batch_size,
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let (path, body) = body(scenario, batch_size, gateway);
                    let sent = Instant::now();
                    let ok = post_json(&client, &format!("{base}{path}"), body).await;
                    latencies.push(sent.elapsed());
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let quantile = |q: f64| attacks::quantile(&latencies, q);
    let events_per_request = match scenario {
        Scenario::Single => 1,
        Scenario::Batch => args.batch_size,
    };
    let requests = latencies.len() as u64;
    Measurement {
        gateway,
        scenario,
        requests,
        errors: errors.load(Ordering::Relaxed),
        events_per_request,
        seconds,
        requests_per_second: requests as f64 / seconds,
        events_per_second: (requests as f64 * events_per_request as f64) / seconds,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
    }
}

fn write_report(
    out_dir: &std::path::Path,
    args: &Args,
    cores: usize,
    workers: usize,
    results: &[Measurement],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let command = format!(
        "cargo build --release -p gateway -p schema-registry -p local-stack -p gateway-bench && {}",
        command.replace(&workspace_root().display().to_string(), ".")
    );
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "command": command,
        "machine": {"cores": cores, "cpu": cpu},
        "settings": {"duration_secs": args.duration_secs, "concurrency": args.concurrency, "batch_size": args.batch_size, "reference_workers": workers},
        "results": results,
    });
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;

    let mut md = String::new();
    md.push_str("# Gateway benchmark\n\n");
    md.push_str(&format!(
        "Generated by `gateway-bench` on {} ({} cores, {cpu}).\n\nCommand: `{command}`\n\n",
        report["date"].as_str().unwrap_or_default(),
        cores
    ));
    md.push_str(&format!(
        "Both gateways run on the same machine against the same stack (tansu broker with memory storage, the project's schema registry), \
         behind the same load generator: {} requests in flight, {} s measured after a {} s warm-up, every event with a new id. \
         Each does the same work per event: strict validation, Avro encoding with the registered `AppEvent` schema, an idempotent \
         `acks=all` produce, an answer only after the broker's acknowledgement, an idempotency window on `event_id`. \
         The Rust gateway uses all cores (tokio); the reference runs {workers} uvicorn worker process(es). \
         The load generator shares the machine's cores with the gateway under test, the broker and the registry, so absolute figures \
         are lower than on dedicated hardware; the comparison is what matters. Errors are non-2xx answers or failed requests.\n\n",
        args.concurrency,
        args.duration_secs,
        (args.duration_secs / 5).max(1)
    ));
    md.push_str("| gateway | scenario | requests/s | events/s | p50 ms | p99 ms | requests | errors |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let scenario = match r.scenario {
            Scenario::Single => "single (`POST /events/user`)".to_string(),
            Scenario::Batch => format!("batch of {} (`POST /events/batch`)", r.events_per_request),
        };
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} |\n",
            r.gateway,
            scenario,
            r.requests_per_second,
            r.events_per_second,
            r.p50_ms,
            r.p99_ms,
            r.requests,
            r.errors
        ));
    }
    md.push_str("\nRaw figures: `report.json` beside this file. Reference implementation: `reference/app.py`.\n");
    std::fs::write(out_dir.join("REPORT.md"), md)?;
    Ok(())
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
