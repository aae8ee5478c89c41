//! `[webhooks]`: how tenants' webhook endpoints are called (registered at
//! `/v1/tenants/{tenant}/webhooks`): attempts, retries and bounds.

use serde::Deserialize;
use switchyard_core::FieldError;

const DAY_MS: u64 = 86_400_000;

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Whether this process takes events for webhooks and sends deliveries (every
    /// process of a cluster may: each event and each attempt is taken by one).
    pub enabled: bool,
    /// How long a delivery is retried after its event, before it is given up.
    pub retry_for_ms: u64,
    /// The wait before the first retry; each next one waits twice as long.
    pub first_retry_ms: u64,
    /// The longest wait between two attempts.
    pub max_retry_ms: u64,
    /// The longest one attempt may take, connection to answer.
    pub timeout_ms: u64,
    /// Attempts at once in this process.
    pub concurrency: u32,
    /// How often due retries are looked for (new events are sent at once).
    pub poll_ms: u64,
    /// The most endpoints a tenant may register.
    pub max_per_tenant: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            retry_for_ms: 24 * 3_600_000,
            first_retry_ms: 5_000,
            max_retry_ms: 3_600_000,
            timeout_ms: 10_000,
            concurrency: 16,
            poll_ms: 1_000,
            max_per_tenant: 10,
        }
    }
}

impl WebhookSettings {
    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        for (key, value) in [
            ("webhooks.first_retry_ms", self.first_retry_ms),
            ("webhooks.max_retry_ms", self.max_retry_ms),
            ("webhooks.timeout_ms", self.timeout_ms),
            ("webhooks.poll_ms", self.poll_ms),
        ] {
            if value == 0 {
                errors.push(FieldError::new(key, "must be > 0"));
            }
        }
        for (key, value, most) in [
            ("webhooks.retry_for_ms", self.retry_for_ms, 30 * DAY_MS),
            ("webhooks.max_retry_ms", self.max_retry_ms, DAY_MS),
            ("webhooks.timeout_ms", self.timeout_ms, 300_000),
            ("webhooks.poll_ms", self.poll_ms, 3_600_000),
        ] {
            if value > most {
                errors.push(FieldError::new(key, format!("at most {most}")));
            }
        }
        if self.first_retry_ms > self.max_retry_ms {
            errors.push(FieldError::new(
                "webhooks.first_retry_ms",
                "must not exceed max_retry_ms",
            ));
        }
        if self.concurrency == 0 || self.concurrency > 1_000 {
            errors.push(FieldError::new("webhooks.concurrency", "must be 1..=1000"));
        }
        if self.max_per_tenant == 0 {
            errors.push(FieldError::new("webhooks.max_per_tenant", "must be > 0"));
        }
    }
}
