//! Application logs of every service, with realistic levels and messages, many tied to a live
//! session and its booking so logs can be joined with the other streams.

use rand::{Rng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::{
    common::{exp_gap_ms, hex, props, uuid},
    shared::Shared,
};
use crate::streams::event::{Event, LogEvent, LogLevel};

const SERVICES: &[(&str, &str)] = &[
    ("booking-api", "com.travel.booking.BookingController"),
    ("payment-service", "com.travel.payment.PaymentProcessor"),
    ("search-service", "search::query"),
    ("mobile-bff", "bff.handlers"),
    ("web-frontend", "next.server"),
    ("notification-service", "notify.dispatch"),
    ("inventory-service", "inventory.sync"),
    ("gateway", "gateway::ingest"),
];

/// Share of each level: mostly INFO and DEBUG, errors rare, fatal very rare.
const LEVEL_WEIGHTS: [(LogLevel, u32); 5] = [
    (LogLevel::Debug, 25),
    (LogLevel::Info, 55),
    (LogLevel::Warn, 12),
    (LogLevel::Error, 7),
    (LogLevel::Fatal, 1),
];

fn log_message(
    rng: &mut ChaCha8Rng,
    service: &str,
    level: LogLevel,
    booking: Option<&str>,
) -> String {
    let ms = rng.random_range(3..900);
    let booking = booking.unwrap_or("n/a");
    match level {
        LogLevel::Debug => format!(
            "{service}: cache {} for key {}",
            if rng.random_bool(0.7) { "hit" } else { "miss" },
            hex(rng, 4)
        ),
        LogLevel::Info => match service {
            "booking-api" => format!("booking {booking} updated in {ms} ms"),
            "payment-service" => {
                format!("payment for booking {booking} processed by provider in {ms} ms")
            }
            "search-service" => format!(
                "search returned {} hotels in {ms} ms",
                rng.random_range(0..250)
            ),
            _ => format!("request completed with status 200 in {ms} ms"),
        },
        LogLevel::Warn => format!("slow upstream call: {ms}0 ms exceeds the 2000 ms budget"),
        LogLevel::Error => match service {
            "payment-service" => {
                format!("payment provider declined booking {booking}: insufficient funds")
            }
            _ => format!(
                "upstream returned 502 after {} retries",
                rng.random_range(1..4)
            ),
        },
        LogLevel::Fatal => "database connection pool exhausted; shutting down worker".into(),
    }
}

/// Application logs from every service, many tied to a live session.
pub(super) struct LogStream {
    pub(super) rng: ChaCha8Rng,
    pub(super) next_at_ms: i64,
    pub(super) mean_gap_ms: f64,
}

impl LogStream {
    pub(super) fn emit(&mut self, shared: &mut Shared) -> Event {
        let now = self.next_at_ms;
        self.next_at_ms += exp_gap_ms(&mut self.rng, self.mean_gap_ms);
        let rng = &mut self.rng;
        let (service, logger) = *SERVICES.choose(rng).unwrap_or(&SERVICES[0]);
        let total: u32 = LEVEL_WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut roll = rng.random_range(0..total);
        let mut level = LogLevel::Info;
        for (candidate, weight) in LEVEL_WEIGHTS {
            if roll < weight {
                level = candidate;
                break;
            }
            roll -= weight;
        }
        let live = shared.live(now);
        let session = (!live.is_empty() && rng.random_bool(0.6))
            .then(|| live[rng.random_range(0..live.len())].clone());
        let booking_id = session.as_ref().and_then(|s| s.booking_id.clone());
        let message = log_message(rng, service, level, booking_id.as_deref());
        let mut attributes = props(&[("env", "dev".into()), ("region", "ap-southeast-1".into())]);
        if level >= LogLevel::Error {
            attributes.insert(
                "error_kind".into(),
                (*["Timeout", "UpstreamError", "Declined", "PoolExhausted"]
                    .choose(rng)
                    .unwrap_or(&"Timeout"))
                .to_string(),
            );
        }
        Event::Log(LogEvent {
            log_id: uuid(rng),
            service: service.into(),
            level,
            message,
            logger: Some(logger.into()),
            host: Some(format!(
                "{service}-{}-{}",
                hex(rng, 2),
                rng.random_range(0..4)
            )),
            trace_id: Some(hex(rng, 16)),
            request_id: Some(format!("req_{}", hex(rng, 6))),
            user_id: session.as_ref().and_then(|s| s.user_id.clone()),
            session_id: session.as_ref().map(|s| s.session_id.clone()),
            booking_id,
            attributes,
            timestamp_ms: now,
        })
    }
}
