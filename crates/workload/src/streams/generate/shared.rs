//! The view of live sessions and converted bookings the streams share, so clickstream, logs and
//! booking events speak of the same users, sessions and bookings as the journeys.

use crate::streams::event::DeviceType;

pub(super) const MAX_PENDING_CONVERSIONS: usize = 100;

/// A session seen recently, for streams that describe what happens inside sessions.
#[derive(Debug, Clone)]
pub(super) struct LiveSession {
    pub(super) session_id: String,
    pub(super) user_id: Option<String>,
    pub(super) booking_id: Option<String>,
    pub(super) device_type: DeviceType,
    pub(super) page_url: String,
    pub(super) ends_at_ms: i64,
}

/// What the streams share: sessions in progress and bookings the apps converted.
#[derive(Default)]
pub(super) struct Shared {
    sessions: Vec<LiveSession>,
    pub(super) conversions: Vec<(String, String, String)>,
}

impl Shared {
    pub(super) fn touch(&mut self, session: LiveSession) {
        match self
            .sessions
            .iter_mut()
            .find(|s| s.session_id == session.session_id)
        {
            Some(existing) => *existing = session,
            None => self.sessions.push(session),
        }
    }

    pub(super) fn live(&mut self, now_ms: i64) -> &[LiveSession] {
        self.sessions.retain(|s| s.ends_at_ms >= now_ms);
        &self.sessions
    }
}
