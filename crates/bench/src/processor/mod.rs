//! `bench processor`: the stream processor's app-events job on a stack it starts itself
//! (PostgreSQL, the tansu broker, the schema registry; no connector).
//!
//! 1. Throughput: a backlog of AppEvents (default 1,000,000 over 10 five-minute windows) is
//!    written before the processor starts; one processor instance (a fresh group) reads it with
//!    exactly-once on, then off; measured from /health 200 to the last expected window result
//!    readable in topic_processed_events; results compared with counts computed from the input.
//! 2. The quixstreams reference job on the same backlog and broker, exactly-once on and off.
//! 3. Memory: one window with a million distinct users; peak RSS and the unique-users estimate.
//! 4. Result delay: steady writes with event time = wall clock, 2-second windows; window end →
//!    result readable.
//!
//! Between runs the processor's output and internal topics are deleted and created again
//! (tansu frees them), so each run starts on empty topics with the same input.

mod ceiling;
mod latency;
mod load;
mod reference;
mod report;
mod results;
mod run;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use local_stack::{Stack, StackOptions};
use platform::avro::RegisteredSchema;
use platform::registry::RegistryClient;
use platform::{schemas, topics};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use self::load::{Encoder, Spec, Users, WINDOW_MS};
use self::report::{Memory, Results};
use self::run::Guarantee;
use crate::procstat;

#[derive(Args, Clone, Debug)]
pub struct ProcessorArgs {
    /// Events of the throughput backlog; 0 skips the throughput and reference runs.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct users the backlog's events are drawn from (10 % of events have none).
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Five-minute windows the backlog's event times cover.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    windows: u64,
    /// Events (each from a new user) in the one window of the memory run; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    memory_users: u64,
    /// Events per second of the result-delay run; 0 skips it.
    #[arg(long, default_value_t = 2_000)]
    latency_rate: u64,
    /// Seconds of paced writes in the result-delay run.
    #[arg(long, default_value_t = 60)]
    latency_secs: u64,
    /// The processor's `--commit-interval-ms` in the result-delay runs, one run each (the
    /// first is the one the target is judged on; 200 is the processor's default).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 200])]
    latency_commit_interval_ms: Vec<u64>,
    /// The processor's `--processing-guarantee` in the result-delay run.
    #[arg(long, value_enum, default_value = "exactly-once")]
    latency_guarantee: Guarantee,
    /// Skip the quixstreams reference runs.
    #[arg(long)]
    skip_reference: bool,
    /// Skip the perf profile (an extra, uncounted exactly-once run over the backlog).
    #[arg(long)]
    no_profile: bool,
    /// An extra option for the processor in the throughput, profile and memory runs
    /// (repeatable; e.g. `--processor-arg=--commit-interval-ms=1000`): for experiments, the
    /// report names it.
    #[arg(long, allow_hyphen_values = true)]
    processor_arg: Vec<String>,
    /// A smoke run with small sizes (its figures are not a measurement).
    #[arg(long)]
    quick: bool,
    /// Where REPORT.md and report.json go [default: <workspace>/bench/processor].
    #[arg(long)]
    out: Option<PathBuf>,
}

impl ProcessorArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.events = self.events.min(50_000);
            self.users = self.users.min(5_000);
            self.memory_users = self.memory_users.min(50_000);
            self.latency_secs = self.latency_secs.min(10);
        }
    }
}

/// The stack and what every phase needs.
pub struct Env {
    pub stack: Stack,
    pub brokers: String,
    pub registry_url: String,
    pub logs: PathBuf,
    pub processor_bin: PathBuf,
    pub broker_pid: Option<i32>,
    pub encoder: Encoder,
    pub input_partitions: i32,
    pub result_partitions: i32,
}

impl Env {
    async fn new(stack: Stack) -> Result<Env> {
        let brokers = stack.kafka_brokers();
        let registry_url = stack.registry_url();
        platform::kafka::provision_topics(&brokers, topics::ALL)
            .await
            .context("creating the topics")?;
        let registry = RegistryClient::new(&registry_url);
        let id = registry
            .register(
                &platform::registry::value_subject(topics::APP_EVENTS.name),
                schemas::APP_EVENT,
            )
            .await
            .context("registering the AppEvent schema")?;
        let schema = RegisteredSchema {
            id,
            schema: schemas::parse(schemas::APP_EVENT)?,
        };
        let broker_pid = stack
            .pids()
            .into_iter()
            .filter_map(|p| i32::try_from(p).ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "tansu")
            });
        Ok(Env {
            logs: stack.root().join("logs"),
            processor_bin: stack.processor_binary(),
            brokers,
            registry_url,
            broker_pid,
            encoder: Encoder::new(schema),
            input_partitions: topics::APP_EVENTS.partitions,
            result_partitions: topics::PROCESSED_EVENTS.partitions,
            stack,
        })
    }

    /// CPU seconds of the broker so far.
    pub fn broker_cpu(&self) -> Option<f64> {
        self.broker_pid
            .and_then(procstat::sample)
            .map(|u| u.cpu_secs)
    }

    /// Deletes the platform's topics (all but topic_app_events unless `with_input`) and creates
    /// them again, empty.
    pub async fn reset_topics(&self, with_input: bool) -> Result<()> {
        let names: Vec<&str> = topics::ALL
            .iter()
            .map(|t| t.name)
            .filter(|n| with_input || *n != topics::APP_EVENTS.name)
            .collect();
        delete_topics(&self.brokers, &names).await?;
        platform::kafka::provision_topics(&self.brokers, topics::ALL)
            .await
            .context("creating the topics again")?;
        Ok(())
    }
}

