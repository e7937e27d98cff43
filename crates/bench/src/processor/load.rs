//! The app-events input of the processor benchmark: seeded AppEvent records in Confluent wire
//! format, produced with one batching producer (no waiting on single deliveries), and what a
//! correct app-events job must emit for them, computed from the same records.
//!
//! The records look like `bench/processor/reference/produce_app_events.py`'s: 17 (event_type,
//! source) kinds with app traffic weighted above booking-system events, user ids drawn from a
//! fixed population (null for 10 %), sessions, bookings, devices and properties. Each record is
//! keyed `event_type|source`, and every kind lives in one partition (the kinds are spread over
//! the partitions by weight), so each key's records are in event-time order in one partition:
//! the quixstreams reference, which closes windows per key, is then exact too (see its
//! README). After the events, every kind gets one record far ahead in event time (a "closer"):
//! it moves every partition's highest event time past the last window, so the processor's
//! watermark passes every window without waiting for the idle timeout, and the reference
//! closes every key's windows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apache_avro::types::Value;
use platform::avro::RegisteredSchema;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

/// The app-events job's default window (`--app-events-window-secs 300`).
pub const WINDOW_MS: i64 = 300_000;
/// 2026-01-01T00:00:00Z, a window boundary.
pub const START_MS: i64 = 1_767_225_600_000;

const APP_TYPES: [&str; 7] = [
    "page_view",
    "click",
    "search",
    "filter",
    "booking_view",
    "click_cta",
    "app_open",
];
const APP_SOURCES: [&str; 2] = ["MOBILE_APP", "WEB_APP"];
const BOOKING_TYPES: [&str; 3] = ["booking_created", "booking_confirmed", "payment_captured"];
const SOURCES: [&str; 3] = ["MOBILE_APP", "WEB_APP", "BOOKING_SYSTEM"];
const DEVICE_TYPES: [&str; 6] = [
    "IOS",
    "ANDROID",
    "DESKTOP",
    "TABLET",
    "MOBILE_WEB",
    "SERVER",
];

/// One (event_type, source) pair: the group of an APP_EVENT_COUNT result and the record key.
#[derive(Debug, Clone)]
pub struct Kind {
    pub event_type: &'static str,
    pub source: &'static str,
    /// `event_type|source`
    pub key: String,
    weight: u64,
    pub partition: i32,
}

/// The 17 kinds, each given a partition: heaviest first, each to the least loaded partition,
/// so every partition gets at least one kind (with 6 partitions) and about the same traffic.
pub fn kinds(partitions: i32) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::new();
    for t in APP_TYPES {
        for s in APP_SOURCES {
            kinds.push(kind(t, s, 6));
        }
    }
    for t in BOOKING_TYPES {
        kinds.push(kind(t, "BOOKING_SYSTEM", 2));
    }
    let mut load = vec![0u64; usize::try_from(partitions.max(1)).unwrap_or(1)];
    for k in kinds.iter_mut() {
        let (p, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(i, l)| (**l, *i))
            .unwrap_or((0, &0));
        load[p] += k.weight;
        k.partition = i32::try_from(p).unwrap_or(0);
    }
    kinds
}

fn kind(event_type: &'static str, source: &'static str, weight: u64) -> Kind {
    Kind {
        event_type,
        source,
        key: format!("{event_type}|{source}"),
        weight,
        partition: 0,
    }
}

/// splitmix64: small, fast and deterministic (the data are a function of the seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A kind index by weight.
    pub fn kind(&mut self, kinds: &[Kind]) -> usize {
        let total: u64 = kinds.iter().map(|k| k.weight).sum();
        let mut r = self.below(total);
        for (i, k) in kinds.iter().enumerate() {
            if r < k.weight {
                return i;
            }
            r -= k.weight;
        }
        kinds.len() - 1
    }
}

/// Who the events are from.
#[derive(Debug, Clone, Copy)]
pub enum Users {
    /// Drawn uniformly from `population` users; none for a `null_ratio` share of the events.
    Drawn { population: u64, null_ratio: f64 },
    /// Every event from a new user (the memory measurement).
    AllDistinct,
}

/// A backlog: `events` records with event times spread evenly over `span_ms` from
/// `START_MS` (event i at START_MS + i·span/events), then one closer per kind.
#[derive(Debug, Clone)]
pub struct Spec {
    pub events: u64,
    pub users: Users,
    pub span_ms: i64,
    pub seed: u64,
}

impl Spec {
    /// Event time of the closers: an hour after the last window, so every window of the
    /// backlog ends before the watermark they allow (closer time − allowed lateness).
    pub fn closer_time(&self) -> i64 {
        START_MS + self.span_ms + 3_600_000
    }
}

/// One result the app-events job must emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedResult {
    pub window_start: i64,
    pub window_end: i64,
    /// `event_type|source`, or empty for APP_EVENT_TOTALS.
    pub group: String,
    pub events: u64,
    pub unique_users: u64,
}

