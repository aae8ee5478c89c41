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

use switchyard_core::{Command, ErrorCode, ErrorInfo, routing::OwnAccounts};

use super::{HandleError, Pipeline, cached::Fresh};
use crate::{engine::CachedAnswer, quota::Ask};

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
    /// Leads the flight of identical `cache: true` requests: land it with the answer.
    pub(super) flight: Option<super::flight::Flight>,
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
        let own_accounts = self.limits.own_accounts(command.tenant.as_str()).await;
        if let Some(refuse) = self.foreign_inputs(command).await? {
            return Ok(Admission {
                refuse: Some(refuse),
                own_accounts,
                ..Admission::default()
            });
        }
        // An identical answer, or the one an identical request in flight is about to
        // give (#18 §6); else this request leads.
        let mut flight = None;
        if let Some(key) = cache_key.filter(|_| command.cache) {
            match self.fresh_answer(command, key).await? {
                Fresh::Answer(answer) => {
                    return Ok(Admission {
                        cached: Some(answer),
                        own_accounts,
                        ..Admission::default()
                    });
                }
                Fresh::Lead(leading) => flight = Some(leading),
                Fresh::Miss => {}
            }
        }
        let mut admission = self.reserve(command, own_accounts).await?;
        admission.flight = flight;
        // Asked to fall back to an earlier answer (#18 §5): look it up now, so the
        // engine has it should every provider fail.
        if command.route.fallback_to_cache && admission.refuse.is_none() {
            let key = match cache_key {
                Some(key) => key.to_owned(),
                None => crate::store::cache_key(command),
            };
            admission.stale = self.cached_answer(command, &key, STALE_MAX_AGE).await?;
        }
        Ok(admission)
    }

    /// The quota reservation, last: a refused or cached request holds nothing.
    async fn reserve(
        &self,
        command: &Command,
        own_accounts: OwnAccounts,
    ) -> Result<Admission, HandleError> {
        // A tenant served only by its own provider accounts is never charged: nothing
        // to reserve.
        if own_accounts == OwnAccounts::Only {
            return Ok(Admission {
                own_accounts,
                ..Admission::default()
            });
        }
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
                own_accounts: OwnAccounts::Only,
                ..Admission::default()
            });
        }
        Ok(Admission {
            refuse,
            own_accounts,
            ..Admission::default()
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
}
