//! Tenant-key lookups, cached briefly, with lookups of unknown keys rate-limited: a
//! flood of made-up bearer tokens costs the database at most [`LOOKUPS_PER_SECOND`]
//! queries a second instead of one each (the pool the pipeline writes through). A
//! known key's answer is kept [`HIT_TTL`] (so a revoked key stops working within that
//! long), an unknown key's [`MISS_TTL`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long a live key's tenant is remembered.
pub(crate) const HIT_TTL: Duration = Duration::from_secs(10);
/// How long "no such key" is remembered.
pub(crate) const MISS_TTL: Duration = Duration::from_secs(5);
/// Database lookups of keys not in the cache, at most, per second.
pub(crate) const LOOKUPS_PER_SECOND: u32 = 50;
/// Entries at most; past it, expired ones go, then all.
const MAX_ENTRIES: usize = 10_000;

/// The cache (cheap to clone; clones share it).
#[derive(Clone, Default)]
pub(crate) struct KeyCache {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets: never printed.
        f.write_str("KeyCache(…)")
    }
}

#[derive(Default)]
struct State {
    /// Key → (its tenant, or none), and until when the answer holds.
    entries: HashMap<String, (Option<String>, Instant)>,
    /// The current one-second window of lookups, and how many it had.
    window: Option<(Instant, u32)>,
}

/// What the cache says of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Known: this tenant's key, or no key at all.
    Answer(Option<String>),
    /// Not known: the database may be asked.
    LookUp,
    /// Not known, and the lookups of this second are used up: refuse without asking.
    Throttled,
}

impl KeyCache {
    /// What is known of `key` now.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Cached {
        let Ok(mut state) = self.state.lock() else {
            return Cached::LookUp;
        };
        if let Some((answer, until)) = state.entries.get(key)
            && now < *until
        {
            return Cached::Answer(answer.clone());
        }
        let (start, used) = match state.window {
            Some((start, used)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, used)
            }
            _ => (now, 0),
        };
        if used >= LOOKUPS_PER_SECOND {
            metrics::counter!("switchyard_tenant_key_lookups_throttled_total").increment(1);
            return Cached::Throttled;
        }
        state.window = Some((start, used + 1));
        Cached::LookUp
    }

    /// Forgets every answer (a key was revoked: it stops working here at once).
    pub(crate) fn clear(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.entries.clear();
        }
    }

    /// Remembers the database's answer for `key`.
    pub(crate) fn put(&self, key: &str, answer: Option<String>, now: Instant) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.retain(|_, (_, until)| now < *until);
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
        }
        let ttl = if answer.is_some() { HIT_TTL } else { MISS_TTL };
        state.entries.insert(key.to_owned(), (answer, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_for_their_ttl_and_unknown_lookups_are_throttled() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get("sy_a", t0), Cached::LookUp);
        cache.put("sy_a", Some("acme".into()), t0);
        assert_eq!(cache.get("sy_a", t0), Cached::Answer(Some("acme".into())));
        assert_eq!(cache.get("sy_a", t0 + HIT_TTL), Cached::LookUp);
        cache.put("sy_x", None, t0);
        assert_eq!(cache.get("sy_x", t0 + MISS_TTL / 2), Cached::Answer(None));
        // A flood of made-up keys: the lookups of one second run out …
        let later = t0 + Duration::from_secs(30);
        let mut looked_up = 0;
        for i in 0..1000 {
            if cache.get(&format!("sy_flood_{i}"), later) == Cached::LookUp {
                looked_up += 1;
            }
        }
        assert_eq!(looked_up, LOOKUPS_PER_SECOND);
        // … and come back the next second; cached answers are served throughout.
        cache.put("sy_b", Some("globex".into()), later);
        assert_eq!(
            cache.get("sy_b", later),
            Cached::Answer(Some("globex".into()))
        );
        assert_eq!(
            cache.get("sy_new", later + Duration::from_secs(1)),
            Cached::LookUp
        );
    }
}