/// The results a correct job emits, by result id
/// (`app_events/APP_EVENT_COUNT/<window_start>/<event_type>|<source>`,
/// `app_events/APP_EVENT_TOTALS/<window_start>/`).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub results: BTreeMap<String, ExpectedResult>,
}

impl Expected {
    /// The APP_EVENT_COUNT results only (what the reference job emits, keyed by
    /// (window_start, `event_type|source`)).
    pub fn groups(&self) -> impl Iterator<Item = &ExpectedResult> {
        self.results.values().filter(|r| !r.group.is_empty())
    }

    pub fn windows(&self) -> usize {
        self.results
            .values()
            .map(|r| r.window_start)
            .collect::<HashSet<_>>()
            .len()
    }
}

pub fn result_id(window_start: i64, group: &str) -> String {
    if group.is_empty() {
        format!("app_events/APP_EVENT_TOTALS/{window_start}/")
    } else {
        format!("app_events/APP_EVENT_COUNT/{window_start}/{group}")
    }
}

/// Counts per (window, group) and the distinct users of each, while records are generated.
pub struct Tally {
    window_ms: i64,
    counts: HashMap<(i64, String), (u64, HashSet<u64>)>,
}

impl Tally {
    pub fn new(window_ms: i64) -> Tally {
        Tally {
            window_ms,
            counts: HashMap::new(),
        }
    }

    pub fn add(&mut self, kind: &Kind, time: i64, user: Option<u64>) {
        let start = time - time.rem_euclid(self.window_ms);
        for group in [kind.key.as_str(), ""] {
            let entry = self
                .counts
                .entry((start, group.to_string()))
                .or_insert_with(|| (0, HashSet::new()));
            entry.0 += 1;
            if let Some(u) = user {
                entry.1.insert(u);
            }
        }
    }

