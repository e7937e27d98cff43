//! `faults`: runs the fault suite (see `e2e::faults`) on fresh native stacks and writes its
//! report. `./dev faults` builds the binaries and runs it; exits 1 when any fault lost,
//! invented or reordered a change, or failed one of its checks.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Parser;
use e2e::faults::{self, Fault, SuiteOptions};

/// Runs each fault under continuous OLTP load and counts, against PostgreSQL's own account of
/// what committed, what reached the topic: lost, duplicated, phantom and out-of-order changes.
#[derive(Parser, Debug)]
struct Args {
    /// The short form CI runs (a few cycles, 12 s outages) instead of the full suite.
    #[arg(long)]
    short: bool,
    /// Run only these faults (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Fault>,
    /// SIGKILL cycles of the connector [default: 50, short: 4].
    #[arg(long)]
    kill_cycles: Option<usize>,
    /// Cycles of each other fault [default: 3, short: 1].
    #[arg(long)]
    outage_cycles: Option<usize>,
    /// Seconds the broker stays frozen, the network cut, the registry down [default: 30,
    /// short: 12].
    #[arg(long)]
    outage_secs: Option<u64>,
    /// OLTP operations per second of the load [default: 150, short: 100].
    #[arg(long)]
    rate: Option<u32>,
    /// Seed of the load and of the random moments.
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for REPORT.md and report.json.
    #[arg(long, default_value = "bench/faults")]
    report_dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let defaults = if args.short {
        SuiteOptions::short()
    } else {
        SuiteOptions::full()
    };
    let options = SuiteOptions {
        kill_cycles: args.kill_cycles.unwrap_or(defaults.kill_cycles),
        outage_cycles: args.outage_cycles.unwrap_or(defaults.outage_cycles),
        outage: args
            .outage_secs
            .map(Duration::from_secs)
            .unwrap_or(defaults.outage),
        load_rate: args.rate.unwrap_or(defaults.load_rate),
        seed: args.seed.unwrap_or(defaults.seed),
    };
    let chosen = if args.only.is_empty() {
        Fault::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let outcomes = faults::run_suite(&chosen, &options).await?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = faults::report::markdown(&outcomes, &options, &command);
    std::fs::create_dir_all(&args.report_dir)
        .with_context(|| format!("creating {}", args.report_dir.display()))?;
    std::fs::write(args.report_dir.join("REPORT.md"), &report)?;
    std::fs::write(
        args.report_dir.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "options": options,
            "outcomes": outcomes,
        }))?,
    )?;
    print!("{report}");
    if !outcomes.iter().all(|o| o.passed()) {
        std::process::exit(1);
    }
    Ok(())
}
