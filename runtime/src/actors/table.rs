//! The routing table the router publishes, and what it shows of each instance.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use ractor::ActorRef;
use serde::Serialize;
use switchyard_core::{ConfigId, ProviderConfig, routing::RoutingView};

use super::{instance_state::InstanceState, provider::ProviderMsg};

/// One live instance in the routing table.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Its validated config.
    pub config: Arc<ProviderConfig>,
    /// Its live state.
    pub state: Arc<InstanceState>,
    /// Its actor; `None` while the supervisor restarts it.
    pub actor: Option<ActorRef<ProviderMsg>>,
}

impl RoutingView for Instance {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }
    fn breaker_open_until(&self) -> Option<u64> {
        let local = self.state.breaker_open_until.load(Ordering::Relaxed);
        let remote = self.state.remote_open_until.load(Ordering::Relaxed);
        Some(local.max(remote)).filter(|u| *u > 0)
    }
    fn cooling_until(&self) -> Option<u64> {
        Some(self.state.cooling_until.load(Ordering::Relaxed)).filter(|u| *u > 0)
    }
    fn failed(&self) -> bool {
        self.actor.is_none()
            || self.state.failed.load(Ordering::Relaxed)
            || self.state.restarting.load(Ordering::Relaxed)
    }
    fn in_flight(&self) -> u32 {
        self.state.in_flight.load(Ordering::Relaxed)
    }
    fn latency_ewma_ms(&self) -> Option<f64> {
        self.state
            .has_latency
            .load(Ordering::Relaxed)
            .then(|| f64::from_bits(self.state.latency_ewma_bits.load(Ordering::Relaxed)))
    }
}

/// A config that exists but is disabled: id, name and owner (a tenant's own account).
pub type DisabledConfig = (ConfigId, String, Option<String>);

/// The immutable snapshot requests route against.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// Live instances (enabled, valid, with an actor or being restarted).
    pub instances: Vec<Instance>,
    /// Configs that exist but are disabled: for clear `config_id` errors.
    pub disabled: Vec<DisabledConfig>,
    /// Whether any live instance is a tenant's own account (most tables have none:
    /// then nothing needs looking up).
    pub owned: bool,
    /// The router's round-robin cursor, shared by every snapshot it publishes.
    pub(super) cursor: Arc<AtomicU64>,
}

impl RoutingTable {
    /// Takes the next round-robin ticket (one per routed request).
    pub fn ticket(&self) -> u64 {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

/// What `GET /v1/providers/status` shows for one instance.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceStatus {
    /// Config id.
    pub config_id: ConfigId,
    /// Config name.
    pub name: String,
    /// Provider type.
    pub provider: String,
    /// Config version the actor runs.
    pub version: i64,
    /// `running`, `restarting` or `failed`.
    pub actor: &'static str,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// When an open breaker turns half-open (Unix ms).
    pub breaker_open_until_ms: Option<u64>,
    /// When a 429 cool-down ends (Unix ms).
    pub cooling_until_ms: Option<u64>,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls waiting for the limiter or a concurrency slot.
    pub queued: u32,
    /// Latency EWMA in ms.
    pub latency_ewma_ms: Option<f64>,
    /// Actor restarts so far.
    pub restarts: u32,
    /// Calls finished.
    pub requests: u64,
    /// Calls failed.
    pub errors: u64,
    /// Calls that had to wait for the limiter or a slot.
    pub limiter_waits: u64,
    /// The last error message.
    pub last_error: Option<String>,
}

impl Instance {
    /// The instance's status now.
    pub fn status(&self, now_ms: u64) -> InstanceStatus {
        let s = &self.state;
        let open_until = self.breaker_open_until().filter(|u| now_ms < *u);
        let breaker = if open_until.is_some() {
            "open"
        } else if s.breaker_half_open.load(Ordering::Relaxed) || self.breaker_open_until().is_some()
        {
            "half_open"
        } else {
            "closed"
        };
        InstanceStatus {
            config_id: self.config.id,
            name: self.config.spec.name.clone(),
            provider: self.config.spec.provider.as_str().to_owned(),
            version: self.config.version,
            actor: if s.failed.load(Ordering::Relaxed) {
                "failed"
            } else if self.actor.is_none() || s.restarting.load(Ordering::Relaxed) {
                "restarting"
            } else {
                "running"
            },
            breaker,
            breaker_open_until_ms: open_until,
            cooling_until_ms: self.cooling_until().filter(|u| now_ms < *u),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            latency_ewma_ms: self.latency_ewma_ms(),
            restarts: s.restarts.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            limiter_waits: s.limiter_waits.load(Ordering::Relaxed),
            last_error: s.last_error.load_full().map(|e| (*e).clone()),
        }
    }
}
