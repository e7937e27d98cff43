//! The reference: the quixstreams 3.28.1 app-events job of `bench/processor/reference/`, run on
//! the same backlog and broker, in its own venv (`<workspace>/.stack/quix-venv`). Its figures
//! are its own measurement (`app_events_quix.py` prints them: first record consumed → last
//! checkpoint committed; CPU of the whole Python process over that interval), and its output
//! topic is read back and compared with the expected counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::Env;
use super::load::Loaded;
use super::run::Guarantee;

pub const OUTPUT_TOPIC: &str = "topic_quix_app_event_counts";

fn reference_dir() -> PathBuf {
    local_stack::workspace_root().join("bench/processor/reference")
}

/// The reference's interpreter, creating its venv when missing.
pub async fn python(log: &Path) -> Result<PathBuf> {
    let venv = local_stack::workspace_root().join(".stack/quix-venv");
    let python = venv.join("bin/python");
    let ready = |python: PathBuf| async move {
        tokio::process::Command::new(python)
            .args(["-c", "import quixstreams, fastavro"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if python.is_file() && ready(python.clone()).await {
        return Ok(python);
    }
    println!(
        "bench: creating {} for the quixstreams reference",
        venv.display()
    );
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let status = tokio::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .status()
        .await
        .context("running python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv failed; see {}", log.display());
    }
    let status = tokio::process::Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(reference_dir().join("requirements.txt"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .await
        .context("running pip install")?;
    if !status.success() || !ready(python.clone()).await {
        bail!(
            "installing the reference's requirements failed; see {}",
            log.display()
        );
    }
    Ok(python)
}

/// One reference run.
#[derive(Debug, Clone)]
pub struct RefRun {
    pub guarantee: Guarantee,
    /// The JSON line `app_events_quix.py` printed.
    pub report: Value,
    pub events: u64,
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub peak_rss_mib: f64,
    pub windows_emitted: u64,
    pub late_events_dropped: u64,
    /// Its output read back: windows with the expected event count and unique users.
    pub windows_expected: usize,
    pub windows_right: usize,
    pub problems: Vec<String>,
}

impl RefRun {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall_secs
    }

    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / self.events as f64 * 1e6
    }

    pub fn events_per_cpu_sec(&self) -> f64 {
        self.events as f64 / self.cpu_secs
    }

    pub fn all_right(&self) -> bool {
        self.windows_right == self.windows_expected
            && self.windows_emitted as usize == self.windows_expected
            && self.late_events_dropped == 0
            && self.problems.is_empty()
    }

    pub fn json(&self) -> Value {
        json!({
            "processing_guarantee": self.guarantee.flag(),
            "events": self.events,
            "wall_secs": self.wall_secs,
            "events_per_sec": self.events_per_sec(),
            "cpu_secs": self.cpu_secs,
            "cpu_secs_per_million_events": self.cpu_per_million(),
            "events_per_cpu_sec": self.events_per_cpu_sec(),
            "peak_rss_mib": self.peak_rss_mib,
            "windows_emitted": self.windows_emitted,
            "windows_expected": self.windows_expected,
            "windows_right": self.windows_right,
            "late_events_dropped": self.late_events_dropped,
            "all_right": self.all_right(),
            "problems": self.problems,
            "reported": self.report,
        })
    }
}

/// Runs the reference job over `loaded` (in topic_app_events).
pub async fn run(
    env: &Env,
    python: &Path,
    guarantee: Guarantee,
    loaded: &Loaded,
) -> Result<RefRun> {
    let group = format!("bench-quix-{}-{}", guarantee.short(), std::process::id());
    let state_dir = env.stack.root().join(format!("quix-state-{group}"));
    let _ = std::fs::remove_dir_all(&state_dir);
    recreate_output(&env.brokers).await?;
    let log = env.logs.join(format!("quix-{}.log", guarantee.short()));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let mut command = tokio::process::Command::new(python);
    command
        .arg(reference_dir().join("app_events_quix.py"))
        .args(["--brokers", &env.brokers])
        .args(["--input-topic", platform::topics::APP_EVENTS.name])
        .args(["--output-topic", OUTPUT_TOPIC])
        .args(["--group", &group])
        .args(["--expect", &loaded.records.to_string()])
        .arg("--state-dir")
        .arg(&state_dir)
        .args(["--timeout", &(600 + loaded.records / 1_000).to_string()]);
    if guarantee == Guarantee::ExactlyOnce {
        command.arg("--exactly-once");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let started = Instant::now();
    let output = command
        .output()
        .await
        .context("running app_events_quix.py")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| {
            format!(
                "app_events_quix.py printed no result ({}, after {:.0} s): {}",
                output.status,
                started.elapsed().as_secs_f64(),
                crate::consumers::log_summary(&log)
            )
        })?;
    let report: Value = serde_json::from_str(line).context("parsing the reference's output")?;
    if !output.status.success() || report["complete"] != json!(true) {
        bail!("the reference did not complete ({}): {line}", output.status);
    }
    let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
    let windows_emitted = number("windows_emitted") as u64;
    let (windows_right, problems) =
        read_and_check(&env.brokers, loaded, windows_emitted as usize).await?;
    drop_internal_topics(&env.brokers, &group).await?;
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(RefRun {
        guarantee,
        events: number("events") as u64,
        wall_secs: number("wall_seconds"),
        cpu_secs: number("cpu_seconds"),
        peak_rss_mib: number("peak_rss_kib") / 1024.0,
        windows_emitted,
        late_events_dropped: number("late_events_dropped") as u64,
        windows_expected: loaded.expected.groups().count(),
        windows_right,
        problems,
        report,
    })
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    platform::kafka::client_config(brokers)
        .create()
        .context("creating an admin client")
}

/// A fresh, empty output topic (6 partitions, with the retention.ms quixstreams wants).
async fn recreate_output(brokers: &str) -> Result<()> {
    super::delete_topics(brokers, &[OUTPUT_TOPIC]).await?;
    let admin = admin(brokers)?;
    let topic =
        NewTopic::new(OUTPUT_TOPIC, 6, TopicReplication::Fixed(1)).set("retention.ms", "86400000");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        result.map_err(|(t, code)| anyhow::anyhow!("creating {t}: {code}"))?;
    }
    Ok(())
}

/// quixstreams' repartition and changelog topics of the run (named after its group): they
/// would otherwise stay in the broker's memory for the rest of the bench.
async fn drop_internal_topics(brokers: &str, group: &str) -> Result<()> {
    let admin = admin(brokers)?;
    let names: Vec<String> = {
        let metadata = tokio::task::block_in_place(|| {
            admin.inner().fetch_metadata(None, Duration::from_secs(10))
        })?;
        metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|n| n.contains(group))
            .collect()
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    super::delete_topics(brokers, &names).await
}

/// Reads the reference's output (read_committed) and counts the windows whose event count and
/// unique users are the expected ones.
async fn read_and_check(
    brokers: &str,
    loaded: &Loaded,
    emitted: usize,
) -> Result<(usize, Vec<String>)> {
    let brokers = brokers.to_string();
    let records = tokio::task::spawn_blocking(move || -> Result<Vec<Value>> {
        let consumer: BaseConsumer = platform::kafka::client_config(&brokers)
            .set(
                "group.id",
                format!("bench-quix-check-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..6 {
            assignment.add_partition_offset(OUTPUT_TOPIC, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while records.len() < emitted && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message?;
                let value: Value = serde_json::from_slice(message.payload().unwrap_or_default())
                    .context("a reference result is not JSON")?;
                records.push(value);
            }
        }
        Ok(records)
    })
    .await??;
    let want: HashMap<(i64, String), (u64, u64)> = loaded
        .expected
        .groups()
        .map(|r| {
            (
                (r.window_start, r.group.clone()),
                (r.events, r.unique_users),
            )
        })
        .collect();
    let mut right = 0;
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        let key = (
            r["window_start"].as_i64().unwrap_or(-1),
            format!(
                "{}|{}",
                r["event_type"].as_str().unwrap_or(""),
                r["source"].as_str().unwrap_or("")
            ),
        );
        let got = (
            r["event_count"].as_u64().unwrap_or(u64::MAX),
            r["unique_users"].as_u64().unwrap_or(u64::MAX),
        );
        if !seen.insert(key.clone()) {
            if problems.len() < 10 {
                problems.push(format!("{key:?} emitted twice"));
            }
            continue;
        }
        match want.get(&key) {
            Some(w) if *w == got => right += 1,
            Some(w) => {
                if problems.len() < 10 {
                    problems.push(format!(
                        "{key:?}: (events, unique users) {got:?}, expected {w:?}"
                    ));
                }
            }
            None => {
                if problems.len() < 10 {
                    problems.push(format!("{key:?}: not an expected window"));
                }
            }
        }
    }
    if records.len() < emitted {
        problems.push(format!(
            "read {} of the {emitted} results it reported",
            records.len()
        ));
    }
    Ok((right, problems))
}
