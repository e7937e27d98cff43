//! `bench cdc`: the connector against the physical ceiling on this machine. Starts its own
//! PostgreSQL, registry and brokers, builds each backlog once with one slot per consumer run
//! created beforehand (so every run reads the same WAL from a fresh slot), runs pg_recvlogical
//! and the connector alternately, measures commit-to-consumer latency at a steady rate and the
//! initial snapshot, and writes `REPORT.md` and `report.json`.
//!
//! `bench processor`: the stream processor's app-events job (see [`processor`]): throughput
//! over a backlog with exactly-once on and off, memory with a million distinct users in one
//! window, window-end-to-result delay at a steady rate, and the quixstreams reference job on
//! the same backlog and broker.

mod broker;
mod consumers;
mod latency;
mod processor;
mod procstat;
mod profile;
mod report;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use local_stack::{Stack, StackOptions};
use platform::shutdown::StopSignals;

use crate::consumers::{Consumer, Env, Run};
use crate::report::{Results, SnapshotOutcome, Streaming};

#[derive(Parser)]
#[command(about = "Benchmarks of the data-sources services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The CDC connector: streaming throughput, latency, memory and snapshot speed.
    Cdc(CdcArgs),
    /// The stream processor (app-events job): throughput with exactly-once on and off, memory,
    /// result delay, and the quixstreams reference on the same backlog.
    Processor(processor::ProcessorArgs),
}

#[derive(Args, Clone, Debug)]
pub struct CdcArgs {
    /// Runs of each consumer per backlog (alternating); the report gives medians and min–max.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=4))]
    runs: u64,
    /// Rows of the one-transaction backlog (a).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Transactions of the small-transactions backlog (b); 0 skips it.
    #[arg(long, default_value_t = 200_000)]
    small_transactions: u64,
    /// Rows of the huge transaction streamed once per consumer (memory through a big
    /// transaction); 0 skips it.
    #[arg(long, default_value_t = 10_000_000)]
    huge_rows: u64,
    /// Rows of the table snapshotted with `--snapshot-mode initial-only`; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_rows: u64,
    /// `--snapshot-workers` for the snapshot run (the connector's default when absent).
    #[arg(long)]
    snapshot_workers: Option<u32>,
    /// Changes per second written during the latency measurement; 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u64,
    /// Seconds of paced writes for the latency measurement.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Writer connections for the latency measurement.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=32))]
    latency_connections: u64,
    /// Skip the perf profile of an extra connector run per backlog.
    #[arg(long)]
    no_profile: bool,
    /// A smoke run with small sizes and one run each (its figures are not a measurement).
    #[arg(long)]
    quick: bool,
    /// Where REPORT.md and report.json go [default: <workspace>/bench/cdc].
    #[arg(long)]
    out: Option<PathBuf>,
}

impl CdcArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.runs = 1;
            self.rows = self.rows.min(50_000);
            self.small_transactions = self.small_transactions.min(10_000);
            self.huge_rows = self.huge_rows.min(200_000);
            self.snapshot_rows = self.snapshot_rows.min(50_000);
            self.latency_secs = self.latency_secs.min(5);
        }
    }
}

#[tokio::main]
async fn main() {
    let command = Cli::parse().command;
    // Caught from the start, so an interrupted start-up stops cleanly too. Every process the
    // bench starts (the stack, the consumers, perf) is owned by the benchmark's future and
    // stopped when it is dropped: on a signal it is dropped here, before we exit.
    let mut signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("bench: cannot install signal handlers: {error}");
            std::process::exit(1);
        }
    };
    let benchmark = async {
        match command {
            Command::Cdc(args) => cdc(args).await,
            Command::Processor(args) => processor::run(args).await,
        }
    };
    let (name, code) = tokio::select! {
        outcome = benchmark => {
            if let Err(error) = outcome {
                eprintln!("bench: {error:#}");
                std::process::exit(1);
            }
            return;
        }
        signal = signals.recv() => signal,
    };
    platform::shutdown::note(format_args!(
        "bench: {name} received: everything it started is stopped; exiting with status {code}"
    ));
    std::process::exit(code);
}

