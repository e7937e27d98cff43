//! Reading topic_processed_events while a processor runs: every result is noted with the moment
//! it became readable (read_committed, short fetch waits), decoded with the ProcessedResult
//! schema, and compared with what the input says it must be.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::load::{Expected, ExpectedResult};

/// One result as read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    /// Wall clock when it was read, in ms since the epoch (fractional).
    pub read_at_ms: f64,
    pub window_start: i64,
    pub window_end: i64,
    pub events: u64,
    pub unique_users: Option<u64>,
    pub unique_users_exact: Option<bool>,
}

/// What the reader thread shares: results so far, and when the last expected one arrived.
#[derive(Default)]
struct Shared {
    seen: Vec<Seen>,
    complete_at: Option<Instant>,
    error: Option<String>,
}

/// A thread reading the results topic from its beginning.
pub struct Reader {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

impl Reader {
    /// Starts reading `topic` (all `partitions`, from the beginning); `expected` are the ids
    /// whose arrival completes the run (none: never complete, collect only).
    pub fn start(
        brokers: &str,
        topic: &str,
        partitions: i32,
        expected: HashSet<String>,
    ) -> Result<Reader> {
        let consumer: BaseConsumer = platform::kafka::client_config(brokers)
            .set("group.id", format!("bench-results-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // The broker answers a fetch as soon as records are there, or after this: a short
            // wait measures when a result is readable, not librdkafka's default 500 ms.
            .set("fetch.wait.max.ms", "5")
            .create()
            .context("creating the results reader")?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment).context("assigning")?;
        let schema = platform::schemas::parse(platform::schemas::PROCESSED_RESULT)
            .context("parsing ProcessedResult.avsc")?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("results-reader".into())
                .spawn(move || read_loop(consumer, schema, expected, shared, stop))?
        };
        Ok(Reader {
            shared,
            stop,
            handle: Some(handle),
        })
    }

    /// When the last expected result was read, if it was.
    pub fn complete_at(&self) -> Option<Instant> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .complete_at
    }

    pub fn error(&self) -> Option<String> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .clone()
    }

    pub fn seen_count(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    /// How many of `ids` have not been read yet.
    pub fn missing<'a>(&self, ids: impl Iterator<Item = &'a String>) -> usize {
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let seen: HashSet<&str> = shared.seen.iter().map(|s| s.id.as_str()).collect();
        ids.filter(|id| !seen.contains(id.as_str())).count()
    }

    /// Stops reading and returns every result read, in order.
    pub fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        std::mem::take(&mut self.shared.lock().unwrap_or_else(|p| p.into_inner()).seen)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn read_loop(
    consumer: BaseConsumer,
    schema: Schema,
    mut missing: HashSet<String>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
) {
    let track = !missing.is_empty();
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let read_at = Instant::now();
        let read_at_ms = now_ms();
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                shared.lock().unwrap_or_else(|p| p.into_inner()).error =
                    Some(format!("reading results: {e}"));
                continue;
            }
        };
        let seen = match decode(&schema, message.payload().unwrap_or_default(), read_at_ms) {
            Ok(seen) => seen,
            Err(e) => {
                shared.lock().unwrap_or_else(|p| p.into_inner()).error =
                    Some(format!("a result does not decode: {e:#}"));
                continue;
            }
        };
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        if track && missing.remove(&seen.id) && missing.is_empty() {
            shared.complete_at = Some(read_at);
        }
        shared.seen.push(seen);
    }
}

fn decode(schema: &Schema, payload: &[u8], read_at_ms: f64) -> Result<Seen> {
    let (_, mut datum) = platform::avro::split_wire_format(payload)?;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()?
        .read_value(&mut datum)?;
    let json = platform::avro::to_json(&value);
    Ok(Seen {
        id: json["result_id"]
            .as_str()
            .context("no result_id")?
            .to_string(),
        read_at_ms,
        window_start: json["window_start"].as_i64().context("no window_start")?,
        window_end: json["window_end"].as_i64().context("no window_end")?,
        events: json["events"].as_u64().context("no events")?,
        unique_users: json["unique_users"].as_u64(),
        unique_users_exact: json["unique_users_exact"].as_bool(),
    })
}

/// The verdict on a run's results.
#[derive(Debug, Clone, Default)]
pub struct Check {
    pub expected: usize,
    pub found: usize,
    pub events_right: usize,
    pub users_exact_right: usize,
    pub users_exact_wrong: usize,
    pub users_estimated: usize,
    /// Estimates within the tolerance.
    pub users_estimated_ok: usize,
    /// Largest |estimate − true| / true over the estimated results, and its mean.
    pub max_estimate_error: f64,
    pub mean_estimate_error: f64,
    pub missing: Vec<String>,
    /// Results of the measured windows that should not exist.
    pub unexpected: Vec<String>,
    /// Results read more than once (the same id), and how many of them differed.
    pub duplicates: usize,
    pub conflicting_duplicates: usize,
    /// Human-readable differences (the first few).
    pub problems: Vec<String>,
}

/// Relative tolerance of a unique_users estimate (the sketch's standard error is 0.81 %).
pub const ESTIMATE_TOLERANCE: f64 = 0.03;

impl Check {
    pub fn all_right(&self) -> bool {
        self.expected > 0
            && self.found == self.expected
            && self.events_right == self.expected
            && self.users_exact_wrong == 0
            && self.users_estimated_ok == self.users_estimated
            && self.unexpected.is_empty()
            && self.conflicting_duplicates == 0
    }

