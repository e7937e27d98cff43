//! The benchmark's targets (throughput, CPU ratio to the reference, memory, result delay,
//! correctness), each with its goal, what was measured and whether it was met: the verdicts
//! REPORT.md and report.json both give.

use super::{Guarantee, Results, mib, thousands};

pub(super) struct Target {
    pub(super) what: String,
    pub(super) goal: String,
    pub(super) measured: String,
    pub(super) met: Option<bool>,
}

impl Results {
    pub(super) fn targets(&self) -> Vec<Target> {
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
}
