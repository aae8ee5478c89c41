//! `[cache]`: how long a `cache: true` answer may answer an identical request, per
//! kind, and the bounded in-memory tier in front of the database (#18 §6).

use std::time::Duration;

use serde::Deserialize;
use switchyard_core::{FieldError, Kind};

/// The longest lifetime a cached answer may be given.
const MAX_TTL_MS: u64 = 30 * 24 * 3_600_000;

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// How long a text answer answers identical requests.
    pub text_ttl_ms: u64,
    /// How long an image answer (generation or edit) answers identical requests.
    pub image_ttl_ms: u64,
    /// Answers kept in this process's memory in front of the database (0: none).
    pub memory_entries: u64,
}

impl Default for CacheSettings {
    /// Seed 004's table: text for an hour, images for a day.
    fn default() -> Self {
        Self {
            text_ttl_ms: 3_600_000,
            image_ttl_ms: 24 * 3_600_000,
            memory_entries: 10_000,
        }
    }
}

impl CacheSettings {
    /// How long an answer of `kind` answers identical requests.
    pub fn ttl(&self, kind: Kind) -> Duration {
        Duration::from_millis(if kind.is_image() {
            self.image_ttl_ms
        } else {
            self.text_ttl_ms
        })
    }

    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        for (key, ttl) in [
            ("cache.text_ttl_ms", self.text_ttl_ms),
            ("cache.image_ttl_ms", self.image_ttl_ms),
        ] {
            if !(1_000..=MAX_TTL_MS).contains(&ttl) {
                errors.push(FieldError::new(
                    key,
                    format!("must be 1000..={MAX_TTL_MS} (30 days)"),
                ));
            }
        }
        if self.memory_entries > 1_000_000 {
            errors.push(FieldError::new(
                "cache.memory_entries",
                "must be at most 1000000",
            ));
        }
    }
}
