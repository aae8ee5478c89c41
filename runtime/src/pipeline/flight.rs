//! Single flight for `cache: true` requests (#18 §6): identical requests (one tenant,
//! one cache key) in flight at the same time run once. The first is the leader and
//! runs; the others follow: they wait for the leader's answer and complete with it,
//! `cached: true`, calling no provider. A leader that fails (or goes away) lets its
//! followers run themselves, so a failure is never shared; a follower waits at most
//! [`FOLLOW_AT_MOST`] (less with its own deadline) before it runs itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::engine::CachedAnswer;

/// The longest a follower waits for its leader.
pub(super) const FOLLOW_AT_MOST: Duration = Duration::from_secs(30);

/// Where a leader's request stands.
#[derive(Debug, Clone)]
enum Landing {
    Flying,
    Answered(CachedAnswer),
    Failed,
}

type Key = (String, String);

/// The requests in flight, by tenant and cache key.
#[derive(Debug, Default)]
pub(super) struct Flights {
    flying: Mutex<HashMap<Key, watch::Receiver<Landing>>>,
}

/// A request's place in its flight.
#[derive(Debug)]
pub(super) enum Joined {
    /// It runs; its answer goes to the followers when it lands.
    Lead(Flight),
    /// It waits for the leader.
    Follow(Follower),
}

/// The leader's side: landed with its answer, or dropped (a failure).
#[derive(Debug)]
pub(super) struct Flight {
    flights: Arc<Flights>,
    key: Key,
    landing: watch::Sender<Landing>,
}

/// A follower's side.
#[derive(Debug)]
pub(super) struct Follower(watch::Receiver<Landing>);

impl Flights {
    /// Joins the flight of `tenant`'s `key`: leads a new one, or follows the one in
    /// the air.
    pub(super) fn join(self: &Arc<Self>, tenant: &str, key: &str) -> Joined {
        let mut flying = self
            .flying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (tenant.to_owned(), key.to_owned());
        if let Some(landing) = flying.get(&id) {
            return Joined::Follow(Follower(landing.clone()));
        }
        let (landing, watching) = watch::channel(Landing::Flying);
        flying.insert(id.clone(), watching);
        Joined::Lead(Flight {
            flights: self.clone(),
            key: id,
            landing,
        })
    }

    /// Requests leading a flight now.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.flying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Flight {
    /// Lands with `answer` (`None`: the request failed; the followers run themselves).
    pub(super) fn land(self, answer: Option<CachedAnswer>) {
        let landing = answer.map_or(Landing::Failed, Landing::Answered);
        self.landing.send_replace(landing);
        // Drop takes the flight off the board.
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut flying = self
            .flights
            .flying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flying.remove(&self.key);
        drop(flying);
        // A leader that went away without landing failed, for its followers.
        self.landing.send_if_modified(|landing| {
            if matches!(landing, Landing::Flying) {
                *landing = Landing::Failed;
                true
            } else {
                false
            }
        });
    }
}

impl Follower {
    /// The leader's answer, if it lands with one within `wait`.
    pub(super) async fn answer(mut self, wait: Duration) -> Option<CachedAnswer> {
        let landed = tokio::time::timeout(
            wait,
            self.0
                .wait_for(|landing| !matches!(landing, Landing::Flying)),
        )
        .await;
        match landed {
            Ok(Ok(landing)) => match &*landing {
                Landing::Answered(answer) => Some(answer.clone()),
                Landing::Flying | Landing::Failed => None,
            },
            // Timed out, or the leader's side is gone.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::{ConfigId, Output, ProviderRef, ProviderType};

    use super::*;

    fn answer() -> CachedAnswer {
        CachedAnswer {
            output: Output {
                images: Vec::new(),
                text: Some("hi".into()),
            },
            provider: ProviderRef {
                config_id: ConfigId(1),
                name: "m".into(),
                provider_type: ProviderType::Mock,
                model: None,
            },
        }
    }

    #[tokio::test]
    async fn followers_get_the_leaders_answer_and_a_failure_is_not_shared() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(leader) = flights.join("acme", "k") else {
            panic!("the first did not lead");
        };
        let Joined::Follow(follower) = flights.join("acme", "k") else {
            panic!("the second did not follow");
        };
        // Another tenant, or another key, flies on its own.
        assert!(matches!(flights.join("globex", "k"), Joined::Lead(_)));
        let waiting = follower.answer(Duration::from_secs(5));
        leader.land(Some(answer()));
        assert_eq!(waiting.await, Some(answer()));
        assert_eq!(flights.in_flight(), 0);

        // A leader that fails, or goes away: its followers run themselves.
        let Joined::Lead(leader) = flights.join("acme", "k") else {
            panic!("no new flight");
        };
        let Joined::Follow(follower) = flights.join("acme", "k") else {
            panic!("no follower");
        };
        drop(leader);
        assert_eq!(follower.answer(Duration::from_secs(5)).await, None);
        // A leader that never lands: the follower stops waiting.
        let Joined::Lead(_leader) = flights.join("acme", "k2") else {
            panic!("no flight");
        };
        let Joined::Follow(follower) = flights.join("acme", "k2") else {
            panic!("no follower");
        };
        assert_eq!(follower.answer(Duration::from_millis(50)).await, None);
    }
}
