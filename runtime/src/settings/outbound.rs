//! `[outbound]`: the guard every fetch of a URL from outside the operator's config goes
//! through (input images, provider result URLs on foreign hosts, plugin HTTP).

use std::time::Duration;

use serde::Deserialize;
use switchyard_core::FieldError;

use crate::guard::{AllowEntry, Guard, OutboundPolicy};

/// `[outbound]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Hosts (`images.internal`, `*.corp.example`) and networks (`10.1.0.0/16`) that
    /// may be fetched from although they are internal.
    pub allow: Vec<String>,
    /// Hosts and networks a tenant's own provider account (bring your own key) may
    /// reach although they are internal; `allow` does not apply to tenants' endpoints.
    pub tenant_allow: Vec<String>,
    /// The most one fetch may take, connection to last byte.
    pub timeout_ms: u64,
    /// The most bytes one fetch may read.
    pub max_fetch_bytes: usize,
    /// The most bytes all of one command's fetches may read together.
    pub max_command_bytes: usize,
    /// Fetches at once in this process.
    pub max_concurrent: usize,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        let policy = OutboundPolicy::default();
        Self {
            allow: Vec::new(),
            tenant_allow: Vec::new(),
            timeout_ms: u64::try_from(policy.timeout.as_millis()).unwrap_or(30_000),
            max_fetch_bytes: policy.max_fetch_bytes,
            max_command_bytes: policy.max_command_bytes,
            max_concurrent: policy.max_concurrent,
        }
    }
}

impl OutboundSettings {
    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        for (key, entries) in [
            ("outbound.allow", &self.allow),
            ("outbound.tenant_allow", &self.tenant_allow),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                if let Err(e) = entry.parse::<AllowEntry>() {
                    errors.push(FieldError::new(format!("{key}[{i}]"), e.to_string()));
                }
            }
        }
        for (key, value) in [
            ("outbound.timeout_ms", self.timeout_ms as usize),
            ("outbound.max_fetch_bytes", self.max_fetch_bytes),
            ("outbound.max_command_bytes", self.max_command_bytes),
            ("outbound.max_concurrent", self.max_concurrent),
        ] {
            if value == 0 {
                errors.push(FieldError::new(key, "must be > 0"));
            }
        }
    }

    /// The guard these settings describe (entries that do not parse were refused by
    /// validation and are skipped here).
    pub fn guard(&self) -> Guard {
        Guard::new(OutboundPolicy {
            allow: self.allow.iter().filter_map(|e| e.parse().ok()).collect(),
            tenant_allow: self
                .tenant_allow
                .iter()
                .filter_map(|e| e.parse().ok())
                .collect(),
            timeout: Duration::from_millis(self.timeout_ms),
            max_fetch_bytes: self.max_fetch_bytes,
            max_command_bytes: self.max_command_bytes,
            max_concurrent: self.max_concurrent,
        })
    }
}
