//! `[retention]`: how long finished tasks, their images and usage rows are kept where
//! a tenant has no policy of its own (set with `PUT /v1/tenants/{tenant}/retention`),
//! and how the cluster's one cleaner runs.

use serde::Deserialize;
use switchyard_core::FieldError;

use crate::store::RetentionPolicy;

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Whether this process takes part in cleaning (one process of the cluster runs
    /// at a time, chosen by a lease in the database).
    pub enabled: bool,
    /// Days a finished task is kept after it ended (0: for ever).
    pub tasks_days: u32,
    /// Days a task's images (and an uploaded image) are kept (0: for ever). An image
    /// a kept task still references is never deleted.
    pub artifacts_days: u32,
    /// Days a usage row is kept (0: for ever, else at least 32).
    pub usage_days: u32,
    /// How often the cluster's cleaner runs.
    pub interval_ms: u64,
    /// Rows per delete (each batch is one short transaction).
    pub batch: u32,
    /// An image that lost its last reference is deleted only once it was not
    /// written for this long (a request storing the same bytes again rewrites an
    /// image older than an hour, so keep this above one hour plus the longest
    /// request).
    pub grace_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tasks_days: 30,
            artifacts_days: 30,
            usage_days: 400,
            interval_ms: 3_600_000,
            batch: 1_000,
            grace_ms: 2 * 3_600_000,
        }
    }
}

impl RetentionSettings {
    /// The default policy.
    pub fn defaults(&self) -> RetentionPolicy {
        RetentionPolicy {
            tasks_days: Some(self.tasks_days),
            artifacts_days: Some(self.artifacts_days),
            usage_days: Some(self.usage_days),
        }
    }

    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        if let Err(e) = self.defaults().check() {
            errors.push(FieldError::new("retention", e));
        }
        let least = crate::artifacts::REFRESH_AFTER.num_milliseconds() + 60_000;
        if i64::try_from(self.grace_ms).unwrap_or(i64::MAX) < least {
            errors.push(FieldError::new(
                "retention.grace_ms",
                format!(
                    "must be at least {least} (an hour and a minute: an image stored again \
                     is rewritten only once an hour old)"
                ),
            ));
        }
        if self.interval_ms < 100 {
            errors.push(FieldError::new("retention.interval_ms", "must be >= 100"));
        }
        if self.batch == 0 || self.batch > 10_000 {
            errors.push(FieldError::new("retention.batch", "must be 1..=10000"));
        }
    }
}
