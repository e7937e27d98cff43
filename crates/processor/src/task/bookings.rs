//! The booking-reference lane: which bookings exist and which payments name them, and the
//! checks that must wait for the CDC watermark (a payment whose booking never existed, failed
//! payments counted for the booking's user) before they can be decided.

use std::collections::BTreeMap;

use crate::{
    output::{Alert, AlertKind, Output},
    routed::{Body, Change, Lane, Op, Routed, Source, Stream},
};

use super::{PaymentRef, StateKey, Task};

impl Task {
    pub(super) fn booking_ref(&mut self, change: Change, t: i64) {
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
    pub(super) fn resolve_pending(&mut self, watermark: i64, out: &mut Vec<Output>) {
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
}
