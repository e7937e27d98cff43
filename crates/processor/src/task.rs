//! Stage 2: the stateful task of one repartition partition. Deterministic: its outputs are a
//! function of the records of its partition, in order, so a task rebuilt from its changelog
//! and fed the same records again produces the same results with the same ids.
//!
//! Watermark of a stream (per task): the minimum, over the stream's input partitions that are
//! not idle, of the highest event time seen from that partition (from its data and its
//! progress records), minus the allowed lateness; when every partition is idle, the highest
//! event time of any. A partition the task has heard nothing from holds it back. It never
//! moves backwards. A window is final, and emitted once, when the watermark reaches its end.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::{
    config::Settings,
    output::{Alert, AlertKind, LateEvent, Output, ResultKind, Session, WindowResult},
    routed::{Body, Change, Lane, Op, Position, Routed, Source, Stream},
    sketch::{Distinct, hash_value},
};

/// Progress of one input partition as this task knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceProgress {
    pub next_offset: i64,
    pub max_event_time: Option<i64>,
    pub idle: bool,
}

/// The aggregate of one group in one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Agg {
    Counted {
        labels: Vec<String>,
        events: u64,
        users: Distinct,
    },
    Page {
        clicks: u64,
        interactions: u64,
        cells: BTreeMap<(i32, i32), u64>,
    },
    Session {
        clicks: u64,
        interactions: u64,
        pages: BTreeSet<String>,
        first: i64,
        last: i64,
    },
    Table {
        ops: BTreeMap<Op, u64>,
        /// Hashes of the change ids counted: a change delivered twice is counted once.
        seen: BTreeSet<u64>,
    },
    UserPayments {
        failed: u64,
    },
    Logs {
        levels: BTreeMap<String, u64>,
    },
}

/// What the key lane remembers of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub position: Position,
    pub live: bool,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub position: Position,
    pub status: Option<String>,
    pub event_time: i64,
    pub change_id: String,
    /// The booking-exists check still waits for the watermark.
    pub check_pending: bool,
    /// Failed-payment changes waiting for the watermark before being counted for the
    /// booking's user: (change id, event time).
    pub failed_pending: Vec<(String, i64)>,
}

/// What the booking-reference lane knows of a booking and the payments that name it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BookingRef {
    pub position: Option<Position>,
    pub known: bool,
    pub deleted_at: Option<i64>,
    pub user_id: Option<String>,
    pub payments: BTreeMap<String, PaymentRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExternalLatest {
    pub observed_at: i64,
    pub offset: i64,
    pub partition: i32,
}

/// Changelog key of one state entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateKey {
    Source(Stream, i32),
    Dedup(Lane, Stream, i32),
    Watermark(Stream),
    Window(Lane, i64, String),
    Key(String),
    Booking(String),
    External(String),
    DerivedSeq,
}

/// Changelog value of one state entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StateValue {
    Source(SourceProgress),
    Offset(i64),
    Time(i64),
    Window(Agg),
    Key(KeyState),
    Booking(BookingRef),
    External(ExternalLatest),
}

/// Counts since the engine last read them (flushed to metrics once per commit, not per record).
#[derive(Debug, Default, Clone)]
pub struct TaskStats {
    pub records: BTreeMap<&'static str, u64>,
    pub duplicates: u64,
    pub late: u64,
    pub windows_emitted: BTreeMap<&'static str, u64>,
    pub alerts: u64,
}

pub struct Task {
    partition: i32,
    settings: Settings,
    /// Input partitions per stream (the watermark waits for every one of them).
    stream_partitions: HashMap<Stream, i32>,
    sources: HashMap<(Stream, i32), SourceProgress>,
    dedup: HashMap<(Lane, Stream, i32), i64>,
    watermarks: HashMap<Stream, i64>,
    windows: HashMap<Lane, BTreeMap<i64, HashMap<String, Agg>>>,
    keys: HashMap<String, KeyState>,
    bookings: HashMap<String, BookingRef>,
    /// (event time, booking) pairs with checks waiting for the CDC watermark; rebuilt from
    /// `bookings` on restore.
    pending: BTreeSet<(i64, String)>,
    external: HashMap<String, ExternalLatest>,
    derived_seq: i64,
    dirty: BTreeSet<StateKey>,
    pub stats: TaskStats,
}

