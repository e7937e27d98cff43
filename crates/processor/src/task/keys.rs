//! The CDC key lane: the last known state of every row, the state-topic records that mirror
//! it, and the alerts a change raises against it (a change to a row never seen, a booking
//! status change the state machine forbids, a large refund).

use std::collections::BTreeMap;

use crate::{
    output::{Alert, AlertKind, Output},
    routed::{Change, Op},
};

use super::{KeyState, StateKey, Task};

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

impl Task {
    pub(super) fn key_change(
        &mut self,
        change: Change,
        record: Vec<u8>,
        t: i64,
        out: &mut Vec<Output>,
    ) {
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
}
