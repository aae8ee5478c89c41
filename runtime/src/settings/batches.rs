//! `[batches]`: how batch jobs (#18 §9) are taken in and run.

use serde::Deserialize;
use switchyard_core::FieldError;

/// `[batches]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// Batch commands queued or running at once, in the whole cluster: interactive
    /// traffic keeps the rest of the capacity.
    pub concurrency: u32,
    /// The most commands one batch may hold.
    pub max_commands: u32,
    /// How often the dispatcher looks for free room and new batches (a batch posted to
    /// this process is looked at at once).
    pub poll_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_commands: 10_000,
            poll_ms: 250,
        }
    }
}

impl BatchSettings {
    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        if !(1..=10_000).contains(&self.concurrency) {
            errors.push(FieldError::new("batches.concurrency", "must be 1..=10000"));
        }
        if !(1..=100_000).contains(&self.max_commands) {
            errors.push(FieldError::new(
                "batches.max_commands",
                "must be 1..=100000",
            ));
        }
        if !(10..=60_000).contains(&self.poll_ms) {
            errors.push(FieldError::new("batches.poll_ms", "must be 10..=60000"));
        }
    }
}
