//! Virtual time: `time_scale` virtual seconds pass per real second, so hours of schedule or
//! traffic can be compressed into seconds for demos and tests.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    real_start: Instant,
    virtual_start_ms: i64,
    scale: f64,
}

impl VirtualClock {
    /// A non-positive or non-finite scale means "do not wait at all".
    pub fn new(virtual_start_ms: i64, scale: f64) -> Self {
        Self {
            real_start: Instant::now(),
            virtual_start_ms,
            scale,
        }
    }

    pub fn start_ms(&self) -> i64 {
        self.virtual_start_ms
    }

    fn waits(&self) -> bool {
        self.scale > 0.0 && self.scale.is_finite()
    }

    pub fn now_ms(&self) -> i64 {
        if !self.waits() {
            return self.virtual_start_ms;
        }
        self.virtual_start_ms
            + (self.real_start.elapsed().as_secs_f64() * self.scale * 1000.0) as i64
    }

    /// Sleeps until the virtual clock reads `at_ms`.
    pub async fn sleep_until(&self, at_ms: i64) {
        if !self.waits() {
            return;
        }
        let virtual_offset = (at_ms - self.virtual_start_ms).max(0) as f64 / 1000.0;
        let real = Duration::from_secs_f64(virtual_offset / self.scale);
        tokio::time::sleep_until(self.real_start + real).await;
    }
}
