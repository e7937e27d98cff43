//! The merger: builds the enabled streams, each with its own seeded sequence, and takes events
//! from whichever is due first, so the whole traffic is one reproducible, time-ordered sequence.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    StreamKind, bookings::BookingStream, clicks::ClickStream, common::exp_gap_ms,
    external::ExternalStream, logs::LogStream, shared::Shared, visits::VisitStream,
};
use crate::streams::event::Event;

/// Users the traffic is about: ids 1..=population, like the OLTP database's user keys.
const DEFAULT_POPULATION: u32 = 5000;

enum Stream {
    Visits(VisitStream),
    Bookings(BookingStream),
    Clicks(ClickStream),
    Logs(LogStream),
    External(ExternalStream),
}

impl Stream {
    fn next_at(&self) -> i64 {
        match self {
            Self::Visits(s) => s.next_at(),
            Self::Bookings(s) => s.next_at_ms,
            Self::Clicks(s) => s.next_at_ms,
            Self::Logs(s) => s.next_at_ms,
            Self::External(s) => s.next_at_ms,
        }
    }
}

/// All enabled streams merged by event time; an endless, reproducible sequence of events.
pub struct Traffic {
    streams: Vec<Stream>,
    shared: Shared,
}

impl Traffic {
    /// `rates` gives each enabled stream's events per minute; `start_ms` is the first instant.
    pub fn new(seed: u64, rates: &[(StreamKind, f64)], start_ms: i64) -> Self {
        let population = DEFAULT_POPULATION;
        let streams = rates
            .iter()
            .filter(|(_, rate)| *rate > 0.0)
            .map(|(kind, rate)| {
                // Each stream has its own sequence, so enabling one does not reshuffle another.
                let seed = seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(*kind as u64 + 1));
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mean_gap_ms = 60_000.0 / rate;
                let first = start_ms + exp_gap_ms(&mut rng, mean_gap_ms);
                match kind {
                    StreamKind::Mobile => {
                        Stream::Visits(VisitStream::new(false, seed, *rate, start_ms, population))
                    }
                    StreamKind::Web => {
                        Stream::Visits(VisitStream::new(true, seed, *rate, start_ms, population))
                    }
                    StreamKind::BookingEvents => Stream::Bookings(BookingStream {
                        rng,
                        next_at_ms: first,
                        mean_gap_ms,
                        open: Vec::new(),
                        population,
                    }),
                    StreamKind::Clickstream => Stream::Clicks(ClickStream {
                        rng,
                        next_at_ms: first,
                        mean_gap_ms,
                        anonymous: Vec::new(),
                    }),
                    StreamKind::Logs => Stream::Logs(LogStream {
                        rng,
                        next_at_ms: first,
                        mean_gap_ms,
                    }),
                    StreamKind::External => {
                        Stream::External(ExternalStream::new(rng, first, mean_gap_ms))
                    }
                }
            })
            .collect();
        Self {
            streams,
            shared: Shared::default(),
        }
    }

    /// When the next event happens (`None` with no stream enabled).
    pub fn next_at(&self) -> Option<i64> {
        self.streams.iter().map(Stream::next_at).min()
    }

    pub fn next_event(&mut self) -> Option<Event> {
        let index = self
            .streams
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.next_at())?
            .0;
        let shared = &mut self.shared;
        match &mut self.streams[index] {
            Stream::Visits(s) => s.emit(shared),
            Stream::Bookings(s) => Some(s.emit(shared)),
            Stream::Clicks(s) => Some(s.emit(shared)),
            Stream::Logs(s) => Some(s.emit(shared)),
            Stream::External(s) => s.emit(),
        }
    }

    /// Batches the external simulator has fetched, if it is enabled.
    pub fn external_batches(&self) -> Option<u64> {
        self.streams.iter().find_map(|s| match s {
            Stream::External(e) => Some(e.batches),
            _ => None,
        })
    }

    /// (journeys started, journeys converted) of the mobile stream, if enabled.
    pub fn mobile_conversions(&self) -> Option<(u64, u64)> {
        self.streams.iter().find_map(|s| match s {
            Stream::Visits(v) if !v.web => Some((v.started_journeys, v.converted_journeys)),
            _ => None,
        })
    }

    /// Users currently in a mobile journey, if the stream is enabled.
    pub fn mobile_users_online(&self) -> Option<usize> {
        self.streams.iter().find_map(|s| match s {
            Stream::Visits(v) if !v.web => Some(v.visits.len()),
            _ => None,
        })
    }
}