const WINDOWED: [Lane; 7] = [
    Lane::AppEventGroups,
    Lane::AppEventTotals,
    Lane::PageClicks,
    Lane::Sessions,
    Lane::CdcTables,
    Lane::UserPayments,
    Lane::Logs,
];

fn stream_of(lane: Lane) -> Stream {
    match lane {
        Lane::AppEventGroups | Lane::AppEventTotals => Stream::AppEvents,
        Lane::PageClicks | Lane::Sessions => Stream::Clickstream,
        Lane::CdcKeys | Lane::CdcTables | Lane::BookingRefs | Lane::UserPayments => Stream::Cdc,
        Lane::Logs => Stream::Logs,
        Lane::External => Stream::External,
    }
}

/// Booking status changes the schema's state machine allows (sql/init.sql, workload model).
fn booking_transition_allowed(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("pending", "confirmed")
                | ("pending", "cancelled")
                | ("confirmed", "checked_in")
                | ("confirmed", "cancelled")
                | ("checked_in", "completed")
        )
}

fn state_topic(table: &str) -> Option<&'static str> {
    use platform::topics;
    match table {
        "public.users" => Some(topics::USER_STATE.name),
        "public.bookings" => Some(topics::BOOKING_STATE.name),
        "public.payments" => Some(topics::CDC_STATE.name),
        _ => None,
    }
}

/// The results of one window of `lane` for `group`: what a task emits when the window closes,
/// and what the query layer shows while it is still open (from the changelog's copy of `agg`).
pub fn window_results(
    lane: Lane,
    start: i64,
    end: i64,
    group: String,
    agg: Agg,
    heatmap_cell_px: u32,
) -> Vec<WindowResult> {
    let job = stream_of(lane).job();
    let mut results = Vec::new();
    match agg {
        Agg::Counted {
            labels,
            events,
            mut users,
        } => {
            let (kind, group) = if lane == Lane::AppEventGroups {
                let mut labels = labels.into_iter();
                (
                    ResultKind::AppEventCount,
                    vec![
                        ("event_type", labels.next().unwrap_or_default()),
                        ("source", labels.next().unwrap_or_default()),
                    ],
                )
            } else {
                (ResultKind::AppEventTotals, Vec::new())
            };
            let mut result = WindowResult::new(job, kind, start, end, group, events);
            result.unique_users = Some(users.count());
            results.push(result);
        }
        Agg::Page {
            clicks,
            interactions,
            cells,
        } => {
            let mut result = WindowResult::new(
                job,
                ResultKind::PageClicks,
                start,
                end,
                vec![("page_url", group.clone())],
                clicks,
            );
            result.interactions = Some(interactions);
            results.push(result);
            let mut heatmap = WindowResult::new(
                job,
                ResultKind::PageHeatmap,
                start,
                end,
                vec![("page_url", group)],
                clicks,
            );
            heatmap.heatmap = Some((
                heatmap_cell_px,
                cells.into_iter().map(|((x, y), n)| (x, y, n)).collect(),
            ));
            results.push(heatmap);
        }
        Agg::Session {
            clicks,
            interactions,
            pages,
            first,
            last,
        } => {
            let mut result = WindowResult::new(
                job,
                ResultKind::SessionEngagement,
                start,
                end,
                vec![("session_id", group)],
                clicks,
            );
            result.session = Some(Session {
                interactions,
                pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
                first_event: first,
                last_event: last,
            });
            results.push(result);
        }
        Agg::Table { ops, .. } => {
            for (op, count) in ops {
                results.push(WindowResult::new(
                    job,
                    ResultKind::CdcOperations,
                    start,
                    end,
                    vec![
                        ("table", group.clone()),
                        ("operation", op.as_str().to_string()),
                    ],
                    count,
                ));
            }
        }
        Agg::UserPayments { .. } => {}
        Agg::Logs { levels } => {
            let total: u64 = levels.values().sum();
            let errors = levels.get("ERROR").copied().unwrap_or(0)
                + levels.get("FATAL").copied().unwrap_or(0);
            for (level, count) in levels {
                results.push(WindowResult::new(
                    job,
                    ResultKind::LogLevelCount,
                    start,
                    end,
                    vec![("service", group.clone()), ("level", level)],
                    count,
                ));
            }
            let mut rate = WindowResult::new(
                job,
                ResultKind::LogErrorRate,
                start,
                end,
                vec![("service", group)],
                total,
            );
            rate.error_rate = Some(if total == 0 {
                0.0
            } else {
                errors as f64 / total as f64
            });
            results.push(rate);
        }
    }
    results
}

