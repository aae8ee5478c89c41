//! What provider actors tell the router: each call's latency, and that a breaker
//! opened. Provider actors hold a `DerivedActorRef<Observation>` of the router, so they
//! see only these messages, and the two actors' files do not depend on each other.

use std::sync::Arc;

use super::instance_state::InstanceState;

/// An instance's breaker opened until `until_ms` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BreakerOpened {
    /// The config.
    pub config_id: switchyard_core::ConfigId,
    /// Its version (a notice about another version is ignored).
    pub version: i64,
    /// When it turns half-open.
    pub until_ms: u64,
}

/// One thing a provider actor saw.
#[derive(Debug)]
pub enum Observation {
    /// Calls answered after these latencies (ms, oldest first), for the latency
    /// strategy; sent in batches (see the provider actor's `REPORT_BATCH`).
    Latency {
        /// The instance's live state.
        state: Arc<InstanceState>,
        /// How long each call took.
        samples: Vec<f64>,
    },
    /// This process's breaker of an instance opened.
    BreakerOpened(BreakerOpened),
}
