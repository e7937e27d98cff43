//! Booking-system events: bookings opened (first those the apps converted) and moved through
//! the same status and payment state machines as the OLTP driver.

use rand::{Rng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::{
    common::{DESTINATIONS, exp_gap_ms, props, uuid},
    shared::Shared,
};
use crate::oltp::model::{BookingStatus, PaymentStatus};
use crate::streams::event::{AppEvent, Event, EventSource};

/// A booking as the booking system sees it: status and the state of its payment.
pub(super) struct TrackedBooking {
    booking_id: String,
    user_id: String,
    session_id: Option<String>,
    status: BookingStatus,
    payment: Option<PaymentStatus>,
    amount: String,
    destination: String,
}

/// Booking-system events driven by the same state machines as the OLTP driver.
pub(super) struct BookingStream {
    pub(super) rng: ChaCha8Rng,
    pub(super) next_at_ms: i64,
    pub(super) mean_gap_ms: f64,
    pub(super) open: Vec<TrackedBooking>,
    pub(super) population: u32,
}

impl BookingStream {
    pub(super) fn emit(&mut self, shared: &mut Shared) -> Event {
        let now = self.next_at_ms;
        self.next_at_ms += exp_gap_ms(&mut self.rng, self.mean_gap_ms);
        let rng = &mut self.rng;
        let create =
            self.open.is_empty() || !shared.conversions.is_empty() || rng.random_bool(0.25);
        let (event_type, index) = if create {
            // Bookings the apps converted come first; others arrive from partners and agents.
            let (user_id, session_id, booking_id) = if shared.conversions.is_empty() {
                (
                    rng.random_range(1..=self.population).to_string(),
                    None,
                    uuid(rng),
                )
            } else {
                let (user, session, booking) = shared.conversions.remove(0);
                (user, Some(session), booking)
            };
            self.open.push(TrackedBooking {
                booking_id,
                user_id,
                session_id,
                status: BookingStatus::Pending,
                payment: None,
                amount: format!("{}.00", rng.random_range(600..=30_000) * 1000),
                destination: (*DESTINATIONS.choose(rng).unwrap_or(&"Da Nang")).to_string(),
            });
            ("booking_created", self.open.len() - 1)
        } else {
            let index = rng.random_range(0..self.open.len());
            (advance(rng, &mut self.open[index]), index)
        };
        let booking = &self.open[index];
        let mut properties = props(&[
            ("status", booking.status.as_sql().into()),
            ("amount", booking.amount.clone()),
            ("currency", "VND".into()),
            ("destination", booking.destination.clone()),
        ]);
        if let Some(payment) = booking.payment {
            properties.insert("payment_status".into(), payment.as_sql().into());
        }
        let event = AppEvent {
            event_id: uuid(rng),
            event_type: event_type.into(),
            source: EventSource::BookingSystem,
            user_id: Some(booking.user_id.clone()),
            session_id: booking.session_id.clone(),
            booking_id: Some(booking.booking_id.clone()),
            device: None,
            timestamp_ms: now,
            properties,
        };
        if finished(booking) {
            self.open.swap_remove(index);
        }
        Event::App(event)
    }
}

/// Moves a booking one step: payment initiated → confirmed → captured → check-in → check-out,
/// with the occasional failure, cancellation and refund. Event names are the gateway's.
fn advance(rng: &mut ChaCha8Rng, booking: &mut TrackedBooking) -> &'static str {
    use BookingStatus as B;
    use PaymentStatus as P;
    let (event, status, payment) = match (booking.status, booking.payment) {
        (B::Pending, None | Some(P::Failed)) if rng.random_bool(0.1) => {
            ("booking_cancelled", B::Cancelled, booking.payment)
        }
        (B::Pending, None | Some(P::Failed)) if rng.random_bool(0.08) => {
            ("payment_failed", B::Pending, Some(P::Failed))
        }
        (B::Pending, None | Some(P::Failed)) => {
            ("payment_initiated", B::Pending, Some(P::Authorized))
        }
        (B::Pending, Some(_)) => ("booking_confirmed", B::Confirmed, booking.payment),
        (B::Confirmed, Some(P::Authorized)) => {
            ("payment_captured", B::Confirmed, Some(P::Captured))
        }
        (B::Confirmed, _) if rng.random_bool(0.1) => {
            ("booking_cancelled", B::Cancelled, booking.payment)
        }
        (B::Confirmed, _) => ("check_in", B::CheckedIn, booking.payment),
        (B::CheckedIn, _) => ("check_out", B::Completed, booking.payment),
        (B::Cancelled, Some(P::Captured)) => ("refund_issued", B::Cancelled, Some(P::Refunded)),
        (B::Cancelled, Some(P::Authorized)) => ("payment_failed", B::Cancelled, Some(P::Failed)),
        // Finished bookings leave the open list, so nothing else is ever advanced.
        (status, payment) => ("booking_modified", status, payment),
    };
    booking.status = status;
    booking.payment = payment;
    event
}

/// Whether nothing more will happen to the booking.
fn finished(booking: &TrackedBooking) -> bool {
    match (booking.status, booking.payment) {
        (BookingStatus::Completed, _) => true,
        (BookingStatus::Cancelled, Some(PaymentStatus::Captured | PaymentStatus::Authorized)) => {
            false
        }
        (BookingStatus::Cancelled, _) => true,
        _ => false,
    }
}
