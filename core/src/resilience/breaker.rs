//! A circuit breaker with resilience4j semantics.
//!
//! Closed → Open when, over a count window of the last `window` calls (judged once
//! `min_calls` are in it), the failure rate or the slow-call rate reaches its threshold,
//! or after `consecutive_failures` failures in a row. Open for `open_ms`, doubling on
//! each trip that follows a failed probe (capped at `max_open_ms`). Then Half-open:
//! `half_open_calls` probes are let through; all succeeding closes the breaker, any
//! failing (or slow) opens it again.
//!
//! Only outcomes that say something about the instance count ([`CallOutcome::Failure`]);
//! the caller classifies with `ErrorCode::counts_against_breaker`.

use std::collections::VecDeque;

use crate::provider::BreakerSettings;

/// How a call that the breaker admitted ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The instance answered.
    Success,
    /// The instance failed in a way that counts against it.
    Failure,
    /// The call ended in a way that says nothing about the instance (bad request,
    /// content refused, 429); it only releases a half-open probe slot.
    Ignored,
}

/// The breaker's state as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until `until_ms`.
    Open {
        /// When the breaker turns half-open.
        until_ms: u64,
    },
    /// Probe calls are let through.
    HalfOpen,
}

/// A refused call: the breaker is open (or its probes are all out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerRejected {
    /// When to ask again (for half-open with all probes out: `now`).
    pub until_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// The breaker of one instance. Owned by its provider actor; no locks.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    /// (failed, slow) of the last `window` calls while closed.
    window: VecDeque<(bool, bool)>,
    failures_in_window: u32,
    slow_in_window: u32,
    consecutive_failures: u32,
    /// Trips since the breaker was last closed; drives the doubling open time.
    trips: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: State::Closed,
            window: VecDeque::with_capacity(settings.window as usize),
            failures_in_window: 0,
            slow_in_window: 0,
            consecutive_failures: 0,
            trips: 0,
        }
    }

    /// The state at `now_ms` (an open breaker whose wait is over reads as half-open).
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until_ms } if now_ms < until_ms => BreakerState::Open { until_ms },
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call at `now_ms`.
    ///
    /// # Errors
    /// [`BreakerRejected`] while open, or half-open with every probe out.
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<(), BreakerRejected> {
        match self.state {
            State::Closed => Ok(()),
            State::Open { until_ms } if now_ms < until_ms => Err(BreakerRejected { until_ms }),
            State::Open { .. } => {
                self.state = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                Ok(())
            }
            State::HalfOpen {
                admitted,
                succeeded,
            } => {
                if admitted < self.settings.half_open_calls {
                    self.state = State::HalfOpen {
                        admitted: admitted + 1,
                        succeeded,
                    };
                    Ok(())
                } else {
                    Err(BreakerRejected { until_ms: now_ms })
                }
            }
        }
    }

    /// Records how an admitted call ended, `duration_ms` after it started.
    pub fn record(&mut self, now_ms: u64, outcome: CallOutcome, duration_ms: u64) {
        let slow = duration_ms >= self.settings.slow_call_ms;
        match self.state {
            // A call admitted before the breaker opened: it no longer matters.
            State::Open { .. } => {}
            State::HalfOpen {
                admitted,
                succeeded,
            } => match outcome {
                CallOutcome::Ignored => {
                    self.state = State::HalfOpen {
                        admitted: admitted.saturating_sub(1),
                        succeeded,
                    };
                }
                CallOutcome::Failure => self.trip(now_ms),
                CallOutcome::Success if slow && self.settings.slow_call_rate <= 1.0 => {
                    self.trip(now_ms);
                }
                CallOutcome::Success => {
                    let succeeded = succeeded + 1;
                    if succeeded >= self.settings.half_open_calls {
                        self.close();
                    } else {
                        self.state = State::HalfOpen {
                            admitted,
                            succeeded,
                        };
                    }
                }
            },
            State::Closed => {
                if outcome == CallOutcome::Ignored {
                    return;
                }
                let failed = outcome == CallOutcome::Failure;
                self.push(failed, slow);
                if failed {
                    self.consecutive_failures += 1;
                } else {
                    self.consecutive_failures = 0;
                }
                if self.should_trip() {
                    self.trip(now_ms);
                }
            }
        }
    }

    /// How many trips since the breaker was last closed.
    pub fn trips(&self) -> u32 {
        self.trips
    }

    fn push(&mut self, failed: bool, slow: bool) {
        if self.window.len() >= self.settings.window as usize
            && let Some((old_failed, old_slow)) = self.window.pop_front()
        {
            self.failures_in_window -= u32::from(old_failed);
            self.slow_in_window -= u32::from(old_slow);
        }
        self.window.push_back((failed, slow));
        self.failures_in_window += u32::from(failed);
        self.slow_in_window += u32::from(slow);
    }

    fn should_trip(&self) -> bool {
        if self.consecutive_failures >= self.settings.consecutive_failures {
            return true;
        }
        let calls = self.window.len() as u32;
        if calls < self.settings.min_calls || calls == 0 {
            return false;
        }
        let failure_rate = f64::from(self.failures_in_window) / f64::from(calls);
        let slow_rate = f64::from(self.slow_in_window) / f64::from(calls);
        failure_rate >= self.settings.failure_rate || slow_rate >= self.settings.slow_call_rate
    }

    fn trip(&mut self, now_ms: u64) {
        self.trips = self.trips.saturating_add(1);
        let factor = 1u64 << (self.trips - 1).min(20);
        let wait = self
            .settings
            .open_ms
            .saturating_mul(factor)
            .min(self.settings.max_open_ms.max(self.settings.open_ms));
        self.state = State::Open {
            until_ms: now_ms.saturating_add(wait),
        };
        self.clear_window();
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.trips = 0;
        self.clear_window();
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.failures_in_window = 0;
        self.slow_in_window = 0;
        self.consecutive_failures = 0;
    }
}

#[cfg(test)]
mod tests;
