//! `workload`: drives the stack with OLTP operations and application/streaming/external traffic.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use platform::telemetry;
use workload::{
    clock::VirtualClock,
    external::{self, Scheduler},
    oltp::{self, plan::Mix},
    streams::{
        generate::{StreamKind, Traffic},
        run::{self as stream_run, StreamSettings},
        sink::{Sink, SinkKind, SinkSettings, now_ms},
    },
};

/// Realistic traffic for the travel-booking stack. Every option can also come from the
/// environment or from a TOML file named by --config / WORKLOAD_CONFIG (keys = long names).
#[derive(Parser, Debug)]
#[command(name = "workload", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// TOML file with defaults for these options.
    #[arg(long, global = true, env = "WORKLOAD_CONFIG")]
    config: Option<PathBuf>,
    /// Serve /metrics and /health on this address (none when unset).
    #[arg(long, global = true, env = "WORKLOAD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Seed of every generator; the same seed replays the same operations and events. Random
    /// (and logged) when unset.
    #[arg(long, global = true, env = "WORKLOAD_SEED")]
    seed: Option<u64>,
    /// Stop after this many operations (oltp) or events (streams).
    #[arg(long, global = true, env = "WORKLOAD_COUNT")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, global = true, env = "WORKLOAD_DURATION_SECS")]
    duration_secs: Option<u64>,
    /// Seconds between progress lines.
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_PROGRESS_SECS",
        default_value_t = 5
    )]
    progress_secs: u64,

    /// PostgreSQL the OLTP driver writes to.
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:55432/travel"
    )]
    pg_url: String,
    /// OLTP operations per second; 0 runs as fast as possible [default: 20 for `oltp`; for
    /// `all --with-oltp`, 0.4 times --rate-scale: the seed's 20-30 CDC changes per minute beside
    /// the other simulators].
    #[arg(long, global = true, env = "WORKLOAD_RATE")]
    rate: Option<f64>,
    /// OLTP connections working at once (one user's operations always stay in order).
    #[arg(long, global = true, env = "WORKLOAD_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Operation mix as kind=weight pairs (sign_up, edit_profile, delete_account,
    /// create_booking, booking_transition, create_payment, payment_transition).
    #[arg(long, global = true, env = "WORKLOAD_MIX", default_value_t = Mix::default())]
    mix: Mix,
    /// Write every committed change (key and row image) to this JSON-lines file, in commit order.
    #[arg(long, global = true, env = "WORKLOAD_JOURNAL")]
    journal: Option<PathBuf>,
    /// Suffix of generated e-mail local parts (they are unique per database); default from the seed.
    #[arg(long, global = true, env = "WORKLOAD_EMAIL_TAG")]
    email_tag: Option<String>,
    /// In `all`, also run the OLTP driver.
    #[arg(long, global = true, env = "WORKLOAD_WITH_OLTP")]
    with_oltp: bool,

    /// Where streaming events go.
    #[arg(long, global = true, env = "WORKLOAD_SINK", value_enum, default_value_t = SinkKind::Gateway)]
    sink: SinkKind,
    /// Base URL of the ingestion gateway (sink `gateway`).
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway_url: String,
    /// Kafka bootstrap servers (sink `kafka`).
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_KAFKA_BROKERS",
        default_value = "127.0.0.1:19092"
    )]
    kafka_brokers: String,
    /// Kafka TLS and SASL (see the `--kafka-security-protocol` options).
    #[command(flatten)]
    kafka_security: platform::kafka_security::KafkaSecurityArgs,
    /// Schema registry (sink `kafka`).
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:18081"
    )]
    schema_registry_url: String,
    /// Retries of one event after a 503 or timeout before it is reported as failed.
    #[arg(long, global = true, env = "WORKLOAD_MAX_RETRIES", default_value_t = 5)]
    max_retries: u32,
    /// Timeout of one gateway request, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_REQUEST_TIMEOUT_MS",
        default_value_t = 5000
    )]
    request_timeout_ms: u64,
    /// Events being delivered at once.
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_MAX_IN_FLIGHT",
        default_value_t = 32
    )]
    max_in_flight: usize,
    /// Events per minute of a single-stream command (default: the stream's default rate).
    #[arg(long, global = true, env = "WORKLOAD_EVENTS_PER_MINUTE")]
    events_per_minute: Option<f64>,
    /// Multiplies every stream's default rate (about 320 events/min in total at 1).
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_RATE_SCALE",
        default_value_t = 1.0
    )]
    rate_scale: f64,
    /// Virtual seconds per real second for streams and pipeline schedules (3600 turns an hour
    /// into a second); 0 does not wait at all.
    #[arg(
        long,
        global = true,
        env = "WORKLOAD_TIME_SCALE",
        default_value_t = 1.0
    )]
    time_scale: f64,

    /// External pipelines file (TOML); the shipped config/external-pipelines.toml when unset.
    #[arg(long, global = true, env = "WORKLOAD_PIPELINES")]
    pipelines: Option<PathBuf>,
    /// Run every pipeline once at start, besides its schedule.
    #[arg(long, global = true, env = "WORKLOAD_RUN_PIPELINES_NOW")]
    run_pipelines_now: bool,
    /// Stop the pipelines after this many virtual hours.
    #[arg(long, global = true, env = "WORKLOAD_VIRTUAL_HOURS")]
    virtual_hours: Option<f64>,
    /// Virtual time at start (RFC 3339), for streams and pipeline schedules; now when unset.
    /// With --seed it makes a run reproducible.
    #[arg(long, global = true, env = "WORKLOAD_VIRTUAL_START")]
    virtual_start: Option<String>,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
