//! A routing view for tests: an instance's config and live state, set by hand.

use chrono::{TimeZone, Utc};

use super::RoutingView;
use crate::{ConfigId, ProviderConfig, provider::ProviderConfigDraft};

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

/// A `mock` instance `i{id}` with `json` laid over its config.
pub(crate) fn fake(id: i64, json: serde_json::Value) -> Fake {
    let mut value = serde_json::json!({"name": format!("i{id}"), "provider": "mock"});
    for (k, v) in json.as_object().into_iter().flatten() {
        value[k] = v.clone();
    }
    let draft: ProviderConfigDraft = serde_json::from_value(value).unwrap();
    Fake::new(ProviderConfig {
        id: ConfigId(id),
        spec: draft.validate().unwrap(),
        version: 1,
        created_at: Utc.timestamp_opt(0, 0).unwrap(),
        updated_at: Utc.timestamp_opt(0, 0).unwrap(),
    })
}