/// Deletes topics; missing ones are fine.
pub async fn delete_topics(brokers: &str, names: &[&str]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = platform::kafka::client_config(brokers)
        .create()
        .context("creating an admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    for result in admin.delete_topics(names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => bail!("deleting {topic}: {code}"),
        }
    }
    Ok(())
}

pub async fn run(mut args: ProcessorArgs) -> Result<()> {
    args.apply_quick();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| local_stack::workspace_root().join("bench/processor"));
    let command = format!(
        "cargo build --release --bins && cargo run --release -p bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let started = Instant::now();
    let bin_dir = crate::bin_dir()?;
    if !bin_dir.join("processor").is_file() {
        bail!(
            "processor not found in {}: run `cargo build --release --bins` first",
            bin_dir.display()
        );
    }
    let mut results = Results::new(command, args.quick, bin_dir.clone());
    println!("bench: load average before: {}", results.load_before);

    let mut options = StackOptions::for_tests("bench-processor");
    options.bin_dir = bin_dir;
    options.start_connector = false;
    let stack = Stack::start(options).await.context("starting the stack")?;
    let env = match Env::new(stack).await {
        Ok(env) => env,
        Err(error) => return Err(error),
    };
    let outcome = run_all(&env, &args, &mut results).await;
    let Env { stack, logs, .. } = env;
    if outcome.is_ok() && (!results.failures.is_empty() || !results.all_right()) {
        let kept =
            std::env::temp_dir().join(format!("bench-processor-logs-{}", std::process::id()));
        crate::copy_dir(&logs, &kept)?;
        results.notes.push(format!(
            "logs of this run (failures or wrong results above): {}",
            kept.display()
        ));
    }
    if let Err(error) = outcome {
        eprintln!("bench: logs kept in {}", stack.root().display());
        drop(stack);
        return Err(error);
    }
    stack.shutdown().await.context("stopping the stack")?;

    results.total_secs = started.elapsed().as_secs_f64();
    results.load_after = platform::machine::load_average();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("REPORT.md"), results.markdown())?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&results.json())?,
    )?;
    println!("{}", results.table());
    println!(
        "bench: wrote {} and report.json",
        out.join("REPORT.md").display()
    );
    Ok(())
}

async fn run_all(env: &Env, args: &ProcessorArgs, results: &mut Results) -> Result<()> {
    results.args = Some(args.clone());
    let profile_dir = env.logs.join("perf");
    std::fs::create_dir_all(&profile_dir)?;
    let profile = !args.no_profile && crate::profile::available(&profile_dir.join("probe.data"));
    if !args.no_profile && !profile {
        results
            .notes
            .push("perf is not usable here: no profile was taken.".into());
    }

    if args.events > 0
        && let Err(error) = throughput(env, args, profile, results).await
    {
        fail(results, "throughput", error);
    }
    if args.memory_users > 0 {
        match memory(env, args).await {
            Ok(memory) => results.memory = Some(memory),
            Err(error) => fail(results, "memory", error),
        }
    }
    let intervals = if args.latency_rate > 0 {
        args.latency_commit_interval_ms.clone()
    } else {
        Vec::new()
    };
    for interval in intervals {
        println!(
            "bench: result delay at {} events/s for {} s, commit interval {interval} ms",
            args.latency_rate, args.latency_secs
        );
        match latency::measure(
            env,
            args.latency_rate,
            args.latency_secs,
            args.latency_guarantee,
            interval,
        )
        .await
        {
            Ok(delay) => {
                println!(
                    "bench: result delay p50 {}, p99 {} over {} of {} results ({}); processor consumed {} of {} events",
                    delay.show(delay.p50_ms),
                    delay.show(delay.p99_ms),
                    delay.results,
                    delay.results + delay.missing,
                    delay.check.verdict(),
                    delay.processed,
                    delay.written
                );
                results.latency.push(delay);
            }
            Err(error) => fail(
                results,
                &format!("result delay, commit interval {interval} ms"),
                error,
            ),
        }
    }
    Ok(())
}

fn fail(results: &mut Results, phase: &str, error: anyhow::Error) {
    println!("bench: {phase}: FAILED: {error:#}");
    results.failures.push(format!("{phase}: {error:#}"));
}

async fn load(env: &Env, spec: Spec) -> Result<load::Loaded> {
    env.reset_topics(true).await?;
    let brokers = env.brokers.clone();
    let encoder = env.encoder.clone();
    let partitions = env.input_partitions;
    let loaded = tokio::task::spawn_blocking(move || {
        load::write_backlog(&brokers, &encoder, partitions, &spec)
    })
    .await??;
    println!(
        "bench: wrote {} records in {:.1} s ({:.0}/s); {} results expected over {} windows",
        report::thousands(loaded.records),
        loaded.seconds,
        loaded.records_per_sec(),
        loaded.expected.results.len(),
        loaded.expected.windows()
    );
    Ok(loaded)
}

