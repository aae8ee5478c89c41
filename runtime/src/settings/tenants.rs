//! `[tenants]`: the per-tenant limits at intake that apply where a tenant has none of
//! its own (set with `PUT /v1/tenants/{tenant}/limits` or `switchyard limits set`),
//! and what a bus command over them does.

use serde::Deserialize;
use switchyard_core::FieldError;

use crate::store::TenantLimits;

/// What a command over its tenant's limits does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverLimit {
    /// Waits for its turn, at most `max_wait_ms`; then fails with `rate_limited`.
    #[default]
    Wait,
    /// Fails at once with `rate_limited` (retryable).
    Fail,
}

/// `[tenants]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// Requests per minute of a tenant without its own (none: unlimited).
    pub rpm: Option<u32>,
    /// Requests at once of a tenant without its own (none: unlimited).
    pub concurrency: Option<u32>,
    /// Requests per minute of each user (none: unlimited).
    pub user_rpm: Option<u32>,
    /// Requests at once of each user (none: unlimited).
    pub user_concurrency: Option<u32>,
    /// `wait` or `fail`: what a bus command over its limits does. A synchronous HTTP
    /// call over them is answered 429 with `Retry-After` either way.
    pub over_limit: OverLimit,
    /// The longest a bus command waits for its tenant's turn before it fails with
    /// `rate_limited`.
    pub max_wait_ms: u64,
    /// How a tenant's own provider accounts (bring your own key) are used next to the
    /// shared ones, where the tenant has no setting of its own: `prefer`, `only` or
    /// `never`.
    pub own_accounts: switchyard_core::routing::OwnAccounts,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            rpm: None,
            concurrency: None,
            user_rpm: None,
            user_concurrency: None,
            over_limit: OverLimit::Wait,
            max_wait_ms: 30_000,
            own_accounts: switchyard_core::routing::OwnAccounts::Prefer,
        }
    }
}

impl TenantSettings {
    /// The default limits.
    pub fn defaults(&self) -> TenantLimits {
        TenantLimits {
            rpm: self.rpm,
            concurrency: self.concurrency,
            user_rpm: self.user_rpm,
            user_concurrency: self.user_concurrency,
            own_accounts: Some(self.own_accounts),
        }
    }

    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        if let Err(e) = self.defaults().check() {
            errors.push(FieldError::new("tenants", e));
        }
        if self.max_wait_ms == 0 {
            errors.push(FieldError::new("tenants.max_wait_ms", "must be > 0"));
        }
    }
}
