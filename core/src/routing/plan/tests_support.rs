//! A routing view for tests: an instance's config and live state, set by hand.

use super::RoutingView;
use crate::ProviderConfig;

/// An instance as the planner sees it.
#[derive(Debug)]
pub(crate) struct Fake {
    pub(crate) config: ProviderConfig,
    pub(crate) open_until: Option<u64>,
    pub(crate) cooling_until: Option<u64>,
    pub(crate) failed: bool,
    pub(crate) in_flight: u32,
    pub(crate) latency: Option<f64>,
}

impl Fake {
    /// A healthy, idle instance of `config`.
    pub(crate) fn new(config: ProviderConfig) -> Self {
        Self {
            config,
            open_until: None,
            cooling_until: None,
            failed: false,
            in_flight: 0,
            latency: None,
        }
    }
}

impl RoutingView for Fake {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }
    fn breaker_open_until(&self) -> Option<u64> {
        self.open_until
    }
    fn cooling_until(&self) -> Option<u64> {
        self.cooling_until
    }
    fn failed(&self) -> bool {
        self.failed
    }
    fn in_flight(&self) -> u32 {
        self.in_flight
    }
    fn latency_ewma_ms(&self) -> Option<f64> {
        self.latency
    }
}
