//! The processor benchmark's figures: console table, REPORT.md and report.json.
//!
//! This file holds what a run collects ([`Results`] and its parts) and report.json; the
//! targets and their verdicts are in `targets`, the console table in `table` and
//! REPORT.md, with its method text, in `markdown`.

mod markdown;
mod table;
mod targets;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{Value, json};

use super::ProcessorArgs;
use super::latency::Delay;
use super::load::{Loaded, result_id};
use super::reference::RefRun;
use super::results::Seen;
use super::run::{Guarantee, ProcRun};
pub use crate::report::thousands;

/// The throughput backlog as written.
#[derive(Debug, Clone)]
pub struct Backlog {
    pub events: u64,
    pub records: u64,
    pub closers: u64,
    pub load_secs: f64,
    pub load_rate: f64,
    pub expected_results: usize,
    pub windows: usize,
}

impl Backlog {
    pub fn of(loaded: &Loaded) -> Backlog {
        Backlog {
            events: loaded.spec.events,
            records: loaded.records,
            closers: loaded.closers,
            load_secs: loaded.seconds,
            load_rate: loaded.records_per_sec(),
            expected_results: loaded.expected.results.len(),
            windows: loaded.expected.windows(),
        }
    }
}

/// The one-window, all-distinct-users run.
#[derive(Debug, Clone)]
pub struct Memory {
    pub run: ProcRun,
    pub distinct_users: u64,
    pub totals_true: u64,
    pub totals_estimate: Option<u64>,
    pub totals_exact: Option<bool>,
    pub totals_error: Option<f64>,
}

impl Memory {
    pub fn of(run: ProcRun, loaded: &Loaded, seen: &[Seen]) -> Memory {
        let id = result_id(super::load::START_MS, "");
        let totals_true = loaded
            .expected
            .results
            .get(&id)
            .map(|r| r.unique_users)
            .unwrap_or(0);
        let totals = seen.iter().find(|s| s.id == id);
        let totals_estimate = totals.and_then(|s| s.unique_users);
        Memory {
            distinct_users: loaded.spec.events,
            totals_true,
            totals_estimate,
            totals_exact: totals.and_then(|s| s.unique_users_exact),
            totals_error: totals_estimate
                .map(|e| (e as f64 - totals_true as f64).abs() / (totals_true.max(1)) as f64),
            run,
        }
    }

    fn json(&self) -> Value {
        json!({
            "distinct_users": self.distinct_users,
            "totals_unique_users_true": self.totals_true,
            "totals_unique_users_reported": self.totals_estimate,
            "totals_unique_users_exact_flag": self.totals_exact,
            "totals_relative_error": self.totals_error,
            "run": self.run.json(),
        })
    }
}

/// `perf report` summaries of the profiled run.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Self time by thread name.
    pub threads: Vec<String>,
    /// Self time by library and symbol.
    pub self_time: Vec<String>,
    /// Time including callees, by symbol (from the call chains).
    pub inclusive: Vec<String>,
}

impl Profile {
    pub fn of(data: &Path) -> Result<Profile> {
        use crate::profile::report_lines;
        Ok(Profile {
            threads: report_lines(
                data,
                15,
                &["--no-children", "--sort", "comm", "--percent-limit", "0.5"],
                true,
            )?,
            self_time: report_lines(
                data,
                40,
                &[
                    "--no-children",
                    "--sort",
                    "dso,sym",
                    "--percent-limit",
                    "0.4",
                ],
                true,
            )?,
            inclusive: report_lines(
                data,
                40,
                &["--children", "--sort", "sym", "--percent-limit", "3"],
                false,
            )
            .unwrap_or_default(),
        })
    }
}

