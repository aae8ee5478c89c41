//! Resilience decisions as pure state machines: the circuit breaker and the tokens-a-minute
//! budget. Time is an input
//! (`now_ms`, milliseconds on any monotonic clock), never read.

mod breaker;
mod token_budget;

pub use breaker::{Breaker, BreakerRejected, BreakerState, CallOutcome};
pub use token_budget::TokenBudget;
