//! Stage 2: the stateful task of one repartition partition. Deterministic: its outputs are a
//! function of the records of its partition, in order, so a task rebuilt from its changelog
//! and fed the same records again produces the same results with the same ids.
//!
//! Watermark of a stream (per task): the minimum, over the stream's input partitions that are
//! not idle, of the highest event time seen from that partition (from its data and its
//! progress records), minus the allowed lateness; when every partition is idle, the highest
//! event time of any. A partition the task has heard nothing from holds it back. It never
//! moves backwards. A window is final, and emitted once, when the watermark reaches its end.
//!
//! This file holds the task itself: its state, the intake of records and the watermark that
//! closes windows. What a record does to the state, per lane, is in `aggregate` (windowed
//! lanes), `keys` (the CDC key lane) and `bookings` (the booking-reference lane); window
//! bookkeeping is in `windows`, the results a window yields in `results`, the state's
//! types in `state` and its way to and from the changelog in `changelog`.

mod aggregate;
mod bookings;
mod changelog;
mod keys;
mod results;
mod state;
mod windows;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{
    config::Settings,
    output::{Alert, Output},
    routed::{Lane, Routed, Stream},
};

pub use self::results::window_results;
pub use self::state::{
    Agg, BookingRef, ExternalLatest, KeyState, PaymentRef, SourceProgress, StateKey, StateValue,
};
pub use self::windows::window_ms;

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

    fn alert(&mut self, out: &mut Vec<Output>, alert: Alert) {
        self.stats.alerts += 1;
        out.push(Output::Alert(alert));
    }
}

#[cfg(test)]
mod tests;
