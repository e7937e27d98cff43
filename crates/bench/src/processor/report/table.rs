//! The figures as one console table (printed at the end of a run and repeated in REPORT.md):
//! throughput, read ceiling and reference rows, the memory run and the result delays.

use std::fmt::Write as _;

use super::{Guarantee, Results, mib, thousands};
use crate::processor::latency;

impl Results {
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
                latency::WINDOW_SECS,
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
}
