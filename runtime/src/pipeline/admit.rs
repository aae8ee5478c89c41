//! `admit`: the tenant policy a request passes before its first attempt. This is the
//! one seam where that policy lives: today a `cache: true` command may be answered
//! from an identical earlier request, and otherwise its tenant's quotas are checked.
//! Per-tenant limits, `reply_to` rules and priority lanes belong here too.
//!
//! Admission decides; it never runs anything. A refused request still gets its events
//! (one `failed`) and its terminal row through the rest of the pipeline.

use switchyard_core::{Command, ErrorCode, ErrorInfo, Event, EventBody};

use super::{HandleError, Pipeline};
use crate::{engine::CachedAnswer, quota::Ask};

/// How old a result may be to answer a `cache: true` command.
pub const CACHE_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// What admission decided for one request.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// Fail at once with this error, calling no provider.
    pub(super) refuse: Option<ErrorInfo>,
    /// Complete at once with this earlier result, calling no provider.
    pub(super) cached: Option<CachedAnswer>,
}

impl Pipeline {
    /// Decides whether and how a request runs. `cache_key` is the command's
    /// [`crate::store::cache_key`] when it has `cache: true`.
    pub(super) async fn admit(
        &self,
        command: &Command,
        cache_key: Option<&str>,
    ) -> Result<Admission, HandleError> {
        if let Some(key) = cache_key {
            let cached = self.cached_answer(command.tenant.as_str(), key).await?;
            let outcome = if cached.is_some() { "hit" } else { "miss" };
            metrics::counter!("switchyard_cache_lookups_total", "outcome" => outcome).increment(1);
            if cached.is_some() {
                return Ok(Admission {
                    refuse: None,
                    cached,
                });
            }
        }
        let refuse = self
            .quotas
            .check(Ask {
                tenant: command.tenant.as_str(),
                user: command.user.as_deref(),
                images: command.images_asked(),
            })
            .await?
            .map(|message| ErrorInfo::new(ErrorCode::QuotaExceeded, message));
        Ok(Admission {
            refuse,
            cached: None,
        })
    }

    /// The result of the latest identical request of the tenant that completed within
    /// [`CACHE_MAX_AGE`], if any.
    async fn cached_answer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<CachedAnswer>, HandleError> {
        let since = chrono::Utc::now() - CACHE_MAX_AGE;
        let Some(stored) = self.store.cached_result(tenant, key, since).await? else {
            return Ok(None);
        };
        Ok(match serde_json::from_value::<Event>(stored) {
            Ok(Event {
                body:
                    EventBody::Completed {
                        output, provider, ..
                    },
                ..
            }) => Some(CachedAnswer { output, provider }),
            _ => None,
        })
    }
}
