//! Event-time windows: their length, which window a record falls in (or that it is late),
//! the open aggregate of a group, and closing windows once the watermark passes them.

use std::collections::BTreeMap;

use crate::{
    config::Settings,
    output::{Alert, AlertKind, LateEvent, Output},
    routed::{Lane, Op, Source, Stream},
};

use super::{Agg, StateKey, Task, stream_of, window_results};

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
    pub(super) fn window_ms(&self, lane: Lane) -> i64 {
        window_ms(&self.settings, lane)
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

    pub(super) fn close_windows(&mut self, lane: Lane, watermark: i64, out: &mut Vec<Output>) {
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

    pub(super) fn window_agg(
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
    pub(super) fn window_for(
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
}