/// The release binaries next to this executable (`cargo run --release -p bench` after
/// `cargo build --release --bins`), or `STACK_BIN_DIR`.
pub(crate) fn bin_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("STACK_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .context("no executable directory")?
            .to_path_buf(),
    };
    for binary in ["cdc-connector", "schema-registry"] {
        if !dir.join(binary).is_file() {
            bail!(
                "{binary} not found in {}: run `cargo build --release --bins` first (or set STACK_BIN_DIR)",
                dir.display()
            );
        }
    }
    Ok(dir)
}

async fn cdc(mut args: CdcArgs) -> Result<()> {
    args.apply_quick();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| local_stack::workspace_root().join("bench/cdc"));
    let command = format!(
        "cargo build --release --bins && cargo run --release -p bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let started = Instant::now();
    let mut results = Results::new(command, args.quick, bin_dir()?);
    println!("bench: load average before: {}", results.load_before);

    let mut options = StackOptions::for_tests("bench-cdc");
    options.bin_dir = results.bin_dir.clone();
    options.start_connector = false;
    let stack = Stack::start(options).await.context("starting the stack")?;
    let sql = workload::connect(&stack.pg_url()).await?;
    let logs = stack.root().join("logs");
    let recvlogical = stack.options().pg_bin_dir.join("pg_recvlogical");
    let snapshot_modes = consumers::SnapshotModes::of(&stack.connector_binary())?;
    let env = Env {
        stack,
        sql,
        logs,
        recvlogical,
        snapshot_workers: args.snapshot_workers,
        snapshot_modes,
    };
    let outcome = run_all(&env, &args, &mut results).await;
    let Env {
        stack, sql, logs, ..
    } = env;
    // Closed before PostgreSQL stops, so the server does not cut it off.
    drop(sql);
    if outcome.is_ok() && !results.all_failures().is_empty() {
        // The stack's root goes with its shutdown: keep the logs that explain the failures.
        let kept = std::env::temp_dir().join(format!("bench-cdc-logs-{}", std::process::id()));
        copy_dir(&logs, &kept)?;
        results.notes.push(format!(
            "logs of this run (failures above): {}",
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
    results.stolen_cpu_secs = procstat::stolen_since(results.stolen_at_start);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let markdown = results.markdown();
    std::fs::write(out.join("REPORT.md"), &markdown)?;
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

async fn run_all(env: &Env, args: &CdcArgs, results: &mut Results) -> Result<()> {
    workload::prepare_database(&env.sql).await?;
    let profile_dir = env.logs.join("perf");
    std::fs::create_dir_all(&profile_dir)?;
    let profile = !args.no_profile && profile::available(&profile_dir.join("probe.data"));
    if !args.no_profile && !profile {
        results
            .notes
            .push("perf is not usable here: no profile was taken.".into());
    }

    // A phase that fails is reported as such and the others still run: one broken measurement
    // should not hide the rest.
    if args.snapshot_rows > 0 {
        let outcome = snapshot(env, args.snapshot_rows, profile).await;
        results.snapshot = Some(match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                clean_up(env).await?;
                SnapshotOutcome::NotMeasured(format!("the snapshot run failed: {error:#}"))
            }
        });
    }
    if args.rows > 0 {
        let name = format!(
            "(a) one transaction of {} rows",
            report::thousands(args.rows)
        );
        match streaming(
            env,
            args.runs,
            &name,
            "one_transaction",
            profile,
            Workload::OneTransaction(args.rows),
        )
        .await
        {
            Ok(streaming) => results.streaming.push(streaming),
            Err(error) => fail(env, results, &name, error).await?,
        }
    }
    if args.small_transactions > 0 {
        let name = format!(
            "(b) {} small transactions (insert/update/delete, 3 tables)",
            report::thousands(args.small_transactions)
        );
        let workload = Workload::SmallTransactions(args.small_transactions);
        match streaming(
            env,
            args.runs,
            &name,
            "small_transactions",
            profile,
            workload,
        )
        .await
        {
            Ok(streaming) => results.streaming.push(streaming),
            Err(error) => fail(env, results, &name, error).await?,
        }
    }
    if args.huge_rows > 0 {
        let name = format!(
            "(c) one transaction of {} rows",
            report::thousands(args.huge_rows)
        );
        // Once per consumer: it is about memory through a big transaction, and takes minutes.
        match streaming(
            env,
            1,
            &name,
            "huge_transaction",
            false,
            Workload::OneTransaction(args.huge_rows),
        )
        .await
        {
            Ok(streaming) => results.huge = Some(streaming),
            Err(error) => fail(env, results, &name, error).await?,
        }
    }
    if args.latency_rate > 0 {
        println!(
            "bench: latency at {} changes/s for {} s",
            args.latency_rate, args.latency_secs
        );
        match latency::measure(
            env,
            args.latency_rate,
            args.latency_connections,
            Duration::from_secs(args.latency_secs),
        )
        .await
        {
            Ok(latency) => results.latency = Some(latency),
            Err(error) => fail(env, results, "latency", error).await?,
        }
    }
    Ok(())
}

async fn fail(env: &Env, results: &mut Results, phase: &str, error: anyhow::Error) -> Result<()> {
    println!("bench: {phase}: FAILED: {error:#}");
    results.failures.push(format!("{phase}: {error:#}"));
    clean_up(env).await
}

/// After a failed phase: no slot left pinning WAL, empty tables for the next phase.
async fn clean_up(env: &Env) -> Result<()> {
    workload::drop_bench_slots(&env.sql).await?;
    workload::truncate(&env.sql).await
}

enum Workload {
    OneTransaction(u64),
    SmallTransactions(u64),
}

impl Workload {
    async fn generate(&self, sql: &tokio_postgres::Client, tag: &str) -> Result<workload::Backlog> {
        match *self {
            Workload::OneTransaction(rows) => workload::one_transaction(sql, rows, tag).await,
            Workload::SmallTransactions(count) => {
                workload::small_transactions(sql, count, tag).await
            }
        }
    }
}

/// One backlog read by each consumer `runs` times, alternating which goes first, each from its
/// own slot created before the backlog; plus one profiled connector run when `profile`.
async fn streaming(
    env: &Env,
    runs: u64,
    name: &str,
    key: &str,
    profile: bool,
    workload: Workload,
) -> Result<Streaming> {
    let mut order = Vec::new();
    for run in 0..runs {
        let pair = if run % 2 == 0 {
            [Consumer::Recvlogical, Consumer::Connector]
        } else {
            [Consumer::Connector, Consumer::Recvlogical]
        };
        for consumer in pair {
            let short = if consumer == Consumer::Recvlogical {
                "recv"
            } else {
                "conn"
            };
            order.push((consumer, format!("bench_{key}_{run}_{short}")));
        }
    }
    let profile_slot = format!("bench_{key}_profile");
    for (_, slot) in &order {
        workload::create_slot(&env.sql, slot).await?;
    }
    if profile {
        workload::create_slot(&env.sql, &profile_slot).await?;
    }
    println!("bench: {name}: generating the backlog");
    let backlog = workload.generate(&env.sql, key).await?;
    println!(
        "bench: {name}: {} changes in {:.1} s, end {}",
        report::thousands(backlog.events),
        backlog.generate_secs,
        backlog.end_lsn
    );
    let mut runs: Vec<Run> = Vec::new();
    let mut failures = Vec::new();
    for (consumer, slot) in &order {
        match env.run(*consumer, slot, &backlog).await {
            Ok(run) => {
                println!(
                    "bench: {name}: {:<24} {:>10.0} events/s  {:>6.2} s  cpu {:>6.2} s  rss {:>6.1} MiB",
                    consumer.label(),
                    run.events_per_sec(),
                    run.wall_secs,
                    run.cpu_secs,
                    run.peak_rss_mib
                );
                runs.push(run);
            }
            Err(error) => {
                println!("bench: {name}: {} FAILED: {error:#}", consumer.label());
                failures.push(format!("{}: {error:#}", consumer.label()));
            }
        }
        workload::drop_slot(&env.sql, slot).await?;
    }
    let mut profile_lines = Vec::new();
    if profile {
        let data = env.logs.join("perf").join(format!("{key}.data"));
        println!("bench: {name}: profiled connector run");
        match env.run_profiled(&profile_slot, &backlog, &data).await {
            Ok(_) => profile_lines = profile::top_symbols(&data, 30)?,
            Err(error) => failures.push(format!("profiled connector run: {error:#}")),
        }
        workload::drop_slot(&env.sql, &profile_slot).await?;
    }
    workload::truncate(&env.sql).await?;
    Ok(Streaming {
        name: name.to_string(),
        key: key.to_string(),
        backlog,
        runs,
        failures,
        profile: profile_lines,
    })
}

/// The initial snapshot of a `rows`-row table, if this connector build has it; plus one
/// profiled snapshot run when `profile`.
async fn snapshot(env: &Env, rows: u64, profile: bool) -> Result<SnapshotOutcome> {
    let Some(modes) = env.snapshot_modes else {
        return Ok(SnapshotOutcome::NotMeasured(
            "snapshot not available in this build (no --snapshot-mode option)".into(),
        ));
    };
    println!(
        "bench: snapshot: inserting {} rows",
        report::thousands(rows)
    );
    workload::insert_users(&env.sql, rows, "snapshot").await?;
    env.sql.batch_execute("VACUUM ANALYZE users").await?;
    env.sql.batch_execute("CHECKPOINT").await?;
    let copy = copy_reference(&env.sql).await.context("COPY reference")?;
    println!(
        "bench: snapshot: COPY reads {:.0} rows/s",
        copy.rows_per_sec()
    );
    let slot = "bench_snapshot";
    let run = env.run_snapshot(slot, rows, modes, None).await;
    workload::drop_slot(&env.sql, slot).await?;
    let mut profile_lines = Vec::new();
    if profile && run.is_ok() {
        let data = env.logs.join("perf").join("snapshot.data");
        println!("bench: snapshot: profiled connector run");
        let slot = "bench_snapshot_profile";
        let profiled = env.run_snapshot(slot, rows, modes, Some(&data)).await;
        workload::drop_slot(&env.sql, slot).await?;
        // A failed profile is reported in its place; the measured run stands.
        profile_lines = match profiled.and_then(|_| profile::top_symbols(&data, 30)) {
            Ok(lines) => lines,
            Err(error) => vec![format!("the profiled snapshot run failed: {error:#}")],
        };
    }
    workload::truncate(&env.sql).await?;
    let run = run.context("snapshot")?;
    println!(
        "bench: snapshot: {:.0} rows/s ({:.2}× COPY), {:.2} s, rss {:.1} MiB",
        run.events_per_sec(),
        run.events_per_sec() / copy.rows_per_sec(),
        run.wall_secs,
        run.peak_rss_mib
    );
    Ok(SnapshotOutcome::Measured {
        run,
        copy,
        profile: profile_lines,
    })
}

/// Reads the snapshot's table with `COPY ... TO STDOUT` to the end, discarding the rows.
async fn copy_reference(sql: &tokio_postgres::Client) -> Result<report::CopyReference> {
    use futures::StreamExt;
    let started = Instant::now();
    let rows = sql.copy_out("COPY users TO STDOUT").await?;
    let mut rows = std::pin::pin!(rows);
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(row) = rows.next().await {
        count += 1;
        bytes += row?.len() as u64;
    }
    Ok(report::CopyReference {
        rows: count,
        bytes,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
