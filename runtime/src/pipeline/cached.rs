//! The answer cache at admission (#18 §6): an identical earlier answer from the
//! in-memory tier or the database, within its kind's lifetime; else the flight of
//! identical requests in the air (single flight), which this request joins as leader
//! or follower. A leader lands with its answer once its terminal row is written
//! ([`Pipeline::land`]), which also keeps the answer in the tier.

use switchyard_core::{Command, Event, EventBody};

use super::{
    Pipeline,
    flight::{FOLLOW_AT_MOST, Flight, Joined},
};
use crate::{engine::CachedAnswer, pipeline::HandleError};

/// What the cache had for a `cache: true` request.
#[derive(Debug)]
pub(super) enum Fresh {
    /// An identical answer: complete with it.
    Answer(CachedAnswer),
    /// None yet: this request runs and lands its flight.
    Lead(Flight),
    /// None, and the flight in the air failed or took too long: this request runs.
    Miss,
}

fn count(outcome: &'static str) {
    metrics::counter!("switchyard_cache_lookups_total", "outcome" => outcome).increment(1);
}

impl Pipeline {
    /// The answer for a `cache: true` `command` with cache key `key` (module docs).
    pub(super) async fn fresh_answer(
        &self,
        command: &Command,
        key: &str,
    ) -> Result<Fresh, HandleError> {
        let max_age = chrono::TimeDelta::from_std(self.cache_tier.ttl(command.kind))
            .unwrap_or(chrono::TimeDelta::MAX);
        if let Some(answer) = self.cached_answer(command, key, max_age).await? {
            count("hit");
            return Ok(Fresh::Answer(answer));
        }
        match self.flights.join(command.tenant.as_str(), key) {
            Joined::Lead(flight) => {
                count("miss");
                Ok(Fresh::Lead(flight))
            }
            Joined::Follow(follower) => {
                let wait = command
                    .deadline_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map_or(FOLLOW_AT_MOST, |ms| {
                        FOLLOW_AT_MOST.min(std::time::Duration::from_millis(ms))
                    });
                match follower.answer(wait).await {
                    Some(answer) => {
                        count("coalesced");
                        Ok(Fresh::Answer(self.signed(answer, command)))
                    }
                    None => {
                        count("miss");
                        Ok(Fresh::Miss)
                    }
                }
            }
        }
    }

    /// The answer of the latest identical request of `command`'s tenant that
    /// completed within `max_age`: from the in-memory tier, else the database (and
    /// then kept in the tier).
    pub(super) async fn cached_answer(
        &self,
        command: &Command,
        key: &str,
        max_age: chrono::TimeDelta,
    ) -> Result<Option<CachedAnswer>, HandleError> {
        let tenant = command.tenant.as_str();
        if let Some(answer) = self.cache_tier.get(command.kind, tenant, key) {
            metrics::counter!("switchyard_cache_total", "outcome" => "hit").increment(1);
            metrics::counter!("switchyard_cache_memory_hits_total").increment(1);
            return Ok(Some(self.signed(answer, command)));
        }
        let since = chrono::Utc::now() - max_age;
        let Some(stored) = self.store.cached_result(tenant, key, since).await? else {
            metrics::counter!("switchyard_cache_total", "outcome" => "miss").increment(1);
            return Ok(None);
        };
        metrics::counter!("switchyard_cache_total", "outcome" => "hit").increment(1);
        let (answer, made) = match serde_json::from_value::<Event>(stored) {
            Ok(Event {
                body:
                    EventBody::Completed {
                        output, provider, ..
                    },
                time,
                ..
            }) => (CachedAnswer { output, provider }, time),
            _ => return Ok(None),
        };
        // Kept in memory only while within its kind's lifetime (a stale lookup reads
        // further back).
        self.cache_tier
            .put(command.kind, tenant, key, answer.clone(), made);
        Ok(Some(self.signed(answer, command)))
    }

    /// `answer` with its image links signed afresh for `command`'s tenant (the
    /// earlier request's may have expired).
    fn signed(&self, mut answer: CachedAnswer, command: &Command) -> CachedAnswer {
        let urls = self.engine.artifact_urls();
        let now = self.engine.clock().now_ms();
        for image in &mut answer.output.images {
            image.url = urls.url(&image.artifact_id, &command.tenant, now);
        }
        answer
    }

    /// After a `cache: true` request's terminal row is written: a fresh answer is kept
    /// in the tier under `key` (the command's cache key), and the flight it led (if any)
    /// lands with it (or with nothing, a failure: its followers run themselves).
    pub(super) fn land(
        &self,
        command: &Command,
        key: Option<&str>,
        flight: Option<Flight>,
        terminal: &Event,
    ) {
        let Some(key) = key.filter(|_| command.cache) else {
            return;
        };
        let answer = match &terminal.body {
            EventBody::Completed {
                output,
                provider,
                cached: false,
                ..
            } => Some(CachedAnswer {
                output: output.clone(),
                provider: provider.clone(),
            }),
            _ => None,
        };
        if let Some(answer) = &answer {
            self.cache_tier.put(
                command.kind,
                command.tenant.as_str(),
                key,
                answer.clone(),
                terminal.time,
            );
        }
        if let Some(flight) = flight {
            flight.land(answer);
        }
    }
}
