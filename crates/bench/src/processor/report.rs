//! The processor benchmark's figures: console table, REPORT.md and report.json.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{Value, json};

use super::ProcessorArgs;
use super::latency::Delay;
use super::load::{Loaded, result_id};
use super::reference::RefRun;
use super::results::Seen;
use super::run::{Guarantee, ProcRun};
use crate::procstat;
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

struct Target {
    what: String,
    goal: String,
    measured: String,
    met: Option<bool>,
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
            cpu_model: procstat::cpu_model(),
            load_before: procstat::load_average(),
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

    fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let backlog = self
            .backlog
            .as_ref()
            .map(|b| format!("{}-event backlog", thousands(b.events)))
            .unwrap_or_else(|| "backlog".into());
        match self.processor(Guarantee::ExactlyOnce) {
            Some(run) => targets.push(Target {
                what: format!("processor throughput, exactly-once on, {backlog}"),
                goal: "≥ 100,000 events/s".into(),
                measured: format!("{} events/s", thousands(run.events_per_sec() as u64)),
                met: Some(run.events_per_sec() >= 100_000.0),
            }),
            None if self.backlog.is_some() => targets.push(Target {
                what: "processor throughput, exactly-once on".into(),
                goal: "≥ 100,000 events/s".into(),
                measured: "not measured (the run failed)".into(),
                met: None,
            }),
            None => {}
        }
        for g in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
            if let Some(ratio) = self.cpu_ratio(g) {
                targets.push(Target {
                    what: format!(
                        "processor / quixstreams reference, events per CPU-second, {}",
                        g.flag()
                    ),
                    goal: "≥ 10×".into(),
                    measured: format!(
                        "{ratio:.1}× ({} vs {} events/CPU-s)",
                        thousands(self.processor(g).map_or(0.0, |r| r.events_per_cpu_sec()) as u64),
                        thousands(self.reference(g).map_or(0.0, |r| r.events_per_cpu_sec()) as u64)
                    ),
                    met: Some(ratio >= 10.0),
                });
            }
        }
        for run in &self.throughput {
            targets.push(Target {
                what: format!(
                    "results of the {} run equal the input's counts",
                    run.guarantee.flag()
                ),
                goal: "all present; events exact; unique users exact, or within 3 % when estimated"
                    .into(),
                measured: run.check.summary(),
                met: Some(run.check.all_right()),
            });
        }
        if let Some(m) = &self.memory {
            targets.push(Target {
                what: format!(
                    "processor peak RSS, {} distinct users in one window",
                    thousands(m.distinct_users)
                ),
                goal: "< 128 MiB".into(),
                measured: mib(m.run.peak_rss_mib),
                met: Some(m.run.peak_rss_mib < 128.0),
            });
            targets.push(Target {
                what: "unique_users of that window (HyperLogLog++, p = 14)".into(),
                goal: "within 3 % (standard error 0.81 %)".into(),
                measured: match (m.totals_estimate, m.totals_error) {
                    (Some(e), Some(err)) => format!(
                        "{} for {} true ({:.2} % off); groups: max {:.2} % off",
                        thousands(e),
                        thousands(m.totals_true),
                        err * 100.0,
                        m.run.check.max_estimate_error * 100.0
                    ),
                    _ => "no totals result read".into(),
                },
                met: m.totals_error.map(|e| e <= 0.03 && m.run.check.all_right()),
            });
        }
        for (i, d) in self.latency.iter().enumerate() {
            targets.push(Target {
                what: format!(
                    "window end → result readable, p99, {} events/s, `--commit-interval-ms {}`{}",
                    thousands(d.target_rate),
                    d.commit_interval_ms,
                    if i == 0 { "" } else { " (for comparison)" }
                ),
                goal: "< 1 s".into(),
                measured: format!(
                    "{} (p50 {}){}",
                    d.show(d.p99_ms),
                    d.show(d.p50_ms),
                    if d.missing > 0 {
                        format!(
                            "; {} of {} results not read within {} s of the last write; the processor had consumed {} of {} events",
                            d.missing,
                            d.missing + d.results,
                            d.waited_secs,
                            thousands(d.processed),
                            thousands(d.written)
                        )
                    } else {
                        String::new()
                    }
                ),
                met: Some(d.p99_ms < 1000.0),
            });
        }
        targets
    }

    /// The console table (also in REPORT.md).
    pub fn table(&self) -> String {
        let mut t = String::new();
        if !self.throughput.is_empty() || !self.reference.is_empty() {
            let _ = writeln!(
                t,
                "| job | guarantee | events | wall s | events/s | CPU-s | CPU-s per M events | events per CPU-s | peak RSS | broker CPU-s (per M) | results |"
            );
            let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|");
            for r in &self.throughput {
                let _ = writeln!(
                    t,
                    "| processor | {} | {} | {:.2} | {} | {:.2} | {:.2} | {} | {} | {} | {} |",
                    r.guarantee.flag(),
                    thousands(r.events),
                    r.wall_secs,
                    thousands(r.events_per_sec() as u64),
                    r.cpu_secs,
                    r.cpu_per_million(),
                    thousands(r.events_per_cpu_sec() as u64),
                    mib(r.peak_rss_mib),
                    r.broker_cpu_secs
                        .map(|b| format!(
                            "{b:.2} ({:.2})",
                            r.broker_cpu_per_million().unwrap_or(f64::NAN)
                        ))
                        .unwrap_or_else(|| "–".into()),
                    r.check.verdict()
                );
            }
            if let Some(c) = &self.ceiling {
                let per_m = |v: f64| v / c.records.max(1) as f64 * 1e6;
                let _ = writeln!(
                    t,
                    "| bare librdkafka consumer (read ceiling) | – | {} | {:.2} | {} | {:.2} (bench process) | {:.2} | | | {} | – |",
                    thousands(c.records),
                    c.wall_secs,
                    thousands(c.records_per_sec() as u64),
                    c.consumer_cpu_secs,
                    per_m(c.consumer_cpu_secs),
                    c.broker_cpu_secs
                        .map(|b| format!("{b:.2} ({:.2})", per_m(b)))
                        .unwrap_or_else(|| "–".into()),
                );
            }
            for r in &self.reference {
                let _ = writeln!(
                    t,
                    "| quixstreams reference | {} | {} | {:.2} | {} | {:.2} | {:.2} | {} | {} | – | {} |",
                    r.guarantee.flag(),
                    thousands(r.events),
                    r.wall_secs,
                    thousands(r.events_per_sec() as u64),
                    r.cpu_secs,
                    r.cpu_per_million(),
                    thousands(r.events_per_cpu_sec() as u64),
                    mib(r.peak_rss_mib),
                    if r.all_right() {
                        format!("right ({} windows)", r.windows_right)
                    } else {
                        format!(
                            "**WRONG** ({}/{} windows right)",
                            r.windows_right, r.windows_expected
                        )
                    }
                );
            }
            for g in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
                if let (Some(cpu), Some(rate)) = (self.cpu_ratio(g), self.rate_ratio(g)) {
                    let _ = writeln!(
                        t,
                        "| **processor / reference** | {} | | | {rate:.1}× | | | **{cpu:.1}×** | | | |",
                        g.flag()
                    );
                }
            }
        }
        if let Some(m) = &self.memory {
            let r = &m.run;
            let _ = writeln!(
                t,
                "\n| one window, every event a new user | events | peak RSS | unique_users (totals) | true | error | events/s | CPU-s per M | results |\n|---|---|---|---|---|---|---|---|---|\n| processor, {} | {} | {} | {}{} | {} | {} | {} | {:.2} | {} |",
                r.guarantee.flag(),
                thousands(r.events),
                mib(r.peak_rss_mib),
                m.totals_estimate
                    .map(thousands)
                    .unwrap_or_else(|| "–".into()),
                match m.totals_exact {
                    Some(false) => " (estimate)",
                    Some(true) => " (exact)",
                    None => "",
                },
                thousands(m.totals_true),
                m.totals_error
                    .map(|e| format!("{:.2} %", e * 100.0))
                    .unwrap_or_else(|| "–".into()),
                thousands(r.events_per_sec() as u64),
                r.cpu_per_million(),
                r.check.verdict()
            );
        }
        if let Some(first) = self.latency.first() {
            let _ = writeln!(
                t,
                "\n| result delay, {} events/s, {} s windows, window end → result readable | achieved events/s | events consumed by the processor | results read | p50 | p99 | max | whole window p50 / p99 | processor CPU-s per M | peak RSS | results |\n|---|---|---|---|---|---|---|---|---|---|---|",
                thousands(first.target_rate),
                super::latency::WINDOW_SECS,
            );
        }
        for d in &self.latency {
            let _ = writeln!(
                t,
                "| {}, `{}` | {:.0} | {} of {} | {} of {} in {} windows | {} | {} | {} | {} / {} | {:.2} | {} | {} |",
                d.guarantee.flag(),
                d.args.join(" "),
                d.achieved_rate,
                thousands(d.processed),
                thousands(d.written),
                d.results,
                d.results + d.missing,
                d.windows,
                d.show(d.p50_ms),
                d.show(d.p99_ms),
                d.show(d.max_ms),
                d.show(d.window_complete_p50_ms),
                d.show(d.window_complete_p99_ms),
                d.processor_cpu_per_million,
                mib(d.processor_peak_rss_mib),
                d.check.verdict()
            );
        }
        t
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Stream processor benchmark: the app-events job\n");
        if self.quick {
            let _ = writeln!(
                md,
                "**Quick smoke run (`--quick`): small sizes. These figures are not a measurement.**\n"
            );
        }
        let _ = writeln!(md, "Produced by:\n\n```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            md,
            "- {} · {} cores ({}) · load average (1/5/15 min) {} before, {} after · {:.0} s in all\n- source: {}\n- binaries: `{}` (release); tansu broker (memory storage), schema registry and the benchmark's own clients, all on this machine and sharing its cores",
            self.started_at,
            self.cores,
            self.cpu_model,
            self.load_before,
            self.load_after,
            self.total_secs,
            self.source,
            self.bin_dir.display()
        );
        if let (Some(b), Some(a)) = (&self.backlog, &self.args) {
            let _ = writeln!(
                md,
                "- throughput backlog: {} AppEvents (Avro, Confluent wire format) over {} five-minute windows, users drawn from {} (10 % without a user), 17 `event_type|source` kinds, keyed by kind, one kind per partition of the 6; then one event per kind an hour past the last window (closers): {} records, written in {:.1} s ({} records/s) before any consumer starts; {} results expected ({} APP_EVENT_COUNT + {} APP_EVENT_TOTALS)",
                thousands(b.events),
                a.windows,
                thousands(a.users),
                thousands(b.records),
                b.load_secs,
                thousands(b.load_rate as u64),
                b.expected_results,
                b.expected_results - b.windows,
                b.windows
            );
        }
        let _ = writeln!(
            md,
            "\n## Targets\n\n| target | goal | measured | verdict |\n|---|---|---|---|"
        );
        for t in self.targets() {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                t.what, t.goal, t.measured, verdict
            );
        }
        let _ = writeln!(
            md,
            "\nWhere a target is missed, [NOTES.md](NOTES.md) says where the time goes and what would close the gap."
        );
        let _ = writeln!(md, "\n## Figures\n\n{}", self.table());
        let runs: Vec<&ProcRun> = self
            .throughput
            .iter()
            .chain(self.memory.as_ref().map(|m| &m.run))
            .filter(|r| r.sched.is_some())
            .collect();
        if !runs.is_empty() {
            let _ = writeln!(
                md,
                "Where the processing thread's wall time went (from /health 200 to the last result; the thread that decodes, routes, aggregates and commits; scheduler accounting from /proc/<pid>/task/<tid>/schedstat, commits from the processor's `processor_commit_seconds` histogram):\n\n| run | wall | on a CPU | runnable, waiting for a CPU | in commits (count) | blocked otherwise (polling for records) | all threads: waiting for a CPU |\n|---|---|---|---|---|---|---|"
            );
            for r in runs {
                if let Some(s) = r.sched {
                    let pct = |v: f64| format!("{v:.2} s ({:.0} %)", v / s.wall_secs * 100.0);
                    let _ = writeln!(
                        md,
                        "| {} | {:.2} s | {} | {} | {} ({}) | {} | {:.2} s |",
                        r.name,
                        s.wall_secs,
                        pct(s.cpu_secs),
                        pct(s.runqueue_secs),
                        pct(s.commit_secs),
                        s.commits,
                        pct(s.other_blocked_secs()),
                        s.all_threads_runqueue_secs
                    );
                }
            }
            md.push('\n');
        }
        let with_volumes: Vec<&ProcRun> = self
            .throughput
            .iter()
            .chain(self.memory.as_ref().map(|m| &m.run))
            .filter(|r| !r.volumes.is_empty())
            .collect();
        if !with_volumes.is_empty() {
            let _ = writeln!(
                md,
                "What each run wrote besides the results (read back after the run, read_committed; keys + values):\n\n| run | topic | records | MiB | records per input event | bytes per input event |\n|---|---|---|---|---|---|"
            );
            for r in with_volumes {
                for v in &r.volumes {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {:.1} | {:.2} | {:.0} |",
                        r.name,
                        v.topic,
                        thousands(v.records),
                        v.bytes as f64 / 1048576.0,
                        v.records as f64 / r.events.max(1) as f64,
                        v.bytes as f64 / r.events.max(1) as f64
                    );
                }
            }
            md.push('\n');
        }
        if !self
            .args
            .as_ref()
            .is_none_or(|a| a.processor_arg.is_empty())
        {
            let _ = writeln!(
                md,
                "**Extra processor options in the throughput, profile and memory runs: `{}`.**\n",
                self.args
                    .as_ref()
                    .map(|a| a.processor_arg.join(" "))
                    .unwrap_or_default()
            );
        }
        if let Some(r) = &self.profile_run {
            let _ = writeln!(
                md,
                "The profiled run (not counted above: perf perturbs it) ran at {} events/s, {:.2} CPU-s per M events.\n",
                thousands(r.events_per_sec() as u64),
                r.cpu_per_million()
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "## Failed phases\n");
            for f in &self.failures {
                let _ = writeln!(md, "- {}", f.replace('\n', " "));
            }
            md.push('\n');
        }
        let _ = writeln!(md, "## Correctness\n");
        let _ = writeln!(
            md,
            "Every result of a measured window is compared with counts computed by the bench from the records it wrote: `events` must be equal; `unique_users` equal when `unique_users_exact` is true, within 3 % when false. A result of a measured window that should not exist, or one read twice with different values, is an error.\n"
        );
        for r in &self.throughput {
            let _ = writeln!(
                md,
                "- processor, {} (throughput): {}{}",
                r.guarantee.flag(),
                r.check.summary(),
                problems(&r.check.problems)
            );
        }
        if let Some(r) = &self.profile_run {
            let _ = writeln!(
                md,
                "- processor, {} (profiled run): {}",
                r.guarantee.flag(),
                r.check.summary()
            );
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                md,
                "- processor, {} (memory, one window): {}{}",
                m.run.guarantee.flag(),
                m.run.check.summary(),
                problems(&m.run.check.problems)
            );
        }
        for d in &self.latency {
            let _ = writeln!(
                md,
                "- result delay, `--commit-interval-ms {}`: per window (end, seconds after the writes began → delay of its last result): {}",
                d.commit_interval_ms,
                d.window_delays
                    .iter()
                    .map(|(at, ms)| format!("{at:.0} s → {}", d.show(*ms)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for d in &self.latency {
            let _ = writeln!(
                md,
                "- processor, {} (result delay, `--commit-interval-ms {}`, full windows only): {}{}",
                d.guarantee.flag(),
                d.commit_interval_ms,
                d.check.summary(),
                problems(&d.check.problems)
            );
        }
        for r in &self.reference {
            let _ = writeln!(
                md,
                "- quixstreams reference, {}: {} windows emitted, {} expected, {} with the exact event count and unique users (read back from its output topic); {} events dropped as late{}",
                r.guarantee.flag(),
                r.windows_emitted,
                r.windows_expected,
                r.windows_right,
                r.late_events_dropped,
                problems(&r.problems)
            );
        }
        for run in self
            .throughput
            .iter()
            .chain(self.memory.as_ref().map(|m| &m.run))
        {
            let late = run
                .metrics
                .get("processor_late_events_total")
                .copied()
                .unwrap_or(0.0);
            let dups = run
                .metrics
                .get("processor_duplicates_dropped_total")
                .copied()
                .unwrap_or(0.0);
            let input = run
                .metrics
                .get("processor_input_records_total")
                .copied()
                .unwrap_or(0.0);
            let commits = run
                .metrics
                .get("processor_commit_seconds_count")
                .copied()
                .unwrap_or(0.0);
            let commit_secs = run
                .metrics
                .get("processor_commit_seconds_sum")
                .copied()
                .unwrap_or(0.0);
            let _ = writeln!(
                md,
                "- its /metrics after the `{}` run: {} input records, {} late events, {} duplicates dropped, {} commits taking {:.2} s in all",
                run.name,
                thousands(input as u64),
                late,
                dups,
                commits,
                commit_secs
            );
        }
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(
                md,
                "\n## Profile: processor, exactly-once, throughput backlog\n\n`perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p <processor>` (call chains unwound from DWARF: the release build has no frame pointers) from /health 200 to the last result, over one extra, uncounted run.\n\nBy thread (self time):\n\n```\n{}\n```\n\nBy library and symbol (self time, `perf report --no-children --sort dso,sym`):\n\n```\n{}\n```",
                p.threads.join("\n"),
                p.self_time.join("\n")
            );
            if !p.inclusive.is_empty() {
                let _ = writeln!(
                    md,
                    "\nIncluding callees (`perf report --children --sort sym`; percentages of all samples of the process, threads included):\n\n```\n{}\n```",
                    p.inclusive.join("\n")
                );
            }
        }
        let _ = writeln!(md, "\n## Method\n\n{METHOD}");
        md
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

fn problems(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(" — {}", problems.join("; "))
    }
}

const METHOD: &str = "\
- **Stack**: `local-stack` (`StackOptions::for_tests`, no connector): PostgreSQL (unused), the \
tansu broker with memory storage, the schema registry. Topics from `platform::topics::ALL` \
(topic_app_events: 6 partitions). Before each processor run every platform topic but \
topic_app_events is deleted and created again, so each run starts with an empty \
repartition topic, changelog and results topic; before each phase topic_app_events is \
recreated too. Each run uses a new consumer group (and so a new transactional id).
- **Input**: AppEvent records built with the registered schema (`RegisteredSchema::encode`) \
and written by one idempotent, batching producer (linger 20 ms, no waiting on single \
deliveries) before the consumer starts. The bench tallies per (window, kind) and per window \
the events and the distinct user ids while it writes them: that is the expected output.
- **Throughput** (processor): the processor starts (`--group <new> --instance-id bench \
--processing-guarantee exactly-once|at-least-once`, all else default: 5-minute windows, \
allowed lateness 5 s, commit every 200 ms); the clock starts when its /health answers 200 \
(partitions assigned, state restored: the ~20 s group join of tansu is outside) and stops \
when a read_committed consumer of topic_processed_events (assigned to every partition, \
`fetch.wait.max.ms=5`) has read every expected result. Events = records of the backlog \
(events + closers). Processor CPU = utime+stime of the process (all threads) from \
/proc/<pid>/stat over that interval; peak RSS = VmHWM at the end; broker CPU = tansu's over \
the same interval. The figures of one run each; the machine's load (above) shifts them.
- **Reference**: `bench/processor/reference/app_events_quix.py` (quixstreams 3.28.1, venv \
`.stack/quix-venv`), `--expect <records>`, a new group and state dir, a fresh output topic; its \
figures are its own: first input record consumed → last checkpoint committed, CPU of the \
whole Python process (all threads) over that interval, `ru_maxrss`. Its output topic is read \
back and compared with the expected APP_EVENT_COUNT counts (it has no totals). Ratio = \
processor events per CPU-second / reference events per CPU-second, same guarantee.
- **Memory**: one 5-minute window of N events, event i from user i (all distinct), plus the \
closers; measured like the throughput run (exactly-once). unique_users of the window's \
APP_EVENT_TOTALS result against N, and of every group against its own distinct count.
- **Result delay**: the processor with `--app-events-window-secs 2 --allowed-lateness-ms 0 \
--commit-interval-ms 100` (exactly-once; then the same with 200 ms, its default, for \
comparison; each run on emptied topics with a new group); after /health 200 a producer (linger 5 ms) writes \
the target rate for the given seconds, event time = the wall clock when each record is \
built, the kinds spread over the 6 partitions as above. The results reader notes the wall \
clock when it reads each result; delay = that − window_end; a result not read within 20 s \
of the last write counts as infinitely late. Only windows that start after \
the writes began and end before they stopped count. Percentiles are nearest-rank over all \
results of those windows; 'whole window' is, per window, the delay of its last result.
- **Profile**: one more exactly-once run over the throughput backlog under `perf record \
--call-graph dwarf`, from /health 200 to the last result; not counted in the figures.
";
