//! Pure, seeded generators of application traffic. Each stream keeps a virtual clock: the
//! timestamp of its next event, spaced to its configured rate. [`Traffic`] merges the enabled
//! streams by time, and they share a view of live sessions so clickstream and logs speak of
//! the same users, sessions and bookings as the journeys.
//!
//! One file per concern: the shared session view (`shared`), each stream's generator (`visits`
//! with the `journeys` they play out, `bookings`, `clicks`, `logs`, `external`) and the merger
//! (`traffic`).

mod bookings;
mod clicks;
mod common;
mod external;
mod journeys;
mod logs;
mod shared;
mod traffic;
mod visits;

pub use external::EXTERNAL_BATCH;
pub use journeys::MOBILE_CONVERSION;
pub use traffic::Traffic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum StreamKind {
    Mobile,
    Web,
    BookingEvents,
    Clickstream,
    Logs,
    /// Readings of every external source (weather, maps, social media, market data, news,
    /// travel trends), fetched in batches of 50–100 and sent evenly, continuously.
    External,
}

impl StreamKind {
    pub const ALL: [StreamKind; 6] = [
        Self::Mobile,
        Self::Web,
        Self::BookingEvents,
        Self::Clickstream,
        Self::Logs,
        Self::External,
    ];

    /// Events per minute of the seed's default traffic (its event-distribution table: mobile
    /// 50–100, web 30–60, clickstream 60, external 20–40); together about 325/min.
    pub fn default_rate(self) -> f64 {
        match self {
            Self::Mobile => 70.0,
            Self::Web => 45.0,
            Self::BookingEvents => 40.0,
            Self::Clickstream => 60.0,
            Self::Logs => 80.0,
            Self::External => 30.0,
        }
    }
}
