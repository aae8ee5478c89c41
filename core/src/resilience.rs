//! Resilience decisions as pure state machines: the circuit breaker. Time is an input
//! (`now_ms`, milliseconds on any monotonic clock), never read.

mod breaker;

pub use breaker::{Breaker, BreakerRejected, BreakerState, CallOutcome};