    /// "right", "**WRONG**" (a value differs, or a result should not exist), or "right as far
    /// as read" with how many are missing.
    pub fn verdict(&self) -> String {
        let values_right = self.events_right == self.found
            && self.users_exact_wrong == 0
            && self.users_estimated_ok == self.users_estimated
            && self.unexpected.is_empty()
            && self.conflicting_duplicates == 0;
        match (values_right, self.missing.len()) {
            (false, _) => "**WRONG**".into(),
            (true, 0) if self.expected > 0 => "right".into(),
            (true, missing) => format!("right as far as read; **{missing} missing**"),
        }
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}/{} results present; events right in {}/{}; unique_users: {} exact and equal, {} estimated ({} within {:.0} %, max error {:.2} %, mean {:.2} %)",
            self.found,
            self.expected,
            self.events_right,
            self.expected,
            self.users_exact_right,
            self.users_estimated,
            self.users_estimated_ok,
            ESTIMATE_TOLERANCE * 100.0,
            self.max_estimate_error * 100.0,
            self.mean_estimate_error * 100.0
        );
        if self.users_exact_wrong > 0 {
            s += &format!("; {} exact counts WRONG", self.users_exact_wrong);
        }
        if !self.unexpected.is_empty() {
            s += &format!("; {} unexpected results", self.unexpected.len());
        }
        if self.duplicates > 0 {
            s += &format!(
                "; {} read twice ({} with different values)",
                self.duplicates, self.conflicting_duplicates
            );
        }
        s
    }

    pub fn json(&self) -> Value {
        json!({
            "all_right": self.all_right(),
            "expected": self.expected,
            "found": self.found,
            "events_right": self.events_right,
            "unique_users_exact_right": self.users_exact_right,
            "unique_users_exact_wrong": self.users_exact_wrong,
            "unique_users_estimated": self.users_estimated,
            "unique_users_estimated_within_tolerance": self.users_estimated_ok,
            "estimate_tolerance": ESTIMATE_TOLERANCE,
            "max_estimate_error": self.max_estimate_error,
            "mean_estimate_error": self.mean_estimate_error,
            "missing": self.missing.iter().take(20).collect::<Vec<_>>(),
            "unexpected": self.unexpected.iter().take(20).collect::<Vec<_>>(),
            "duplicates": self.duplicates,
            "conflicting_duplicates": self.conflicting_duplicates,
            "problems": self.problems,
        })
    }
}

/// Compares the results read with the expected ones. `in_scope` picks the windows the check
/// covers (a result of such a window that is not expected is an error).
pub fn check(seen: &[Seen], expected: &Expected, in_scope: impl Fn(i64) -> bool) -> Check {
    let mut first: BTreeMap<&str, &Seen> = BTreeMap::new();
    let mut check = Check {
        expected: expected.results.len(),
        ..Check::default()
    };
    for s in seen {
        match first.get(s.id.as_str()) {
            None => {
                first.insert(&s.id, s);
            }
            Some(earlier) => {
                check.duplicates += 1;
                if (earlier.events, earlier.unique_users) != (s.events, s.unique_users) {
                    check.conflicting_duplicates += 1;
                    note(
                        &mut check.problems,
                        format!("{} read twice with different values", s.id),
                    );
                }
            }
        }
    }
    let mut errors = Vec::new();
    for (id, want) in &expected.results {
        let Some(got) = first.get(id.as_str()) else {
            check.missing.push(id.clone());
            continue;
        };
        check.found += 1;
        compare(&mut check, &mut errors, id, want, got);
    }
    for (id, s) in &first {
        if !expected.results.contains_key(*id) && in_scope(s.window_start) {
            check.unexpected.push(id.to_string());
        }
    }
    if !errors.is_empty() {
        check.max_estimate_error = errors.iter().copied().fold(0.0, f64::max);
        check.mean_estimate_error = errors.iter().sum::<f64>() / errors.len() as f64;
    }
    if !check.missing.is_empty() {
        note(
            &mut check.problems,
            format!(
                "{} results missing, e.g. {}",
                check.missing.len(),
                check.missing[0]
            ),
        );
    }
    check
}

fn compare(check: &mut Check, errors: &mut Vec<f64>, id: &str, want: &ExpectedResult, got: &Seen) {
    if got.events == want.events && got.window_end == want.window_end {
        check.events_right += 1;
    } else {
        note(
            &mut check.problems,
            format!(
                "{id}: events {} (expected {}), window_end {} (expected {})",
                got.events, want.events, got.window_end, want.window_end
            ),
        );
    }
    let users = got.unique_users.unwrap_or(0);
    match got.unique_users_exact {
        Some(false) => {
            check.users_estimated += 1;
            let error = if want.unique_users == 0 {
                if users == 0 { 0.0 } else { 1.0 }
            } else {
                (users as f64 - want.unique_users as f64).abs() / want.unique_users as f64
            };
            errors.push(error);
            if error <= ESTIMATE_TOLERANCE {
                check.users_estimated_ok += 1;
            } else {
                note(
                    &mut check.problems,
                    format!(
                        "{id}: unique_users estimate {users}, true {} ({:.2} % off)",
                        want.unique_users,
                        error * 100.0
                    ),
                );
            }
        }
        _ => {
            if users == want.unique_users {
                check.users_exact_right += 1;
            } else {
                check.users_exact_wrong += 1;
                note(
                    &mut check.problems,
                    format!(
                        "{id}: unique_users {users} marked exact, true {}",
                        want.unique_users
                    ),
                );
            }
        }
    }
}

fn note(problems: &mut Vec<String>, problem: String) {
    if problems.len() < 10 {
        problems.push(problem);
    }
}
