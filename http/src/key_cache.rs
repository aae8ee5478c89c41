//! Tenant-key lookups, cached briefly, with lookups of unknown keys rate-limited: a
//! flood of made-up bearer tokens costs the database at most [`LOOKUPS_PER_SECOND`]
//! queries a second instead of one each (the pool the pipeline writes through). A
//! known key's answer is kept [`HIT_TTL`] (so a revoked key stops working within that
//! long), an unknown key's [`MISS_TTL`]. Requests that arrive with the same key while
//! it is being looked up wait for that one lookup instead of making (and being
//! throttled for) their own, so a burst on a new key costs one query.

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
    /// Keys being looked up now: their lookup says `true` when its answer is in.
    pending: HashMap<String, tokio::sync::watch::Sender<bool>>,
    /// Bumped by [`KeyCache::clear`]: an answer read before it is not kept.
    generation: u64,
}

/// What the cache says of a key.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// Known: this tenant's key, or no key at all.
    Answer(Option<String>),
    /// Not known: the database may be asked.
    LookUp,
    /// Not known, and the lookups of this second are used up: refuse without asking.
    Throttled,
    /// Being looked up by another request: wait for it, then ask again.
    Pending(tokio::sync::watch::Receiver<bool>),
}

impl PartialEq for Cached {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Answer(a), Self::Answer(b)) => a == b,
            (Self::LookUp, Self::LookUp)
            | (Self::Throttled, Self::Throttled)
            | (Self::Pending(_), Self::Pending(_)) => true,
            _ => false,
        }
    }
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
        if let Some(lookup) = state.pending.get(key) {
            return Cached::Pending(lookup.subscribe());
        }
        // A key that was live when last asked is looked up again outside the budget
        // (there are only as many as real keys), so a flood of made-up keys cannot lock
        // real tenants out once their answers expire.
        let known = matches!(state.entries.get(key), Some((Some(_), _)));
        if known {
            state
                .pending
                .insert(key.to_owned(), tokio::sync::watch::Sender::new(false));
            return Cached::LookUp;
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
        state
            .pending
            .insert(key.to_owned(), tokio::sync::watch::Sender::new(false));
        Cached::LookUp
    }

    /// A lookup of `key` that got [`Cached::LookUp`] failed: the requests waiting on it
    /// ask again.
    pub(crate) fn abandon(&self, key: &str) {
        if let Ok(mut state) = self.state.lock()
            && let Some(lookup) = state.pending.remove(key)
        {
            lookup.send_replace(true);
        }
    }

    /// Forgets every answer (a key was revoked: it stops working here at once). Live
    /// keys stay known, to be looked up again outside the budget, and a lookup under way
    /// since before is not kept.
    pub(crate) fn clear(&self) {
        if let Ok(mut state) = self.state.lock() {
            let past = Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or_else(Instant::now);
            state.entries.retain(|_, (answer, _)| answer.is_some());
            for (_, until) in state.entries.values_mut() {
                *until = past;
            }
            state.generation += 1;
        }
    }

    /// Remembers the database's answer for `key` (tests: as if read just now).
    #[cfg(test)]
    fn put(&self, key: &str, answer: Option<String>, now: Instant) {
        self.put_since(key, answer, now, self.generation());
    }

    /// The generation answers are kept for (see [`KeyCache::clear`]).
    fn generation(&self) -> u64 {
        self.state.lock().map_or(0, |state| state.generation)
    }

    /// Remembers the database's answer for `key`, read since `generation`.
    fn put_since(&self, key: &str, answer: Option<String>, now: Instant, generation: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.generation != generation {
            // Cleared while the answer was read: it may predate a revocation.
            if let Some(lookup) = state.pending.remove(key) {
                lookup.send_replace(true);
            }
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.retain(|_, (_, until)| now < *until);
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
        }
        let ttl = if answer.is_some() { HIT_TTL } else { MISS_TTL };
        state.entries.insert(key.to_owned(), (answer, now + ttl));
        if let Some(lookup) = state.pending.remove(key) {
            lookup.send_replace(true);
        }
    }
}

/// A lookup under way (after [`Cached::LookUp`]): answered, or abandoned on drop.
pub(crate) struct Lookup<'a> {
    cache: &'a KeyCache,
    key: &'a str,
    generation: u64,
    answered: bool,
}

impl<'a> Lookup<'a> {
    pub(crate) fn new(cache: &'a KeyCache, key: &'a str) -> Self {
        Self {
            cache,
            key,
            generation: cache.generation(),
            answered: false,
        }
    }

    /// The database's answer: remembered (unless the cache was cleared meanwhile), and
    /// told to those waiting.
    pub(crate) fn answer(mut self, tenant: Option<String>, now: Instant) {
        self.cache.put_since(self.key, tenant, now, self.generation);
        self.answered = true;
    }
}

impl Drop for Lookup<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.cache.abandon(self.key);
        }
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

    #[test]
    fn a_flood_of_made_up_keys_does_not_lock_out_a_live_key_whose_answer_expired() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get("sy_live", t0), Cached::LookUp);
        cache.put("sy_live", Some("acme".into()), t0);
        let later = t0 + HIT_TTL + Duration::from_secs(1);
        for i in 0..1000 {
            let _ = cache.get(&format!("sy_flood_{i}"), later);
        }
        assert_eq!(cache.get("sy_made_up", later), Cached::Throttled);
        assert_eq!(
            cache.get("sy_live", later),
            Cached::LookUp,
            "the live key is asked again"
        );
    }

    #[test]
    fn an_answer_read_before_a_revocation_is_not_kept() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get("sy_k", t0), Cached::LookUp);
        let lookup = Lookup::new(&cache, "sy_k");
        cache.clear();
        lookup.answer(Some("acme".into()), t0);
        assert_eq!(
            cache.get("sy_k", t0),
            Cached::LookUp,
            "asked again, not served stale"
        );
        // A live key's answer is forgotten by a revocation, and asked again.
        cache.put("sy_k", Some("acme".into()), t0);
        cache.clear();
        assert_eq!(cache.get("sy_k", t0), Cached::LookUp);
    }

    #[test]
    fn a_burst_on_one_key_waits_for_its_one_lookup() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get("sy_burst", t0), Cached::LookUp);
        // Everyone else with the same key waits for that lookup, taking no slot.
        let waiting: Vec<_> = (0..2 * LOOKUPS_PER_SECOND)
            .map(|_| cache.get("sy_burst", t0))
            .collect();
        assert!(waiting.iter().all(|c| matches!(c, Cached::Pending(_))));
        assert_eq!(cache.get("sy_other", t0), Cached::LookUp, "slots are left");
        cache.put("sy_burst", Some("acme".into()), t0);
        for cached in waiting {
            let Cached::Pending(done) = cached else {
                unreachable!()
            };
            assert!(*done.borrow(), "told the answer is in");
        }
        assert_eq!(
            cache.get("sy_burst", t0),
            Cached::Answer(Some("acme".into()))
        );
        // A failed lookup lets the next request look up again.
        cache.abandon("sy_other");
        assert_eq!(cache.get("sy_other", t0), Cached::LookUp);
    }
}