pub struct Results {
    pub command: String,
    /// The commit the binaries were built from, and whether the processor's sources differed.
    pub source: String,
    pub quick: bool,
    pub bin_dir: PathBuf,
    pub started_at: String,
    pub cores: usize,
    pub cpu_model: String,
    pub load_before: String,
    pub load_after: String,
    pub total_secs: f64,
    pub args: Option<ProcessorArgs>,
    pub backlog: Option<Backlog>,
    pub throughput: Vec<ProcRun>,
    pub reference: Vec<RefRun>,
    pub profile_run: Option<ProcRun>,
    pub profile: Option<Profile>,
    pub ceiling: Option<super::ceiling::Ceiling>,
    pub memory: Option<Memory>,
    pub latency: Vec<Delay>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

impl Results {
    pub fn new(command: String, quick: bool, bin_dir: PathBuf) -> Results {
        Results {
            command,
            source: source(),
            quick,
            bin_dir,
            started_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model: platform::machine::cpu_model(),
            load_before: platform::machine::load_average(),
            load_after: String::new(),
            total_secs: 0.0,
            args: None,
            backlog: None,
            throughput: Vec::new(),
            reference: Vec::new(),
            profile_run: None,
            profile: None,
            ceiling: None,
            memory: None,
            latency: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Whether every run's results were right.
    pub fn all_right(&self) -> bool {
        self.throughput
            .iter()
            .chain(self.profile_run.as_ref())
            .chain(self.memory.as_ref().map(|m| &m.run))
            .all(|r| r.check.all_right())
            && self.latency.iter().all(|d| d.check.all_right())
            && self.reference.iter().all(RefRun::all_right)
    }

    fn processor(&self, g: Guarantee) -> Option<&ProcRun> {
        self.throughput.iter().find(|r| r.guarantee == g)
    }

    fn reference(&self, g: Guarantee) -> Option<&RefRun> {
        self.reference.iter().find(|r| r.guarantee == g)
    }

    /// Processor over reference, events per CPU-second.
    fn cpu_ratio(&self, g: Guarantee) -> Option<f64> {
        Some(self.processor(g)?.events_per_cpu_sec() / self.reference(g)?.events_per_cpu_sec())
    }

    fn rate_ratio(&self, g: Guarantee) -> Option<f64> {
        Some(self.processor(g)?.events_per_sec() / self.reference(g)?.events_per_sec())
    }

    pub fn json(&self) -> Value {
        let ratios: Vec<Value> = [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce]
            .iter()
            .map(|g| {
                json!({
                    "processing_guarantee": g.flag(),
                    "events_per_cpu_sec": self.cpu_ratio(*g),
                    "events_per_sec": self.rate_ratio(*g),
                })
            })
            .collect();
        json!({
            "command": self.command,
            "source": self.source,
            "quick": self.quick,
            "started_at": self.started_at,
            "machine": {
                "cores": self.cores,
                "cpu_model": self.cpu_model,
                "load_average_before": self.load_before,
                "load_average_after": self.load_after,
            },
            "total_secs": self.total_secs,
            "backlog": self.backlog.as_ref().map(|b| json!({
                "events": b.events,
                "records_with_closers": b.records,
                "closers": b.closers,
                "load_secs": b.load_secs,
                "load_records_per_sec": b.load_rate,
                "expected_results": b.expected_results,
                "windows": b.windows,
                "users": self.args.as_ref().map(|a| a.users),
            })),
            "throughput": self.throughput.iter().map(ProcRun::json).collect::<Vec<_>>(),
            "reference": self.reference.iter().map(RefRun::json).collect::<Vec<_>>(),
            "read_ceiling": self.ceiling.as_ref().map(super::ceiling::Ceiling::json),
            "processor_args": self.args.as_ref().map(|a| a.processor_arg.clone()),
            "ratios": ratios,
            "memory": self.memory.as_ref().map(Memory::json),
            "result_delay": self.latency.iter().map(Delay::json).collect::<Vec<_>>(),
            "profile": self.profile.as_ref().map(|p| json!({
                "run": self.profile_run.as_ref().map(ProcRun::json),
                "threads": p.threads,
                "self_time": p.self_time,
                "inclusive": p.inclusive,
            })),
            "targets": self.targets().iter().map(|t| json!({
                "target": t.what, "goal": t.goal, "measured": t.measured, "met": t.met,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "failures": self.failures,
        })
    }
}

/// `commit <hash>` and whether crates/processor has uncommitted changes (read-only git; no
/// optional index refresh, so it never takes the index lock).
fn source() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(local_stack::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown (no git)".into(),
        Some(head) => {
            let dirty = git(&[
                "status",
                "--porcelain",
                "--",
                "crates/processor",
                "crates/platform",
            ])
            .is_some_and(|s| !s.is_empty());
            format!(
                "commit `{head}`{}",
                if dirty {
                    " with uncommitted changes in crates/processor or crates/platform"
                } else {
                    " (crates/processor and crates/platform as committed)"
                }
            )
        }
    }
}