/// The window length of `lane` under `settings`, in ms.
pub fn window_ms(settings: &Settings, lane: Lane) -> i64 {
    match stream_of(lane) {
        Stream::AppEvents => settings.app_events_window_ms,
        Stream::Clickstream => settings.clickstream_window_ms,
        Stream::Cdc => settings.cdc_window_ms,
        Stream::Logs => settings.logs_window_ms,
        Stream::External => i64::MAX,
    }
    .max(1)
}

impl Task {
    pub fn new(
        partition: i32,
        settings: Settings,
        stream_partitions: HashMap<Stream, i32>,
    ) -> Task {
        Task {
            partition,
            settings,
            stream_partitions,
            sources: HashMap::new(),
            dedup: HashMap::new(),
            watermarks: HashMap::new(),
            windows: HashMap::new(),
            keys: HashMap::new(),
            bookings: HashMap::new(),
            pending: BTreeSet::new(),
            external: HashMap::new(),
            derived_seq: 0,
            dirty: BTreeSet::new(),
            stats: TaskStats::default(),
        }
    }

    fn window_ms(&self, lane: Lane) -> i64 {
        window_ms(&self.settings, lane)
    }

    pub fn watermark(&self, stream: Stream) -> Option<i64> {
        self.watermarks.get(&stream).copied()
    }

    /// Number of open windows and keyed entries held (the `processor_state_entries` gauge).
    pub fn state_entries(&self) -> usize {
        self.windows
            .values()
            .flat_map(|w| w.values())
            .map(HashMap::len)
            .sum::<usize>()
            + self.keys.len()
            + self.bookings.len()
            + self.external.len()
    }

    /// Applies one record of this task's repartition partition.
    pub fn apply(&mut self, routed: Routed, out: &mut Vec<Output>) {
        match routed {
            Routed::Progress {
                stream,
                partition,
                next_offset,
                max_event_time,
                idle,
            } => {
                let entry = self.sources.entry((stream, partition)).or_default();
                if next_offset >= entry.next_offset {
                    entry.next_offset = next_offset;
                    entry.idle = idle;
                }
                if let Some(t) = max_event_time {
                    entry.max_event_time = Some(entry.max_event_time.map_or(t, |m| m.max(t)));
                }
                self.dirty.insert(StateKey::Source(stream, partition));
                self.advance(stream, out);
            }
            Routed::Data {
                lane,
                source,
                event_time,
                body,
            } => {
                let dedup_key = (lane, source.stream, source.partition);
                if let Some(&seen) = self.dedup.get(&dedup_key)
                    && source.offset <= seen
                {
                    tracing::debug!(lane = lane.name(), ?source, seen, "duplicate dropped");
                    self.stats.duplicates += 1;
                    return;
                }
                self.dedup.insert(dedup_key, source.offset);
                self.dirty
                    .insert(StateKey::Dedup(lane, source.stream, source.partition));
                *self.stats.records.entry(lane.name()).or_default() += 1;
                if lane != Lane::UserPayments {
                    let entry = self
                        .sources
                        .entry((source.stream, source.partition))
                        .or_default();
                    entry.idle = false;
                    entry.next_offset = entry.next_offset.max(source.offset + 1);
                    entry.max_event_time = Some(
                        entry
                            .max_event_time
                            .map_or(event_time, |m| m.max(event_time)),
                    );
                    self.dirty
                        .insert(StateKey::Source(source.stream, source.partition));
                }
                self.data(lane, source, event_time, body, out);
                self.advance(source.stream, out);
            }
        }
    }

    fn candidate_watermark(&self, stream: Stream) -> Option<i64> {
        let partitions = *self.stream_partitions.get(&stream)?;
        let mut min_active: Option<i64> = None;
        let mut any_active = false;
        let mut max_any: Option<i64> = None;
        for p in 0..partitions {
            let progress = self.sources.get(&(stream, p))?;
            if let Some(t) = progress.max_event_time {
                max_any = Some(max_any.map_or(t, |m: i64| m.max(t)));
            }
            if !progress.idle {
                any_active = true;
                let t = progress.max_event_time?;
                min_active = Some(min_active.map_or(t, |m: i64| m.min(t)));
            }
        }
        let base = if any_active { min_active } else { max_any }?;
        Some(base.saturating_sub(self.settings.allowed_lateness_ms))
    }

