//! The bounded in-memory tier of the answer cache (#18 §6), in front of the
//! database's: `cache: true` answers this process made or read, by tenant and cache
//! key, each kept as long as its kind's lifetime (`[cache]`), the least used dropped
//! first when full. The database stays the record (other replicas read it); the tier
//! only saves the query. An answer's image links are signed afresh on every use.

use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use switchyard_core::Kind;

use crate::{engine::CachedAnswer, settings::CacheSettings};

/// One kind family's answers, by tenant and cache key, with when each was made.
type Answers = Cache<(String, String), (CachedAnswer, DateTime<Utc>)>;

/// The in-memory tier (module docs). Cheap to clone.
#[derive(Clone)]
pub(super) struct CacheTier {
    settings: CacheSettings,
    text: Option<Answers>,
    image: Option<Answers>,
}

impl std::fmt::Debug for CacheTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheTier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl CacheTier {
    /// A tier for `settings` (none in memory when `memory_entries` is 0).
    pub(super) fn new(settings: CacheSettings) -> Self {
        let build = |ttl: Duration| {
            (settings.memory_entries > 0).then(|| {
                Cache::builder()
                    .max_capacity(settings.memory_entries)
                    .time_to_live(ttl)
                    .build()
            })
        };
        Self {
            text: build(settings.ttl(Kind::TextGenerate)),
            image: build(settings.ttl(Kind::ImageGenerate)),
            settings,
        }
    }

    /// How long an answer of `kind` answers identical requests.
    pub(super) fn ttl(&self, kind: Kind) -> Duration {
        self.settings.ttl(kind)
    }

    fn answers(&self, kind: Kind) -> Option<&Answers> {
        if kind.is_image() {
            self.image.as_ref()
        } else {
            self.text.as_ref()
        }
    }

    /// The answer kept for `tenant`'s `key`, if it is still within its kind's
    /// lifetime (counted from when the provider made it, not from when it was kept).
    pub(super) fn get(&self, kind: Kind, tenant: &str, key: &str) -> Option<CachedAnswer> {
        let (answer, made) = self
            .answers(kind)?
            .get(&(tenant.to_owned(), key.to_owned()))?;
        let age = (Utc::now() - made).to_std().unwrap_or_default();
        (age <= self.ttl(kind)).then_some(answer)
    }

    /// Keeps `answer`, which a provider made at `made`, for `tenant`'s `key` (not if
    /// it is past its kind's lifetime already).
    pub(super) fn put(
        &self,
        kind: Kind,
        tenant: &str,
        key: &str,
        answer: CachedAnswer,
        made: DateTime<Utc>,
    ) {
        let age = (Utc::now() - made).to_std().unwrap_or_default();
        if let Some(answers) = self.answers(kind)
            && age <= self.ttl(kind)
        {
            answers.insert((tenant.to_owned(), key.to_owned()), (answer, made));
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::{ConfigId, Output, ProviderRef, ProviderType};

    use super::*;

    fn answer(text: &str) -> CachedAnswer {
        CachedAnswer {
            output: Output {
                images: Vec::new(),
                text: Some(text.to_owned()),
            },
            provider: ProviderRef {
                config_id: ConfigId(1),
                name: "m".into(),
                provider_type: ProviderType::Mock,
                model: None,
            },
        }
    }

    #[test]
    fn answers_are_kept_per_tenant_and_kind_and_none_without_memory() {
        let tier = CacheTier::new(CacheSettings::default());
        tier.put(Kind::TextGenerate, "acme", "k", answer("hi"), Utc::now());
        assert_eq!(
            tier.get(Kind::TextGenerate, "acme", "k"),
            Some(answer("hi"))
        );
        assert_eq!(tier.get(Kind::TextGenerate, "globex", "k"), None);
        assert_eq!(tier.get(Kind::ImageGenerate, "acme", "k"), None);
        assert_eq!(tier.ttl(Kind::ImageEdit), Duration::from_secs(24 * 3600));
        let none = CacheTier::new(CacheSettings {
            memory_entries: 0,
            ..CacheSettings::default()
        });
        none.put(Kind::TextGenerate, "acme", "k", answer("hi"), Utc::now());
        assert_eq!(none.get(Kind::TextGenerate, "acme", "k"), None);
        // An answer past its lifetime (a stale fallback's, say) is not kept.
        let old = Utc::now() - chrono::TimeDelta::hours(2);
        tier.put(Kind::TextGenerate, "acme", "old", answer("old"), old);
        assert_eq!(tier.get(Kind::TextGenerate, "acme", "old"), None);
    }
}
