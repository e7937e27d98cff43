//! The task's side of the changelog: the entries changed since the last commit, and putting
//! restored entries back (then rebuilding the indexes that are not stored).

use super::{StateKey, StateValue, Task};

impl Task {
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