    fn advance(&mut self, stream: Stream, out: &mut Vec<Output>) {
        let Some(candidate) = self.candidate_watermark(stream) else {
            return;
        };
        if self
            .watermarks
            .get(&stream)
            .is_some_and(|&w| w >= candidate)
        {
            return;
        }
        self.watermarks.insert(stream, candidate);
        self.dirty.insert(StateKey::Watermark(stream));
        for lane in WINDOWED {
            if stream_of(lane) == stream {
                self.close_windows(lane, candidate, out);
            }
        }
        if stream == Stream::Cdc {
            self.resolve_pending(candidate, out);
        }
    }

    /// How long after its end a window of `lane` stays open. Failed payments reach the user
    /// lane only once the CDC watermark passed them (they wait for the booking's user), so
    /// that lane keeps each window one more window long; its alerts fire when the threshold
    /// is crossed, not at the window's end.
    fn grace_ms(&self, lane: Lane) -> i64 {
        if lane == Lane::UserPayments {
            self.window_ms(lane)
        } else {
            0
        }
    }

    fn close_windows(&mut self, lane: Lane, watermark: i64, out: &mut Vec<Output>) {
        let size = self.window_ms(lane);
        let grace = self.grace_ms(lane);
        loop {
            let Some(windows) = self.windows.get_mut(&lane) else {
                return;
            };
            let Some((&start, _)) = windows.first_key_value() else {
                return;
            };
            if start.saturating_add(size).saturating_add(grace) > watermark {
                return;
            }
            let groups = windows.remove(&start).unwrap_or_default();
            let mut sorted: Vec<(String, Agg)> = groups.into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (group, agg) in sorted {
                self.dirty
                    .insert(StateKey::Window(lane, start, group.clone()));
                self.finish(lane, start, start.saturating_add(size), group, agg, out);
            }
        }
    }

    fn window_agg(
        &mut self,
        lane: Lane,
        start: i64,
        group: &str,
        init: impl FnOnce() -> Agg,
    ) -> &mut Agg {
        self.dirty
            .insert(StateKey::Window(lane, start, group.to_string()));
        self.windows
            .entry(lane)
            .or_default()
            .entry(start)
            .or_default()
            .entry(group.to_string())
            .or_insert_with(init)
    }

    /// The window of `event_time` in `lane`, or None (and a late-event record) when the
    /// watermark has already passed its end.
    fn window_for(
        &mut self,
        lane: Lane,
        source: Source,
        event_time: i64,
        out: &mut Vec<Output>,
    ) -> Option<i64> {
        let size = self.window_ms(lane);
        let start = event_time - event_time.rem_euclid(size);
        let stream = stream_of(lane);
        if let Some(watermark) = self.watermark(stream)
            && start
                .saturating_add(size)
                .saturating_add(self.grace_ms(lane))
                <= watermark
        {
            tracing::debug!(lane = lane.name(), ?source, event_time, watermark, "late");
            self.stats.late += 1;
            out.push(Output::Late(LateEvent {
                job: stream.job(),
                lane: lane.name(),
                source_topic: source.stream.topic(),
                source_partition: source.partition,
                source_offset: source.offset,
                event_time,
                window_start: start,
                watermark,
            }));
            return None;
        }
        Some(start)
    }