enum Command {
    /// Users, bookings and payments on PostgreSQL, following the domain's state machines.
    Oltp,
    /// Mobile app journeys (iOS and Android).
    Mobile,
    /// Web sessions (desktop, tablet, mobile web).
    Web,
    /// Booking-system events.
    BookingEvents,
    /// Low-level clicks, taps and scrolls.
    Clickstream,
    /// Application logs from every service.
    Logs,
    /// Scheduled external-data pipelines.
    External,
    /// The continuous external-data simulator alone (every external source, in batches).
    ExternalStream,
    /// One step of one external-pipeline run (fetch, transform, validate or publish), handing
    /// over through files in --work-dir so each step can be retried alone (Airflow's tasks).
    ExternalStep(StepArgs),
    /// Every streaming source, the external simulator and the external pipelines together (and
    /// OLTP with --with-oltp).
    All,
}

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
struct StepArgs {
    /// fetch, transform, validate or publish.
    #[arg(value_enum)]
    step: external::Step,
    /// The pipeline's name in the pipelines file.
    #[arg(long)]
    pipeline: String,
    /// The run's virtual time (RFC 3339, e.g. Airflow's `{{ ts }}`): the run is the pipeline's
    /// first scheduled slot at or after it.
    #[arg(long)]
    logical_date: String,
    /// Names the run's directory (e.g. Airflow's `{{ run_id }}`); the logical date when unset.
    #[arg(long)]
    run_id: Option<String>,
    /// Directory of the step files (`<work-dir>/<pipeline>/<run-id>/fetched.json`, ...).
    #[arg(long, env = "WORKLOAD_WORK_DIR")]
    work_dir: PathBuf,
    /// `fetched_at` of the records (RFC 3339); now when unset.
    #[arg(long)]
    fetched_at: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let args: Args = platform::config::load("WORKLOAD_CONFIG")?;
    platform::kafka_security::install_from(&args.kafka_security)?;
    if let Some(listen) = args.listen {
        let prometheus = telemetry::install_prometheus()?;
        let health = telemetry::Health::default();
        health.set(true, "running");
        telemetry::serve(listen, telemetry::router(prometheus, health))
            .await
            .context("--listen")?;
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    tracing::info!(seed, command = ?args.command, "workload starting (replay with --seed {seed})");

    match &args.command {
        Command::Oltp => run_oltp(&args, seed).await,
        Command::External => run_external(&args, seed, Arc::new(connect_sink(&args).await?)).await,
        Command::ExternalStep(step) => run_external_step(&args, step).await,
        Command::All => {
            let sink = Arc::new(connect_sink(&args).await?);
            let rates: Vec<_> = StreamKind::ALL
                .iter()
                .map(|k| (*k, k.default_rate() * args.rate_scale))
                .collect();
            let streams = run_streams(&args, seed, &rates, sink.clone());
            let pipelines = run_external(&args, seed, sink);
            if args.with_oltp {
                let (a, b, c) = tokio::join!(streams, pipelines, run_oltp(&args, seed));
                a.and(b).and(c)
            } else {
                let (a, b) = tokio::join!(streams, pipelines);
                a.and(b)
            }
        }
        single => {
            let kind = match single {
                Command::ExternalStream => StreamKind::External,
                Command::Mobile => StreamKind::Mobile,
                Command::Web => StreamKind::Web,
                Command::BookingEvents => StreamKind::BookingEvents,
                Command::Clickstream => StreamKind::Clickstream,
                _ => StreamKind::Logs,
            };
            let rate = args
                .events_per_minute
                .unwrap_or(kind.default_rate() * args.rate_scale);
            run_streams(
                &args,
                seed,
                &[(kind, rate)],
                Arc::new(connect_sink(&args).await?),
            )
            .await
        }
    }
}

/// Operations per second of `workload oltp` when --rate is not given.
const OLTP_RATE: f64 = 20.0;
/// Operations per second of the OLTP driver inside `workload all`: about 1.1 changes per
/// operation, so 0.4/s is the seed's 20-30 CDC changes per minute.
const ALL_OLTP_RATE: f64 = 0.4;

async fn run_oltp(args: &Args, seed: u64) -> anyhow::Result<()> {
    let settings = oltp::OltpSettings {
        pg_url: args.pg_url.clone(),
        seed,
        mix: args.mix,
        rate: args.rate.unwrap_or(if args.command == Command::All {
            ALL_OLTP_RATE * args.rate_scale
        } else {
            OLTP_RATE
        }),
        concurrency: args.concurrency,
        count: args.count,
        duration: args.duration_secs.map(Duration::from_secs),
        journal: args.journal.clone(),
        progress_every: Duration::from_secs(args.progress_secs.max(1)),
        email_tag: args
            .email_tag
            .clone()
            .unwrap_or_else(|| format!(".{seed:x}")),
    };
    let summary = oltp::run(&settings, platform::shutdown::wait_for_signal()).await?;
    tracing::info!(
        "oltp done: {} planned, {} committed, {} skipped, {} failed in {:.1} s ({:.1} ops/s), {} journal entries",
        summary.planned,
        summary.committed,
        summary.skipped,
        summary.failed,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.journal_entries
    );
    if summary.failed > 0 {
        bail!(
            "{} operations failed (see the warnings above)",
            summary.failed
        );
    }
    Ok(())
}

async fn connect_sink(args: &Args) -> anyhow::Result<Sink> {
    let settings = SinkSettings {
        kind: args.sink,
        gateway_url: args.gateway_url.clone(),
        kafka_brokers: args.kafka_brokers.clone(),
        schema_registry_url: args.schema_registry_url.clone(),
        max_retries: args.max_retries,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
    };
    Sink::connect(&settings)
        .await
        .with_context(|| format!("connecting the {:?} sink", args.sink))
}

async fn run_streams(
    args: &Args,
    seed: u64,
    rates: &[(StreamKind, f64)],
    sink: Arc<Sink>,
) -> anyhow::Result<()> {
    let clock = VirtualClock::new(virtual_start_ms(args)?, args.time_scale);
    let traffic = Traffic::new(seed, rates, clock.start_ms());
    let settings = StreamSettings {
        count: args.count,
        duration: args.duration_secs.map(Duration::from_secs),
        max_in_flight: args.max_in_flight,
        progress_every: Duration::from_secs(args.progress_secs.max(1)),
    };
    let summary = stream_run::run(
        traffic,
        clock,
        sink,
        &settings,
        platform::shutdown::wait_for_signal(),
    )
    .await;
    tracing::info!(
        "streams done: {} sent, {} failed in {:.1} s ({:.0} events/min)",
        summary.sent,
        summary.failed,
        summary.elapsed.as_secs_f64(),
        summary.per_minute()
    );
    if summary.failed > 0 {
        bail!(
            "{} events were not delivered (see the warnings above)",
            summary.failed
        );
    }
    Ok(())
}

fn load_pipelines(args: &Args) -> anyhow::Result<Vec<external::Pipeline>> {
    let text = match &args.pipelines {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => external::DEFAULT_PIPELINES.to_string(),
    };
    Ok(external::parse_pipelines(&text)?)
}

fn virtual_start_ms(args: &Args) -> anyhow::Result<i64> {
    match &args.virtual_start {
        Some(text) => parse_time_ms("--virtual-start", text),
        None => Ok(now_ms()),
    }
}

fn parse_time_ms(flag: &str, text: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("{flag} `{text}` is not an RFC 3339 time"))
}

