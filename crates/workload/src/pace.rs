//! Pacing and progress: a target rate, and what was actually achieved.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces calls to `wait` to a target rate; `None` runs as fast as possible.
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

/// Backlog the pacer may catch up on after a stall, so a pause is not followed by a flood.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

impl Pacer {
    /// `per_second <= 0` means as fast as possible.
    pub fn new(per_second: f64) -> Self {
        let interval = (per_second > 0.0 && per_second.is_finite())
            .then(|| Duration::from_secs_f64(1.0 / per_second));
        Self {
            interval,
            next: Instant::now(),
        }
    }

    pub async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        if self.next + MAX_CATCH_UP < now {
            self.next = now;
        }
        tokio::time::sleep_until(self.next).await;
        self.next += interval;
    }
}

/// Latencies of the operations finished since the last report.
#[derive(Default)]
pub struct LatencyWindow {
    micros: Vec<u64>,
}

impl LatencyWindow {
    pub fn record(&mut self, latency: Duration) {
        self.micros
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// (p50, p99, max) in milliseconds, and clears the window.
    pub fn take_percentiles(&mut self) -> Option<(f64, f64, f64)> {
        if self.micros.is_empty() {
            return None;
        }
        self.micros.sort_unstable();
        let at = |q: f64| {
            let index = ((self.micros.len() - 1) as f64 * q).round() as usize;
            self.micros[index] as f64 / 1000.0
        };
        let result = (at(0.5), at(0.99), at(1.0));
        self.micros.clear();
        Some(result)
    }
}
