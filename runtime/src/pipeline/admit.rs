//! `admit`: the tenant policy a request passes before its first attempt. This is the
//! one seam where that policy lives: today a `cache: true` command may be answered
//! from an identical earlier request, and otherwise it reserves its estimate from its
//! tenant's quotas (settled when its terminal row is written; a tenant that uses only
//! its own provider accounts reserves nothing, and the usage of an own account is
//! settled as nothing);
//! input images named by `artifact_id` must be the tenant's own. (`reply_to` is
//! checked at intake, before the task row, so a refused one is never replied to.)
//! Per-tenant limits and priority lanes belong here too.
//!
//! Admission decides; it never runs anything. A refused request still gets its events
//! (one `failed`) and its terminal row through the rest of the pipeline.

use switchyard_core::{Command, ErrorCode, ErrorInfo, Event, EventBody, routing::OwnAccounts};

use super::{HandleError, Pipeline};
use crate::{engine::CachedAnswer, quota::Ask};

/// How old a result may be to answer a `cache: true` command.
pub const CACHE_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// How old a result may be to answer a `route.fallback_to_cache` command whose
/// providers all failed.
pub const STALE_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// What admission decided for one request.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// Fail at once with this error, calling no provider.
    pub(super) refuse: Option<ErrorInfo>,
    /// Complete at once with this earlier result, calling no provider.
    pub(super) cached: Option<CachedAnswer>,
    /// Complete with this earlier result if every provider fails
    /// (`route.fallback_to_cache`).
    pub(super) stale: Option<CachedAnswer>,
    /// How the tenant's own provider accounts are used for this request: its setting,
    /// or `only` when it is over its quota but has own accounts (which are never
    /// charged, so they may still serve it).
    pub(super) own_accounts: OwnAccounts,
}

impl Pipeline {
    /// Decides whether and how a request runs. `cache_key` is the command's
    /// [`crate::store::cache_key`] when it has one (`cache: true` or
    /// `route.fallback_to_cache`); only `cache: true` answers from it at once.
    pub(super) async fn admit(
        &self,
        command: &Command,
        cache_key: Option<&str>,
    ) -> Result<Admission, HandleError> {
        let mut admission = self.decide(command, cache_key).await?;
        // Asked to fall back to an earlier answer (#18 §5): look it up now, so the
        // engine has it should every provider fail.
        if command.route.fallback_to_cache
            && admission.refuse.is_none()
            && admission.cached.is_none()
        {
            let key = match cache_key {
                Some(key) => key.to_owned(),
                None => crate::store::cache_key(command),
            };
            admission.stale = self
                .cached_answer(&command.tenant, &key, STALE_MAX_AGE)
                .await?;
        }
        Ok(admission)
    }

    /// What admission decides, but for a stale fallback.
    async fn decide(
        &self,
        command: &Command,
        cache_key: Option<&str>,
    ) -> Result<Admission, HandleError> {
        let own_accounts = self.limits.own_accounts(command.tenant.as_str()).await;
        if let Some(refuse) = self.foreign_inputs(command).await? {
            return Ok(Admission {
                refuse: Some(refuse),
                cached: None,
                stale: None,
                own_accounts,
            });
        }
        if let Some(key) = cache_key.filter(|_| command.cache) {
            let cached = self
                .cached_answer(&command.tenant, key, CACHE_MAX_AGE)
                .await?;
            let outcome = if cached.is_some() { "hit" } else { "miss" };
            metrics::counter!("switchyard_cache_lookups_total", "outcome" => outcome).increment(1);
            if cached.is_some() {
                return Ok(Admission {
                    refuse: None,
                    cached,
                    stale: None,
                    own_accounts,
                });
            }
        }
        // A tenant served only by its own provider accounts is never charged: nothing
        // to reserve.
        if own_accounts == OwnAccounts::Only {
            return Ok(Admission {
                own_accounts,
                ..Admission::default()
            });
        }
        // The quota reservation last: a refused or cached request holds nothing.
        let estimate = self.engine.estimate(command);
        let refuse = self
            .quotas
            .reserve(Ask {
                tenant: command.tenant.as_str(),
                user: command.user.as_deref(),
                request_id: command.request_id.as_str(),
                images: estimate.images,
                tokens: estimate.tokens,
                cost_usd: estimate.cost_usd,
            })
            .await?
            .map(|message| ErrorInfo::new(ErrorCode::QuotaExceeded, message));
        // Over its quota, a tenant that prefers its own accounts and has one is served
        // by them alone.
        if refuse.is_some()
            && own_accounts == OwnAccounts::Prefer
            && self.engine.has_own_accounts(command.tenant.as_str())
        {
            return Ok(Admission {
                refuse: None,
                cached: None,
                stale: None,
                own_accounts: OwnAccounts::Only,
            });
        }
        Ok(Admission {
            refuse,
            cached: None,
            stale: None,
            own_accounts,
        })
    }

    /// An input image named by an artifact the tenant does not own: refused exactly
    /// like a missing one, so another tenant's artifact ids learn nothing.
    async fn foreign_inputs(&self, command: &Command) -> Result<Option<ErrorInfo>, HandleError> {
        let images = command.input.images.iter().flatten().enumerate();
        let named = images
            .map(|(i, image)| (format!("input.images[{i}]"), image))
            .chain(
                command
                    .input
                    .mask
                    .iter()
                    .map(|m| ("input.mask".to_owned(), m)),
            );
        for (field, image) in named {
            let Some(id) = &image.artifact_id else {
                continue;
            };
            let owners = self.store.artifact_owners(id).await?;
            if !owners.iter().any(|owner| owner == command.tenant.as_str()) {
                return Ok(Some(ErrorInfo::new(
                    ErrorCode::InvalidRequest,
                    format!("{field}: no artifact '{id}'"),
                )));
            }
        }
        Ok(None)
    }

    /// The result of the latest identical request of the tenant that completed within
    /// `max_age`, if any.
    async fn cached_answer(
        &self,
        tenant: &switchyard_core::Tenant,
        key: &str,
        max_age: chrono::TimeDelta,
    ) -> Result<Option<CachedAnswer>, HandleError> {
        let since = chrono::Utc::now() - max_age;
        let Some(stored) = self
            .store
            .cached_result(tenant.as_str(), key, since)
            .await?
        else {
            metrics::counter!("switchyard_cache_total", "outcome" => "miss").increment(1);
            return Ok(None);
        };
        metrics::counter!("switchyard_cache_total", "outcome" => "hit").increment(1);
        Ok(match serde_json::from_value::<Event>(stored) {
            Ok(Event {
                body:
                    EventBody::Completed {
                        mut output,
                        provider,
                        ..
                    },
                ..
            }) => {
                // The earlier request's links may have expired: sign fresh ones.
                let urls = self.engine.artifact_urls();
                let now = self.engine.clock().now_ms();
                for image in &mut output.images {
                    image.url = urls.url(&image.artifact_id, tenant, now);
                }
                Some(CachedAnswer { output, provider })
            }
            _ => None,
        })
    }
}