async fn run_external_step(args: &Args, step: &StepArgs) -> anyhow::Result<()> {
    let pipelines = load_pipelines(args)?;
    let seed = match (args.seed, step.step) {
        (Some(seed), _) => seed,
        // Later steps read the seed from the fetch output.
        (None, external::Step::Transform | external::Step::Validate | external::Step::Publish) => 0,
        (None, external::Step::Fetch) => bail!(
            "external-step fetch needs --seed (or WORKLOAD_SEED): the run's records derive from it, so a retry or another orchestrator fetches the same ones"
        ),
    };
    let logical_date_ms = parse_time_ms("--logical-date", &step.logical_date)?;
    let request = external::StepRequest {
        step: step.step,
        pipeline: step.pipeline.clone(),
        run_id: step
            .run_id
            .clone()
            .unwrap_or_else(|| step.logical_date.clone()),
        work_dir: step.work_dir.clone(),
        logical_date_ms,
        seed,
        fetched_at_ms: match &step.fetched_at {
            Some(text) => parse_time_ms("--fetched-at", text)?,
            None => now_ms(),
        },
    };
    let outcome = external::run_step(&pipelines, &request, || async {
        connect_sink(args)
            .await
            .map_err(|e| external::StageError::Publish(format!("{e:#}")))
    })
    .await
    .with_context(|| {
        format!(
            "external-step {} of pipeline {} (run {})",
            step.step.name(),
            request.pipeline,
            request.run_id
        )
    })?;
    tracing::info!(
        pipeline = request.pipeline,
        run_id = request.run_id,
        output = %outcome.output.display(),
        "{}: {}",
        step.step.name(),
        outcome.summary
    );
    println!(
        "{} {}: {} -> {}",
        request.pipeline,
        step.step.name(),
        outcome.summary,
        outcome.output.display()
    );
    Ok(())
}

async fn run_external(args: &Args, seed: u64, sink: Arc<Sink>) -> anyhow::Result<()> {
    let pipelines = load_pipelines(args)?;
    let clock = VirtualClock::new(virtual_start_ms(args)?, args.time_scale);
    let until = args
        .virtual_hours
        .map(|h| clock.start_ms() + (h * 3_600_000.0) as i64);
    let stop = async {
        match args.duration_secs {
            Some(secs) => {
                tokio::select! {
                    () = platform::shutdown::wait_for_signal() => {}
                    () = tokio::time::sleep(Duration::from_secs(secs)) => {}
                }
            }
            None => platform::shutdown::wait_for_signal().await,
        }
    };
    let reports = Arc::new(Scheduler::new(pipelines, seed))
        .run(clock, sink, until, args.run_pipelines_now, stop)
        .await;
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.outcome, external::RunOutcome::Failed { .. }))
        .collect();
    tracing::info!(
        "pipelines done: {} runs, {} failed",
        reports.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!(
            "{} pipeline runs failed: {:?}",
            failed.len(),
            failed.iter().map(|r| &r.pipeline).collect::<Vec<_>>()
        );
    }
    Ok(())
}
