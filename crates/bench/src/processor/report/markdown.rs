//! REPORT.md: the targets, the figures, where the processing thread's time went, what each
//! run wrote, the correctness checks, the profile and the method, in that order.

use std::fmt::Write as _;

use super::{ProcRun, Results, thousands};

impl Results {
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