    fn data(&mut self, lane: Lane, source: Source, t: i64, body: Body, out: &mut Vec<Output>) {
        match (lane, body) {
            (
                Lane::AppEventGroups | Lane::AppEventTotals,
                Body::AppEvent {
                    event_type,
                    source: origin,
                    user,
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                let (group, labels) = if lane == Lane::AppEventGroups {
                    (format!("{event_type}|{origin}"), vec![event_type, origin])
                } else {
                    (String::new(), Vec::new())
                };
                if let Agg::Counted { events, users, .. } =
                    self.window_agg(lane, start, &group, || Agg::Counted {
                        labels,
                        events: 0,
                        users: Distinct::default(),
                    })
                {
                    *events += 1;
                    if let Some(u) = user {
                        users.insert_hash(u);
                    }
                }
            }
            (
                Lane::PageClicks,
                Body::Click {
                    page,
                    is_click,
                    x,
                    y,
                    ..
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                let cell = i32::try_from(self.settings.heatmap_cell_px).unwrap_or(i32::MAX);
                if let Agg::Page {
                    clicks,
                    interactions,
                    cells,
                } = self.window_agg(lane, start, &page, || Agg::Page {
                    clicks: 0,
                    interactions: 0,
                    cells: BTreeMap::new(),
                }) {
                    *interactions += 1;
                    if is_click {
                        *clicks += 1;
                        *cells
                            .entry((x.div_euclid(cell), y.div_euclid(cell)))
                            .or_default() += 1;
                    }
                }
            }
            (
                Lane::Sessions,
                Body::Click {
                    page,
                    session,
                    is_click,
                    ..
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                if let Agg::Session {
                    clicks,
                    interactions,
                    pages,
                    first,
                    last,
                } = self.window_agg(lane, start, &session, || Agg::Session {
                    clicks: 0,
                    interactions: 0,
                    pages: BTreeSet::new(),
                    first: t,
                    last: t,
                }) {
                    *interactions += 1;
                    if is_click {
                        *clicks += 1;
                    }
                    pages.insert(page);
                    *first = (*first).min(t);
                    *last = (*last).max(t);
                }
            }
            (Lane::CdcTables, Body::Change(change)) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                if let Agg::Table { ops, seen } =
                    self.window_agg(lane, start, &change.table, || Agg::Table {
                        ops: BTreeMap::new(),
                        seen: BTreeSet::new(),
                    })
                {
                    if seen.insert(hash_value(&change.change_id)) {
                        *ops.entry(change.op).or_default() += 1;
                    } else {
                        self.stats.duplicates += 1;
                    }
                }
            }
            (Lane::CdcKeys, Body::ChangeWithRecord { change, record }) => {
                self.key_change(*change, record, t, out);
            }
            (Lane::BookingRefs, Body::Change(change)) => self.booking_ref(*change, t),
            (
                Lane::UserPayments,
                Body::FailedPayment {
                    user_id,
                    payment_key,
                    change_id,
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                let threshold = self.settings.failed_payments_threshold;
                let size = self.window_ms(lane);
                let mut reached = false;
                if let Agg::UserPayments { failed } =
                    self.window_agg(lane, start, &user_id, || Agg::UserPayments { failed: 0 })
                {
                    *failed += 1;
                    reached = *failed == threshold;
                }
                if reached {
                    self.alert(
                        out,
                        Alert {
                            kind: AlertKind::FailedPayments,
                            id_suffix: format!("{user_id}/{start}"),
                            subject: format!("user {user_id}"),
                            message: format!(
                                "{threshold} failed payments for user {user_id} within the window starting {start} ({size} ms)"
                            ),
                            event_time: t,
                            window_start: Some(start),
                            details: BTreeMap::from([
                                ("last_payment".into(), payment_key),
                                ("last_change_id".into(), change_id),
                            ]),
                        },
                    );
                }
            }
            (
                Lane::Logs,
                Body::Log {
                    service,
                    level,
                    log_id,
                },
            ) => {
                if level == "FATAL" {
                    self.alert(
                        out,
                        Alert {
                            kind: AlertKind::FatalLog,
                            id_suffix: log_id.clone(),
                            subject: service.clone(),
                            message: format!("FATAL log line from {service}"),
                            event_time: t,
                            window_start: None,
                            details: BTreeMap::from([("log_id".into(), log_id)]),
                        },
                    );
                }
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                if let Agg::Logs { levels } = self.window_agg(lane, start, &service, || Agg::Logs {
                    levels: BTreeMap::new(),
                }) {
                    *levels.entry(level).or_default() += 1;
                }
            }
            (Lane::External, Body::External { entity, record }) => {
                let newer = self.external.get(&entity).is_none_or(|latest| {
                    (t, source.partition, source.offset)
                        > (latest.observed_at, latest.partition, latest.offset)
                });
                if newer {
                    self.external.insert(
                        entity.clone(),
                        ExternalLatest {
                            observed_at: t,
                            offset: source.offset,
                            partition: source.partition,
                        },
                    );
                    self.dirty.insert(StateKey::External(entity.clone()));
                    out.push(Output::State {
                        topic: platform::topics::EXTERNAL_STATE.name,
                        key: entity,
                        record: Some(record),
                    });
                }
            }
            (lane, body) => {
                // Stage 1 never routes these together; a record that does is from another
                // version of the processor. It is counted, not silently ignored.
                tracing::error!(
                    lane = lane.name(),
                    ?body,
                    "routed record with a body its lane does not take"
                );
                metrics::counter!("processor_misrouted_records_total").increment(1);
            }
        }
    }

    fn alert(&mut self, out: &mut Vec<Output>, alert: Alert) {
        self.stats.alerts += 1;
        out.push(Output::Alert(alert));
    }

    fn key_change(&mut self, change: Change, record: Vec<u8>, t: i64, out: &mut Vec<Output>) {
        if change.op == Op::Truncate {
            // A TRUNCATE reaches every task: each empties the rows of the table it holds.
            let prefix = format!("{}/", change.table);
            let mut gone: Vec<String> = self
                .keys
                .iter()
                .filter(|(k, s)| k.starts_with(&prefix) && s.live)
                .map(|(k, _)| k.clone())
                .collect();
            gone.sort();
            for key in gone {
                if let Some(state) = self.keys.get_mut(&key) {
                    state.live = false;
                    state.position = state.position.max(change.position);
                }
                self.dirty.insert(StateKey::Key(key.clone()));
                if let Some(topic) = state_topic(&change.table) {
                    out.push(Output::State {
                        topic,
                        key,
                        record: None,
                    });
                }
            }
            return;
        }
        let previous = self.keys.get(&change.key).cloned();
        if let Some(prev) = &previous
            && change.position <= prev.position
        {
            self.stats.duplicates += 1;
            return;
        }
        let known = previous.as_ref().is_some_and(|p| p.live);
        if matches!(change.op, Op::Update | Op::Delete) && !known {
            self.alert(
                out,
                Alert {
                    kind: AlertKind::UnknownKey,
                    id_suffix: change.change_id.clone(),
                    subject: change.key.clone(),
                    message: format!(
                        "{} of a row the processor never saw inserted or snapshotted",
                        change.op.as_str()
                    ),
                    event_time: t,
                    window_start: None,
                    details: BTreeMap::from([("change_id".into(), change.change_id.clone())]),
                },
            );
        }
        let old_status = previous
            .as_ref()
            .and_then(|p| p.status.clone())
            .or_else(|| change.old_status.clone());
        if change.table == "public.bookings"
            && change.op == Op::Update
            && let (Some(from), Some(to)) = (&old_status, &change.status)
            && !booking_transition_allowed(from, to)
        {
            self.alert(
                out,
                Alert {
                    kind: AlertKind::InvalidStatusTransition,
                    id_suffix: change.change_id.clone(),
                    subject: change.key.clone(),
                    message: format!("booking status changed from {from} to {to}, which the booking state machine does not allow"),
                    event_time: t,
                    window_start: None,
                    details: BTreeMap::from([
                        ("from".into(), from.clone()),
                        ("to".into(), to.clone()),
                        ("change_id".into(), change.change_id.clone()),
                    ]),
                },
            );
        }
        if change.table == "public.payments"
            && change.status.as_deref() == Some("refunded")
            && old_status.as_deref() != Some("refunded")
            && let Some(amount) = &change.amount
            && let Ok(value) = amount.parse::<rust_decimal::Decimal>()
            && value > self.settings.large_refund_amount
        {
            self.alert(
                out,
                Alert {
                    kind: AlertKind::LargeRefund,
                    id_suffix: change.change_id.clone(),
                    subject: change.key.clone(),
                    message: format!(
                        "refund of {amount}, above the configured {}",
                        self.settings.large_refund_amount
                    ),
                    event_time: t,
                    window_start: None,
                    details: BTreeMap::from([
                        ("amount".into(), amount.clone()),
                        ("change_id".into(), change.change_id.clone()),
                    ]),
                },
            );
        }
        let live = change.op != Op::Delete;
        self.keys.insert(
            change.key.clone(),
            KeyState {
                position: change.position,
                live,
                status: if live { change.status.clone() } else { None },
            },
        );
        self.dirty.insert(StateKey::Key(change.key.clone()));
        if let Some(topic) = state_topic(&change.table) {
            out.push(Output::State {
                topic,
                key: change.key,
                record: live.then_some(record),
            });
        }
    }

    fn booking_ref(&mut self, change: Change, t: i64) {
        let Some(booking) = change.booking_id.clone() else {
            return;
        };
        let entry = self.bookings.entry(booking.clone()).or_default();
        let mut pending = None;
        if change.table == "public.bookings" {
            if entry.position.is_some_and(|p| change.position <= p) {
                self.stats.duplicates += 1;
                return;
            }
            entry.position = Some(change.position);
            match change.op {
                Op::Delete => entry.deleted_at = Some(t),
                _ => {
                    entry.known = true;
                    entry.deleted_at = None;
                    if change.user_id.is_some() {
                        entry.user_id = change.user_id.clone();
                    }
                }
            }
        } else {
            let existing = entry.payments.get(&change.key).cloned();
            if existing
                .as_ref()
                .is_some_and(|p| change.position <= p.position)
            {
                self.stats.duplicates += 1;
                return;
            }
            let mut payment = existing.unwrap_or(PaymentRef {
                position: change.position,
                status: None,
                event_time: t,
                change_id: change.change_id.clone(),
                check_pending: matches!(change.op, Op::Insert | Op::Read),
                failed_pending: Vec::new(),
            });
            if payment.check_pending {
                pending = Some(payment.event_time);
            }
            let became_failed = change.status.as_deref() == Some("failed")
                && payment.status.as_deref() != Some("failed");
            if became_failed {
                payment.failed_pending.push((change.change_id.clone(), t));
                pending = Some(pending.map_or(t, |p: i64| p.max(t)));
            }
            payment.position = change.position;
            if change.op != Op::Delete {
                payment.status = change.status.clone();
            }
            entry.payments.insert(change.key.clone(), payment);
        }
        if let Some(at) = pending {
            self.pending.insert((at, booking.clone()));
        }
        self.dirty.insert(StateKey::Booking(booking));
    }

    /// Checks that waited for the CDC watermark: payments whose booking never existed, and
    /// failed payments counted for the booking's user.
    fn resolve_pending(&mut self, watermark: i64, out: &mut Vec<Output>) {
        while let Some((at, booking)) = self.pending.first().cloned() {
            if at > watermark {
                break;
            }
            self.pending.remove(&(at, booking.clone()));
            let Some(entry) = self.bookings.get_mut(&booking) else {
                continue;
            };
            let mut alerts = Vec::new();
            let mut derived = Vec::new();
            for (payment_key, payment) in entry.payments.iter_mut() {
                if payment.check_pending && payment.event_time <= watermark {
                    payment.check_pending = false;
                    let existed =
                        entry.known && entry.deleted_at.is_none_or(|d| d >= payment.event_time);
                    if !existed {
                        alerts.push(Alert {
                            kind: AlertKind::MissingBooking,
                            id_suffix: payment.change_id.clone(),
                            subject: payment_key.clone(),
                            message: format!("payment for booking {booking}, which does not exist"),
                            event_time: payment.event_time,
                            window_start: None,
                            details: BTreeMap::from([
                                ("booking_id".into(), booking.clone()),
                                ("change_id".into(), payment.change_id.clone()),
                            ]),
                        });
                    }
                }
                let (ready, waiting): (Vec<_>, Vec<_>) = payment
                    .failed_pending
                    .drain(..)
                    .partition(|(_, t)| *t <= watermark);
                payment.failed_pending = waiting;
                if let Some(user) = &entry.user_id {
                    for (change_id, t) in ready {
                        derived.push((user.clone(), payment_key.clone(), change_id, t));
                    }
                }
                // Without a booking there is no user to count for: the MISSING_BOOKING alert
                // above already reports that payment.
            }
            let still_waiting: Vec<i64> = entry
                .payments
                .values()
                .flat_map(|p| {
                    p.failed_pending
                        .iter()
                        .map(|(_, t)| *t)
                        .chain(p.check_pending.then_some(p.event_time))
                })
                .collect();
            for t in still_waiting {
                self.pending.insert((t, booking.clone()));
            }
            self.dirty.insert(StateKey::Booking(booking.clone()));
            for alert in alerts {
                self.alert(out, alert);
            }
            for (user_id, payment_key, change_id, t) in derived {
                self.derived_seq += 1;
                self.dirty.insert(StateKey::DerivedSeq);
                out.push(Output::Derived {
                    key: format!("user/{user_id}"),
                    routed: Routed::Data {
                        lane: Lane::UserPayments,
                        source: Source {
                            stream: Stream::Cdc,
                            partition: self.partition,
                            offset: self.derived_seq,
                        },
                        event_time: t,
                        body: Body::FailedPayment {
                            user_id,
                            payment_key,
                            change_id,
                        },
                    },
                });
            }
        }
    }

    fn finish(
        &mut self,
        lane: Lane,
        start: i64,
        end: i64,
        group: String,
        agg: Agg,
        out: &mut Vec<Output>,
    ) {
        if let Agg::Table { ops, .. } = &agg {
            let deletes = ops.get(&Op::Delete).copied().unwrap_or(0);
            if deletes >= self.settings.delete_burst_threshold {
                self.alert(
                    out,
                    Alert {
                        kind: AlertKind::DeleteBurst,
                        id_suffix: format!("{group}/{start}"),
                        subject: group.clone(),
                        message: format!(
                            "{deletes} DELETEs on {group} within one window (threshold {})",
                            self.settings.delete_burst_threshold
                        ),
                        event_time: end - 1,
                        window_start: Some(start),
                        details: BTreeMap::from([("deletes".into(), deletes.to_string())]),
                    },
                );
            }
        }
        let job = stream_of(lane).job();
        for result in window_results(lane, start, end, group, agg, self.settings.heatmap_cell_px) {
            *self.stats.windows_emitted.entry(job).or_default() += 1;
            out.push(Output::Result(result));
        }
    }

    /// The state entries changed since the last call, each with its current value (None once
    /// removed), in key order.
    pub fn take_dirty(&mut self) -> Vec<(StateKey, Option<StateValue>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|key| {
                let value = self.value_of(&key);
                (key, value)
            })
            .collect()
    }

    fn value_of(&self, key: &StateKey) -> Option<StateValue> {
        match key {
            StateKey::Source(s, p) => self.sources.get(&(*s, *p)).cloned().map(StateValue::Source),
            StateKey::Dedup(l, s, p) => self
                .dedup
                .get(&(*l, *s, *p))
                .copied()
                .map(StateValue::Offset),
            StateKey::Watermark(s) => self.watermarks.get(s).copied().map(StateValue::Time),
            StateKey::Window(lane, start, group) => self
                .windows
                .get(lane)
                .and_then(|w| w.get(start))
                .and_then(|g| g.get(group))
                .cloned()
                .map(StateValue::Window),
            StateKey::Key(k) => self.keys.get(k).cloned().map(StateValue::Key),
            StateKey::Booking(b) => self.bookings.get(b).cloned().map(StateValue::Booking),
            StateKey::External(e) => self.external.get(e).copied().map(StateValue::External),
            StateKey::DerivedSeq => Some(StateValue::Offset(self.derived_seq)),
        }
    }

    /// Puts one restored changelog entry back (None: the entry was removed).
    pub fn restore(&mut self, key: StateKey, value: Option<StateValue>) {
        match (key, value) {
            (StateKey::Source(s, p), Some(StateValue::Source(v))) => {
                self.sources.insert((s, p), v);
            }
            (StateKey::Source(s, p), None) => {
                self.sources.remove(&(s, p));
            }
            (StateKey::Dedup(l, s, p), Some(StateValue::Offset(v))) => {
                self.dedup.insert((l, s, p), v);
            }
            (StateKey::Watermark(s), Some(StateValue::Time(v))) => {
                self.watermarks.insert(s, v);
            }
            (StateKey::Window(lane, start, group), value) => {
                let windows = self.windows.entry(lane).or_default();
                match value {
                    Some(StateValue::Window(agg)) => {
                        windows.entry(start).or_default().insert(group, agg);
                    }
                    _ => {
                        if let Some(groups) = windows.get_mut(&start) {
                            groups.remove(&group);
                            if groups.is_empty() {
                                windows.remove(&start);
                            }
                        }
                    }
                }
            }
            (StateKey::Key(k), Some(StateValue::Key(v))) => {
                self.keys.insert(k, v);
            }
            (StateKey::Booking(b), Some(StateValue::Booking(v))) => {
                self.bookings.insert(b, v);
            }
            (StateKey::External(e), Some(StateValue::External(v))) => {
                self.external.insert(e, v);
            }
            (StateKey::DerivedSeq, Some(StateValue::Offset(v))) => self.derived_seq = v,
            (key, value) => {
                tracing::warn!(
                    ?key,
                    has_value = value.is_some(),
                    "changelog entry of an unexpected shape ignored"
                );
            }
        }
    }

    /// After a restore: rebuilds the indexes that are not stored themselves.
    pub fn finish_restore(&mut self) {
        self.pending.clear();
        for (booking, entry) in &self.bookings {
            for payment in entry.payments.values() {
                if payment.check_pending {
                    self.pending.insert((payment.event_time, booking.clone()));
                }
                for (_, t) in &payment.failed_pending {
                    self.pending.insert((*t, booking.clone()));
                }
            }
        }
        self.dirty.clear();
    }
}

#[cfg(test)]
mod tests;