    /// The expected results of the windows that satisfy `keep` (by window start).
    pub fn expected(self, keep: impl Fn(i64) -> bool) -> Expected {
        let window_ms = self.window_ms;
        Expected {
            results: self
                .counts
                .into_iter()
                .filter(|((start, _), _)| keep(*start))
                .map(|((start, group), (events, users))| {
                    (
                        result_id(start, &group),
                        ExpectedResult {
                            window_start: start,
                            window_end: start + window_ms,
                            group,
                            events,
                            unique_users: users.len() as u64,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Builds AppEvent records.
#[derive(Clone)]
pub struct Encoder {
    schema: std::sync::Arc<RegisteredSchema>,
}

impl Encoder {
    pub fn new(schema: RegisteredSchema) -> Encoder {
        Encoder {
            schema: std::sync::Arc::new(schema),
        }
    }

    /// One AppEvent of `kind` at `time` from `user` (index into the population), in Confluent
    /// wire format.
    pub fn event(
        &self,
        rng: &mut Rng,
        kind: &Kind,
        time: i64,
        user: Option<u64>,
    ) -> Result<Vec<u8>> {
        let opt = |s: Option<String>| match s {
            Some(s) => Value::Union(1, Box::new(Value::String(s))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let source_index = SOURCES.iter().position(|s| *s == kind.source).unwrap_or(0);
        let session = match user {
            // A few sessions per user and window, stable for a while.
            Some(u) => format!("sess-{:06}-{}", u, (time / WINDOW_MS) % 7),
            None => format!("anon-{:012x}", rng.next_u64() >> 16),
        };
        let booking = (kind.source == "BOOKING_SYSTEM" || kind.event_type == "booking_view")
            .then(|| format!("bk-{:08}", rng.below(100_000_000)));
        let (device_type, os, app, agent): (&str, Option<&str>, Option<&str>, Option<&str>) =
            match (kind.source, rng.below(2)) {
                ("MOBILE_APP", 0) => ("IOS", Some("iOS 18.1"), Some("4.12.0"), None),
                ("MOBILE_APP", _) => ("ANDROID", Some("Android 15"), Some("4.12.0"), None),
                ("WEB_APP", 0) => (
                    "DESKTOP",
                    None,
                    None,
                    Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"),
                ),
                ("WEB_APP", _) => (
                    "MOBILE_WEB",
                    None,
                    None,
                    Some("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1) Safari/604.1"),
                ),
                _ => ("SERVER", None, None, None),
            };
        let device_index = DEVICE_TYPES
            .iter()
            .position(|d| *d == device_type)
            .unwrap_or(0);
        let mut properties = HashMap::new();
        properties.insert(
            "screen".to_string(),
            Value::String(kind.event_type.to_string()),
        );
        if kind.event_type == "search" {
            let q = ["hanoi", "da nang", "hoi an", "saigon", "phu quoc"][rng.below(5) as usize];
            properties.insert("query".into(), Value::String(q.into()));
        } else if booking.is_some() {
            properties.insert(
                "amount".into(),
                Value::String(format!("{}.00", 50 + rng.below(1950))),
            );
            properties.insert("currency".into(), Value::String("USD".into()));
        }
        let event_id = {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | (b >> 48) & 0x3fff,
                b & 0xffff_ffff_ffff
            )
        };
        let value = Value::Record(vec![
            ("event_id".into(), Value::String(event_id)),
            (
                "event_type".into(),
                Value::String(kind.event_type.to_string()),
            ),
            (
                "source".into(),
                Value::Enum(source_index as u32, kind.source.to_string()),
            ),
            ("user_id".into(), opt(user.map(|u| format!("user-{u:07}")))),
            ("session_id".into(), opt(Some(session))),
            ("booking_id".into(), opt(booking)),
            (
                "device".into(),
                Value::Union(
                    1,
                    Box::new(Value::Record(vec![
                        (
                            "device_type".into(),
                            Value::Enum(device_index as u32, device_type.to_string()),
                        ),
                        ("os_version".into(), opt(os.map(String::from))),
                        ("app_version".into(), opt(app.map(String::from))),
                        ("user_agent".into(), opt(agent.map(String::from))),
                    ])),
                ),
            ),
            ("timestamp".into(), Value::TimestampMillis(time)),
            ("received_at".into(), Value::TimestampMillis(time + 150)),
            ("properties".into(), Value::Map(properties)),
        ]);
        self.schema
            .encode(value)
            .context("encoding an AppEvent (does the generator still match the schema?)")
    }
}

/// Counts delivery failures (the producer never waits on single deliveries).
#[derive(Default)]
pub struct Deliveries {
    pub failed: AtomicU64,
    pub delivered: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A batching producer: idempotent (per-partition order kept through retries), large batches,
/// a deep queue; `linger_ms` trades latency for batching.
pub fn producer(brokers: &str, linger_ms: u32) -> Result<ThreadedProducer<Deliveries>> {
    platform::kafka::client_config(brokers)
        .set("client.id", "bench-loader")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none")
        .create_with_context(Deliveries::default())
        .context("creating the loader's producer")
}

/// Sends one record, waiting (briefly) while the queue is full.
pub fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    partition: i32,
    key: &str,
    payload: &[u8],
    timestamp: i64,
) -> Result<()> {
    let mut record = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(payload)
        .timestamp(timestamp);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((error, _)) => return Err(error).context("producing an app event"),
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    /// Records written: the events and the closers.
    pub records: u64,
    pub closers: u64,
    pub seconds: f64,
    pub expected: Expected,
}

impl Loaded {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Writes the backlog of `spec` to topic_app_events and returns what the job must emit.
/// Blocking (run it with spawn_blocking).
pub fn write_backlog(
    brokers: &str,
    encoder: &Encoder,
    partitions: i32,
    spec: &Spec,
) -> Result<Loaded> {
    let topic = platform::topics::APP_EVENTS.name;
    let kinds = kinds(partitions);
    let producer = producer(brokers, 20)?;
    let mut rng = Rng::new(spec.seed);
    let mut tally = Tally::new(WINDOW_MS);
    let started = Instant::now();
    let events = spec.events.max(1);
    for i in 0..spec.events {
        let time = START_MS
            + i64::try_from(u128::from(i) * spec.span_ms as u128 / u128::from(events)).unwrap_or(0);
        let kind = &kinds[rng.kind(&kinds)];
        let user = match spec.users {
            Users::AllDistinct => Some(i),
            Users::Drawn {
                population,
                null_ratio,
            } => (!rng.chance(null_ratio)).then(|| rng.below(population)),
        };
        let payload = encoder.event(&mut rng, kind, time, user)?;
        send(&producer, topic, kind.partition, &kind.key, &payload, time)?;
        tally.add(kind, time, user);
    }
    let closer_time = spec.closer_time();
    for kind in &kinds {
        let payload = encoder.event(&mut rng, kind, closer_time, None)?;
        send(
            &producer,
            topic,
            kind.partition,
            &kind.key,
            &payload,
            closer_time,
        )?;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("waiting for the backlog's deliveries")?;
    let seconds = started.elapsed().as_secs_f64();
    let records = spec.events + kinds.len() as u64;
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    let delivered = context.delivered.load(Ordering::Relaxed);
    if failed > 0 || delivered != records {
        bail!("{failed} records of the backlog were not delivered ({delivered} of {records})");
    }
    // The closers' own window never closes (no event comes after it).
    let expected = tally.expected(|start| start + WINDOW_MS <= START_MS + spec.span_ms);
    Ok(Loaded {
        spec: spec.clone(),
        records,
        closers: kinds.len() as u64,
        seconds,
        expected,
    })
}
