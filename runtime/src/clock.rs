//! The runtime's clock: Unix milliseconds that advance with tokio's clock, so tests
//! with paused time control breakers, cool-downs and rate limiters alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A monotonic clock reading as Unix milliseconds. Copy it freely; all copies agree.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: tokio::time::Instant,
    base_unix_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock anchored at the current wall time.
    pub fn new() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            base: tokio::time::Instant::now(),
            base_unix_ms,
        }
    }

    /// Unix milliseconds now (advancing with tokio's, possibly paused, clock).
    pub fn now_ms(&self) -> u64 {
        self.base_unix_ms
            .saturating_add(u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.base)
    }

    /// The tokio instant at Unix millisecond `ms`.
    pub fn instant_at(&self, ms: u64) -> tokio::time::Instant {
        self.base + Duration::from_millis(ms.saturating_sub(self.base_unix_ms))
    }
}

impl governor::clock::Clock for Clock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.elapsed()
    }
}
