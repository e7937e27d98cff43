//! `local-stack up` / `local-stack down`: the whole platform, natively, on fixed local ports.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use local_stack::{CDC_TOPIC, Stack, StackOptions, workspace_root};
use platform::topics;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "local-stack",
    about = "Runs the travel-booking data platform locally: PostgreSQL 15, the tansu Kafka-compatible broker, the schema registry, the CDC connector and the ingestion gateway",
    after_help = "State (PostgreSQL data, logs, registry data, pid files) lives in <repo>/.stack and is reused across runs.\nInstall the prerequisites with scripts/install-deps.sh, or simply run ./dev up."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start everything, print how to use it, and stop everything on Ctrl-C (SIGINT/SIGTERM).
    Up(UpArgs),
    /// Stop a stack left running (found through the pid files under the state directory).
    Down(CommonArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// State directory (PostgreSQL data, logs, registry data, pid files) [default: <repo>/.stack]
    #[arg(long, env = "STACK_ROOT")]
    root: Option<PathBuf>,
    /// PostgreSQL server binaries
    #[arg(long, env = "PG_BIN_DIR", default_value = local_stack::DEFAULT_PG_BIN_DIR)]
    pg_bin_dir: PathBuf,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Directory holding the schema-registry, cdc-connector, gateway and processor binaries [default: the directory of this executable]
    #[arg(long, env = "STACK_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// PostgreSQL port
    #[arg(long, default_value_t = 55432)]
    pg_port: u16,
    /// Kafka (tansu) port
    #[arg(long, default_value_t = 19092)]
    kafka_port: u16,
    /// Schema registry port
    #[arg(long, default_value_t = 18081)]
    registry_port: u16,
    /// CDC connector metrics/health port
    #[arg(long, default_value_t = 19464)]
    connector_port: u16,
    /// Ingestion gateway HTTP port
    #[arg(long, default_value_t = 18080)]
    gateway_port: u16,
    /// Do not start the ingestion gateway
    #[arg(long)]
    no_gateway: bool,
    /// Stream processor metrics/health port, also its live page
    #[arg(long, default_value_t = 19465)]
    processor_port: u16,
    /// The processor's SQL port (PostgreSQL wire protocol: psql -h 127.0.0.1 -p PORT)
    #[arg(long, default_value_t = 15433)]
    sql_port: u16,
    /// Do not start the stream processor
    #[arg(long)]
    no_processor: bool,
    /// Do not start the simulators (the workload's app, clickstream, log, booking-event,
    /// OLTP and external-feed traffic)
    #[arg(long)]
    no_simulators: bool,
    /// Start the infrastructure alone: PostgreSQL, the broker and the registry (implies
    /// --no-connector --no-gateway --no-processor --no-simulators)
    #[arg(long)]
    infra_only: bool,
    /// The simulators' metrics/health port
    #[arg(long, default_value_t = 19466)]
    workload_port: u16,
    /// Database to create (on first start) and capture
    #[arg(long, default_value = "travel")]
    database: String,
    /// SQL applied when the database is first created [default: <repo>/sql/init.sql]
    #[arg(long)]
    init_sql: Option<PathBuf>,
    /// Replication slot of the connector
    #[arg(long, default_value = local_stack::DEFAULT_SLOT)]
    slot_name: String,
    /// Publication of the connector
    #[arg(long, default_value = local_stack::DEFAULT_PUBLICATION)]
    publication_name: String,
    /// Do not start the CDC connector
    #[arg(long)]
    no_connector: bool,
    /// Seconds to wait for each service to become ready
    #[arg(long, default_value_t = 90)]
    ready_timeout: u64,
}

