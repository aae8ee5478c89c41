//! Rate limits and circuit-breaker settings of a provider config: as written (drafts,
//! every field optional) and as validated.

use serde::{Deserialize, Serialize};

/// `rate_limit` as written: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDraft {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<i64>,
    /// Requests allowed at once above the steady rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<i64>,
    /// Calls in flight at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    /// Tokens per minute (text), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<i64>,
}

/// `breaker` as written: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerDraft {
    /// Sliding window size, in calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Calls in the window before rates are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_calls: Option<i64>,
    /// Failure rate (0–1] that opens the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Consecutive failures that open the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i64>,
    /// A call slower than this many ms is slow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_ms: Option<i64>,
    /// Slow-call rate (0–1] that opens the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate: Option<f64>,
    /// How long the breaker stays open on its first trip, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_ms: Option<i64>,
    /// Cap of the open time as it doubles on repeated trips, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_ms: Option<i64>,
    /// Probe calls let through when half-open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_calls: Option<i64>,
}

/// Validated rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per minute (> 0).
    pub rpm: u32,
    /// Requests allowed at once above the steady rate (> 0).
    pub burst: u32,
    /// Calls in flight at most (> 0).
    pub max_concurrency: u32,
    /// Tokens per minute, if limited.
    pub tpm: Option<u32>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            rpm: 60,
            burst: 10,
            max_concurrency: 8,
            tpm: None,
        }
    }
}

/// Validated circuit-breaker settings (resilience4j semantics, PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BreakerSettings {
    /// Sliding window size, in calls.
    pub window: u32,
    /// Calls in the window before rates are judged.
    pub min_calls: u32,
    /// Failure rate (0–1] that opens the breaker.
    pub failure_rate: f64,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// A call slower than this many ms counts as slow.
    pub slow_call_ms: u64,
    /// Slow-call rate (0–1] that opens the breaker.
    pub slow_call_rate: f64,
    /// How long the breaker stays open on its first trip, in ms.
    pub open_ms: u64,
    /// Cap of the open time, which doubles on each repeated trip, in ms.
    pub max_open_ms: u64,
    /// Probe calls let through when half-open.
    pub half_open_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 5,
            failure_rate: 0.5,
            consecutive_failures: 5,
            slow_call_ms: 30_000,
            slow_call_rate: 1.0,
            open_ms: 30_000,
            max_open_ms: 300_000,
            half_open_calls: 1,
        }
    }
}