async fn throughput(
    env: &Env,
    args: &ProcessorArgs,
    profile: bool,
    results: &mut Results,
) -> Result<()> {
    println!(
        "bench: throughput: backlog of {} events, {} users, {} windows",
        report::thousands(args.events),
        report::thousands(args.users),
        args.windows
    );
    let spec = Spec {
        events: args.events,
        users: Users::Drawn {
            population: args.users.max(1),
            null_ratio: 0.1,
        },
        span_ms: i64::try_from(args.windows).unwrap_or(10) * WINDOW_MS,
        seed: 1,
    };
    let loaded = load(env, spec).await?;
    results.backlog = Some(report::Backlog::of(&loaded));
    match ceiling::measure(env, loaded.records).await {
        Ok(ceiling) => {
            println!(
                "bench: bare consumer read the backlog at {:.0} records/s ({:.2} s; broker CPU {:.2} s)",
                ceiling.records_per_sec(),
                ceiling.wall_secs,
                ceiling.broker_cpu_secs.unwrap_or(f64::NAN)
            );
            results.ceiling = Some(ceiling);
        }
        Err(error) => fail(results, "read ceiling", error),
    }
    let extra = &args.processor_arg;
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        let name = format!("throughput-{}", guarantee.short());
        match run::measure(env, &name, guarantee, extra, &loaded, None).await {
            Ok((run, _)) => {
                println!(
                    "bench: processor {:<14} {:>9.0} events/s  {:>6.2} s  cpu {:>6.2} s ({:.2}/M)  rss {:>6.1} MiB  broker cpu {:.2} s  {}",
                    guarantee.flag(),
                    run.events_per_sec(),
                    run.wall_secs,
                    run.cpu_secs,
                    run.cpu_per_million(),
                    run.peak_rss_mib,
                    run.broker_cpu_secs.unwrap_or(f64::NAN),
                    run.check.summary()
                );
                results.throughput.push(run);
            }
            Err(error) => fail(results, &format!("processor {}", guarantee.flag()), error),
        }
    }
    if !args.skip_reference {
        let python = reference::python(&env.logs.join("quix-venv.log")).await;
        match python {
            Err(error) => fail(results, "reference venv", error),
            Ok(python) => {
                for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
                    println!("bench: reference (quixstreams) {}", guarantee.flag());
                    match reference::run(env, &python, guarantee, &loaded).await {
                        Ok(run) => {
                            println!(
                                "bench: reference {:<14} {:>9.0} events/s  {:>6.2} s  cpu {:>6.2} s ({:.2}/M)  rss {:>6.1} MiB  {}/{} windows right",
                                guarantee.flag(),
                                run.events_per_sec(),
                                run.wall_secs,
                                run.cpu_secs,
                                run.cpu_per_million(),
                                run.peak_rss_mib,
                                run.windows_right,
                                run.windows_expected
                            );
                            results.reference.push(run);
                        }
                        Err(error) => {
                            fail(results, &format!("reference {}", guarantee.flag()), error)
                        }
                    }
                }
            }
        }
    }
    if profile {
        println!("bench: profiled processor run (exactly-once, perf record --call-graph dwarf)");
        let data = env.logs.join("perf").join("throughput.data");
        match run::measure(
            env,
            "profile",
            Guarantee::ExactlyOnce,
            &[],
            &loaded,
            Some(&data),
        )
        .await
        {
            Ok((run, _)) => {
                results.profile_run = Some(run);
                match report::Profile::of(&data) {
                    Ok(profile) => results.profile = Some(profile),
                    Err(error) => fail(results, "perf report", error),
                }
                // The stack's directory goes with its shutdown; the data stay for `perf report`.
                let kept = std::env::temp_dir()
                    .join(format!("bench-processor-{}.perf.data", std::process::id()));
                if std::fs::copy(&data, &kept).is_ok() {
                    results
                        .notes
                        .push(format!("perf data of the profiled run: {}", kept.display()));
                }
            }
            Err(error) => fail(results, "profiled run", error),
        }
    }
    Ok(())
}

async fn memory(env: &Env, args: &ProcessorArgs) -> Result<Memory> {
    println!(
        "bench: memory: {} events in one window, each from a new user",
        report::thousands(args.memory_users)
    );
    let spec = Spec {
        events: args.memory_users,
        users: Users::AllDistinct,
        span_ms: WINDOW_MS,
        seed: 2,
    };
    let loaded = load(env, spec).await?;
    let (run, seen) = run::measure(
        env,
        "memory",
        Guarantee::ExactlyOnce,
        &args.processor_arg,
        &loaded,
        None,
    )
    .await?;
    println!(
        "bench: memory: peak RSS {:.1} MiB, {:.0} events/s; {}",
        run.peak_rss_mib,
        run.events_per_sec(),
        run.check.summary()
    );
    Ok(Memory::of(run, &loaded, &seen))
}
