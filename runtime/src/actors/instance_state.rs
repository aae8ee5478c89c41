//! The live state of one provider instance, in atomics: written only by its provider
//! actor (and, for `failed`/`restarting`, its supervisor), read by every request's
//! routing plan without a lock.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use arc_swap::ArcSwapOption;

/// Live state of one instance. Written only by its provider actor (and, for
/// `failed`/`restarting`, its supervisor); read by every request's router.
#[derive(Debug, Default)]
pub struct InstanceState {
    pub(super) breaker_open_until: AtomicU64,
    /// Set from other replicas' announcements (the remote-notice handler is its only writer).
    pub(super) remote_open_until: AtomicU64,
    pub(super) breaker_half_open: AtomicBool,
    pub(super) cooling_until: AtomicU64,
    pub(super) in_flight: AtomicU32,
    pub(super) queued: AtomicU32,
    pub(super) latency_ewma_bits: AtomicU64,
    pub(super) has_latency: AtomicBool,
    pub(super) failed: AtomicBool,
    pub(super) restarting: AtomicBool,
    pub(super) restarts: AtomicU32,
    pub(super) requests: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) limiter_waits: AtomicU64,
    pub(super) last_error: ArcSwapOption<String>,
}

impl InstanceState {
    /// The state of a new actor that replaces one whose config was edited: the live
    /// numbers that count over the instance's life (requests, errors, limiter waits,
    /// restarts, the latency average and the last error) go on from `old`'s; the
    /// breaker, cool-down and what is in flight start afresh (the edit may be the fix).
    pub(crate) fn carried_from(old: &InstanceState) -> Self {
        let state = InstanceState::default();
        for (new, old) in [
            (&state.requests, &old.requests),
            (&state.errors, &old.errors),
            (&state.limiter_waits, &old.limiter_waits),
            (&state.latency_ewma_bits, &old.latency_ewma_bits),
        ] {
            new.store(old.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        state
            .restarts
            .store(old.restarts.load(Ordering::Relaxed), Ordering::Relaxed);
        state
            .has_latency
            .store(old.has_latency.load(Ordering::Relaxed), Ordering::Relaxed);
        state.last_error.store(old.last_error.load_full());
        state
    }

    pub(crate) fn set_breaker(&self, open_until: Option<u64>, half_open: bool) {
        self.breaker_open_until
            .store(open_until.unwrap_or(0), Ordering::Relaxed);
        self.breaker_half_open.store(half_open, Ordering::Relaxed);
    }

    /// Another replica saw this instance's breaker open until `until_ms`.
    pub fn set_remote_open_until(&self, until_ms: u64) {
        self.remote_open_until
            .fetch_max(until_ms, Ordering::Relaxed);
    }

    pub(crate) fn set_cooling_until(&self, until_ms: u64) {
        self.cooling_until.store(until_ms, Ordering::Relaxed);
    }

    pub(crate) fn set_in_flight(&self, in_flight: u32, queued: u32) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
        self.queued.store(queued, Ordering::Relaxed);
    }

    pub(crate) fn observe_latency(&self, latency_ms: f64) {
        const ALPHA: f64 = 0.2;
        let next = if self.has_latency.load(Ordering::Relaxed) {
            let previous = f64::from_bits(self.latency_ewma_bits.load(Ordering::Relaxed));
            previous + ALPHA * (latency_ms - previous)
        } else {
            latency_ms
        };
        self.latency_ewma_bits
            .store(next.to_bits(), Ordering::Relaxed);
        self.has_latency.store(true, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, error: Option<String>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(message) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.last_error.store(Some(Arc::new(message)));
        }
    }

    pub(crate) fn count_limiter_wait(&self, config: &str) {
        self.limiter_waits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("switchyard_provider_limiter_waits_total", "config" => config.to_owned())
            .increment(1);
    }

    pub(crate) fn set_failed(&self, failed: bool) {
        self.failed.store(failed, Ordering::Relaxed);
    }

    pub(crate) fn set_restarting(&self, restarting: bool) {
        self.restarting.store(restarting, Ordering::Relaxed);
    }

    pub(crate) fn add_restart(&self) -> u32 {
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}