fn options(common: &CommonArgs) -> StackOptions {
    let mut o = StackOptions::default_local();
    if let Some(r) = &common.root {
        o.root = r.clone();
    }
    o.pg_bin_dir = common.pg_bin_dir.clone();
    o
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Up(a) => up(a).await,
        Cmd::Down(c) => down(c).await,
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-stack: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn down(c: CommonArgs) -> Result<()> {
    let o = options(&c);
    let done = local_stack::down(&o).await?;
    if done.is_empty() {
        println!("nothing running under {}", o.root.display());
    }
    for d in done {
        println!("{d}");
    }
    Ok(())
}

async fn up(a: UpArgs) -> Result<()> {
    let mut o = options(&a.common);
    if let Some(b) = a.bin_dir {
        o.bin_dir = b;
    }
    o.ports.postgres = a.pg_port;
    o.ports.kafka = a.kafka_port;
    o.ports.registry = a.registry_port;
    o.ports.connector = a.connector_port;
    o.ports.gateway = a.gateway_port;
    o.ports.processor = a.processor_port;
    o.ports.sql = a.sql_port;
    o.ports.workload = a.workload_port;
    o.database = a.database;
    if let Some(i) = a.init_sql {
        o.init_sql = Some(i);
    }
    o.slot_name = a.slot_name;
    o.publication_name = a.publication_name;
    o.start_connector = !a.no_connector;
    o.start_gateway = !a.no_gateway;
    o.start_processor = !a.no_processor && !a.infra_only;
    if a.infra_only {
        o.start_connector = false;
        o.start_gateway = false;
    }
    // The simulators send their events through the gateway.
    o.start_simulators = !a.no_simulators && o.start_gateway;
    o.ready_timeout = std::time::Duration::from_secs(a.ready_timeout);

    if let Some(pid) = local_stack::running_owner(&o) {
        bail!(
            "a stack is already running under {} (local-stack pid {pid}); stop it with Ctrl-C there or `local-stack down`",
            o.root.display()
        );
    }
    // Catch signals from the start, so Ctrl-C during start-up also stops cleanly.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    println!("Starting the stack (state in {}) ...", o.root.display());
    let start = Stack::start(o.clone());
    let mut stack = tokio::select! {
        r = start => r?,
        _ = sigint.recv() => bail!("interrupted during start-up"),
        _ = sigterm.recv() => bail!("terminated during start-up"),
    };
    local_stack::write_owner_pid(&o)?;
    print_usage(&stack);

    let result = tokio::select! {
        _ = sigint.recv() => { println!("\nSIGINT: stopping ..."); Ok(()) }
        _ = sigterm.recv() => { println!("SIGTERM: stopping ..."); Ok(()) }
        (name, status) = stack.wait_for_exit() => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            Err(anyhow::anyhow!(
                "{name} exited unexpectedly ({status}); last lines of {}:\n{}",
                stack.log_file(name).display(),
                stack.log_tail(name, 30)
            ))
        }
    };
    let stopped = stack.shutdown().await;
    local_stack::remove_owner_pid(&o);
    stopped?;
    println!("Stack stopped.");
    result
}

fn print_usage(s: &Stack) {
    let o = s.options();
    let ws = workspace_root();
    let bin = |name: &str| {
        let p = o.bin_dir.join(name);
        p.strip_prefix(&ws)
            .map(|r| r.to_path_buf())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let p = o.ports;
    println!();
    println!(
        "Stack is up. State and logs: {} (logs in {})",
        o.root.display(),
        o.logs_dir().display()
    );
    println!();
    println!(
        "  PostgreSQL      psql -h 127.0.0.1 -p {} -U postgres {}",
        p.postgres, o.database
    );
    println!("                  {}", s.pg_url());
    println!("  Kafka (tansu)   {}", s.kafka_brokers());
    println!(
        "  Schema registry {}   (subjects: {}/subjects)",
        s.registry_url(),
        s.registry_url()
    );
    if s.connector_running() {
        println!(
            "  CDC connector   metrics {}/metrics   health {}/health",
            s.connector_url(),
            s.connector_url()
        );
    } else {
        println!("  CDC connector   not started (--no-connector)");
    }
    if s.gateway_running() {
        println!(
            "  Gateway         {}   (API docs {}/docs, stats {}/stats)",
            s.gateway_url(),
            s.gateway_url(),
            s.gateway_url()
        );
    } else {
        println!("  Gateway         not started (--no-gateway)");
    }
    if s.processor_running() {
        println!(
            "  Processor       live page {}/   metrics {}/metrics   health {}/health",
            s.processor_url(),
            s.processor_url(),
            s.processor_url()
        );
        println!(
            "  Results in SQL  psql -h 127.0.0.1 -p {} -c 'SELECT * FROM app_event_counts'",
            s.sql_port()
        );
    } else {
        println!("  Processor       not started (--no-processor)");
    }
    if s.simulators_running() {
        println!(
            "  Simulators      metrics {}/metrics   (workload all --with-oltp, log: {})",
            s.workload_url(),
            o.log_file("simulators").display()
        );
        println!();
        println!("Flowing now (the seed's rates, about 320 events/min plus OLTP traffic):");
        println!(
            "  mobile/web journeys, booking events -> gateway -> {}",
            topics::APP_EVENTS.name
        );
        println!(
            "  clicks, taps, scrolls               -> gateway -> {}",
            topics::CLICKSTREAM.name
        );
        println!(
            "  application logs                    -> gateway -> {}",
            topics::APP_LOGS.name
        );
        println!(
            "  scheduled external feeds            -> gateway -> {}",
            topics::EXTERNAL_DATA.name
        );
        println!(
            "  OLTP users/bookings/payments        -> PostgreSQL -> connector -> {}",
            topics::CDC_CHANGES.name
        );
        println!(
            "  processor windows, alerts, state    -> {}, {}, *_state",
            topics::PROCESSED_EVENTS.name,
            topics::PROCESSOR_ALERTS.name
        );
    } else if s.gateway_running() {
        println!("  Simulators      not started (--no-simulators)");
    }
    println!();
    println!("Watch the change topic:");
    println!(
        "  {} --brokers {} --schema-registry-url {} --topic {CDC_TOPIC} --from-beginning",
        bin("topic-tail"),
        s.kafka_brokers(),
        s.registry_url()
    );
    println!();
    let me = std::env::current_exe()
        .map(|p| {
            p.strip_prefix(&ws)
                .map(|r| r.to_path_buf())
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .unwrap_or_else(|_| "local-stack".into());
    println!("Press Ctrl-C to stop everything (or run `{me} down` elsewhere).");
}
