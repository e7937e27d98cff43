//! The clickstream: low-level interactions (clicks, taps, scrolls) inside live sessions, so
//! they line up with the journeys, or inside anonymous sessions when none is live.

use rand::{Rng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::{
    common::{exp_gap_ms, uuid},
    shared::{LiveSession, Shared},
};
use crate::streams::event::{ClickEvent, DeviceType, Event, Interaction};

/// Low-level interactions inside live sessions (or anonymous ones when none is live).
pub(super) struct ClickStream {
    pub(super) rng: ChaCha8Rng,
    pub(super) next_at_ms: i64,
    pub(super) mean_gap_ms: f64,
    pub(super) anonymous: Vec<LiveSession>,
}

const ELEMENTS: &[&str] = &[
    "search-box",
    "date-picker",
    "guest-selector",
    "filter-price",
    "filter-stars",
    "hotel-card",
    "book-now",
    "nav-deals",
    "nav-home",
    "map-toggle",
    "gallery-next",
    "promo-banner",
];

impl ClickStream {
    pub(super) fn emit(&mut self, shared: &mut Shared) -> Event {
        let now = self.next_at_ms;
        self.next_at_ms += exp_gap_ms(&mut self.rng, self.mean_gap_ms);
        let rng = &mut self.rng;
        let live = shared.live(now);
        let session = if !live.is_empty() && rng.random_bool(0.85) {
            live[rng.random_range(0..live.len())].clone()
        } else {
            if self.anonymous.len() < 3 || rng.random_bool(0.1) {
                let device_type = *[
                    DeviceType::Desktop,
                    DeviceType::MobileWeb,
                    DeviceType::Tablet,
                ]
                .choose(rng)
                .unwrap_or(&DeviceType::Desktop);
                self.anonymous.push(LiveSession {
                    session_id: uuid(rng),
                    user_id: None,
                    booking_id: None,
                    device_type,
                    page_url: "https://travel.example.vn/".into(),
                    ends_at_ms: i64::MAX,
                });
                if self.anonymous.len() > 5 {
                    self.anonymous.remove(0);
                }
            }
            self.anonymous[rng.random_range(0..self.anonymous.len())].clone()
        };
        let (width, height) = match session.device_type {
            DeviceType::Desktop => (1440, 900),
            DeviceType::Tablet => (820, 1180),
            _ => (390, 844),
        };
        let interaction = if session.device_type == DeviceType::Desktop {
            *[
                Interaction::Click,
                Interaction::Click,
                Interaction::Hover,
                Interaction::Scroll,
                Interaction::Input,
                Interaction::View,
            ]
            .choose(rng)
            .unwrap_or(&Interaction::Click)
        } else {
            *[
                Interaction::Tap,
                Interaction::Tap,
                Interaction::Scroll,
                Interaction::View,
                Interaction::Input,
            ]
            .choose(rng)
            .unwrap_or(&Interaction::Tap)
        };
        Event::Click(ClickEvent {
            event_id: uuid(rng),
            session_id: session.session_id,
            user_id: session.user_id,
            interaction,
            page_url: session.page_url,
            element_id: (interaction != Interaction::Scroll)
                .then(|| (*ELEMENTS.choose(rng).unwrap_or(&"hotel-card")).to_string()),
            x: rng.random_range(0..width),
            y: rng.random_range(0..height),
            viewport_width: Some(width),
            viewport_height: Some(height),
            device_type: session.device_type,
            referrer: rng.random_bool(0.3).then(|| {
                (*[
                    "https://www.google.com/",
                    "https://www.facebook.com/",
                    "https://zalo.me/",
                ]
                .choose(rng)
                .unwrap_or(&""))
                .to_string()
            }),
            timestamp_ms: now,
        })
    }
}
