//! Per-tenant quotas, enforced at admission so that they cannot overshoot (#16).
//!
//! A quota (table `quotas`, admin API `/v1/quotas`) caps a tenant's — or one of its
//! users' — requests, images, tokens or spend per UTC day or month. Admission
//! reserves the request's estimate (images asked; tokens and cost estimated from the
//! prompt, `max_tokens` and the price table) from every quota that applies, atomically
//! in the database; concurrent requests' reservations are written together
//! ([`reserver`]: [`Store::reserve_batch`], one transaction for a batch, decided one by
//! one with [`Store::reserve`] when a quota cannot take the whole batch); the terminal
//! write settles the reservation
//! with the actual usage, or releases it. A request that would go over gets one
//! `failed` event with `quota_exceeded` (not retryable) and calls no provider. Several
//! processes share the database's counters, so 60 requests against a limit of 10 give
//! exactly 10, however they are spread.
//!
//! What each process caches is only which quotas a tenant has (read again every
//! [`REFRESH`], at once after a change made through this process), so a tenant without
//! quotas costs one cached lookup and no database round trip. A quota created through
//! another process applies here from the next refresh.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;

use crate::store::{CountedQuota, QueryError, QuotaPeriod, Store, StoredQuota};

mod reserver;

use reserver::{Reservation, Reserver};

/// How old a tenant's cached quota definitions may get.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How old a hold must be before [`Quotas::sweep`] may release it (its request's
/// process died: no live claim, no task row, or an ended task). Longer than any
/// request's deadline, so a hold is never released under a request still running.
pub const STALE_HOLD: Duration = Duration::from_secs(60 * 60);

/// How often [`Quotas::sweep`] looks for stale holds.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The quota checker of one process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Quotas {
    store: Store,
    refresh: Duration,
    tenants: Arc<Mutex<HashMap<String, Tenant>>>,
    /// Writes concurrent requests' reservations together.
    reserver: Arc<Reserver>,
}

#[derive(Debug)]
struct Tenant {
    read_at: Instant,
    quotas: Arc<[StoredQuota]>,
}

/// The asked request, as quotas see it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Who pays.
    pub tenant: &'a str,
    /// The end user, if given.
    pub user: Option<&'a str>,
    /// The request's id: what its reservation is held under.
    pub request_id: &'a str,
    /// Images asked for (0 for text).
    pub images: i64,
    /// Tokens estimated, input plus output (0 for images).
    pub tokens: i64,
    /// Cost estimated from the price table (the dearest candidate's).
    pub cost_usd: f64,
}

impl Quotas {
    /// A checker over a store, refreshing every [`REFRESH`].
    pub fn new(store: Store) -> Self {
        Self::with_refresh(store, REFRESH)
    }

    /// A checker refreshing at another interval (tests).
    pub fn with_refresh(store: Store, refresh: Duration) -> Self {
        Self {
            reserver: Arc::new(Reserver::new(store.clone())),
            store,
            refresh,
            tenants: Arc::default(),
        }
    }

    /// Reserves `ask` from the tenant's quotas: `None` if it may run (it holds its
    /// reservation until its terminal row is written), else the message of its
    /// `quota_exceeded` error.
    ///
    /// # Errors
    /// [`QueryError`] when the quotas cannot be read or reserved from.
    pub async fn reserve(&self, ask: Ask<'_>) -> Result<Option<String>, QueryError> {
        let quotas = self.definitions(ask.tenant).await?;
        if !quotas.iter().any(|s| s.quota.applies_to(ask.user)) {
            return Ok(None);
        }
        let refused = self
            .reserver
            .reserve(Reservation {
                quotas,
                tenant: ask.tenant.to_owned(),
                user: ask.user.map(str::to_owned),
                request_id: ask.request_id.to_owned(),
                images: ask.images,
                tokens: ask.tokens,
                cost_usd: ask.cost_usd,
                now: Utc::now(),
            })
            .await?;
        Ok(refused.map(|quota| over(&quota, ask)))
    }

    /// Why `tenant` could not ask for `images` images now, judged from what its
    /// tenant-wide quotas count and hold, without reserving: a check before a call
    /// stores anything for the tenant (an edit's uploads). Admission still reserves.
    ///
    /// # Errors
    /// [`QueryError`] when the quotas cannot be read.
    pub async fn precheck(&self, tenant: &str, images: i64) -> Result<Option<String>, QueryError> {
        let quotas = self.definitions(tenant).await?;
        if !quotas.iter().any(|s| s.quota.applies_to(None)) {
            return Ok(None);
        }
        let ask = Ask {
            tenant,
            user: None,
            request_id: "",
            images,
            tokens: 0,
            cost_usd: 0.0,
        };
        let counted = self.store.counted_quotas(tenant, Utc::now()).await?;
        Ok(counted
            .iter()
            .filter(|c| c.applies_to(None) && would_go_over(c, ask))
            .map(|c| over(c, ask))
            .next())
    }

    /// Whether a request of `tenant` may hold a reservation, so that its terminal
    /// write must settle it: the tenant has quotas, or this process does not know.
    pub fn may_hold(&self, tenant: &str) -> bool {
        self.tenants
            .lock()
            .ok()
            .and_then(|tenants| tenants.get(tenant).map(|t| !t.quotas.is_empty()))
            .unwrap_or(true)
    }

    /// Releases, every minute until `tasks` shut down, the holds of requests whose
    /// process died before they ended (older than [`STALE_HOLD`]).
    pub fn sweep(&self, tasks: &switchyard_tasks::Tasks) {
        let store = self.store.clone();
        tasks.spawn("quota-sweep", async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let now = Utc::now();
                let before = now - chrono::TimeDelta::from_std(STALE_HOLD).unwrap_or_default();
                match store
                    .release_stale_holds(before, now.timestamp_millis())
                    .await
                {
                    Ok(0) => {}
                    Ok(released) => {
                        tracing::warn!(
                            released,
                            "released the quota holds of requests whose process died"
                        );
                        metrics::counter!("switchyard_quota_holds_released_total")
                            .increment(released);
                    }
                    Err(error) => tracing::warn!(%error, "cannot release stale quota holds"),
                }
            }
        });
    }

    /// Forgets a tenant's cached quotas (they changed in this process).
    pub fn invalidate(&self, tenant: &str) {
        if let Ok(mut tenants) = self.tenants.lock() {
            tenants.remove(tenant);
        }
    }

    /// The tenant's quota definitions: cached, or read again once [`REFRESH`] old (by
    /// one caller, while the others go on with what is cached).
    async fn definitions(&self, tenant: &str) -> Result<Arc<[StoredQuota]>, QueryError> {
        let cached = self.tenants.lock().ok().and_then(|mut tenants| {
            let t = tenants.get_mut(tenant)?;
            if t.read_at.elapsed() >= self.refresh {
                t.read_at = Instant::now();
                return None;
            }
            Some(t.quotas.clone())
        });
        if let Some(quotas) = cached {
            return Ok(quotas);
        }
        let quotas: Arc<[StoredQuota]> = self.store.stored_quotas(tenant).await?.into();
        if let Ok(mut tenants) = self.tenants.lock() {
            tenants.insert(
                tenant.to_owned(),
                Tenant {
                    read_at: Instant::now(),
                    quotas: quotas.clone(),
                },
            );
        }
        Ok(quotas)
    }
}

/// Whether `ask` would take `c` past one of its limits (as [`Store::reserve`] decides).
fn would_go_over(c: &CountedQuota, ask: Ask<'_>) -> bool {
    let (used, held) = (&c.used, &c.reserved);
    let q = &c.quota;
    q.max_requests
        .is_some_and(|m| used.requests + held.requests + 1 > m)
        || q.max_images
            .is_some_and(|m| used.images + held.images + ask.images > m)
        || q.max_tokens
            .is_some_and(|m| used.tokens + held.tokens + ask.tokens > m)
        || q.max_cost_usd.is_some_and(|m| {
            let spent = used.cost_usd + held.cost_usd;
            spent >= m || spent + ask.cost_usd > m
        })
}

/// The message of the `quota_exceeded` error of `ask`, refused by `c` as it stood.
fn over(c: &CountedQuota, ask: Ask<'_>) -> String {
    let whom = match &c.quota.user {
        Some(user) => format!("user '{user}' of tenant '{}'", c.quota.tenant),
        None => format!("tenant '{}'", c.quota.tenant),
    };
    let period = match c.quota.period {
        QuotaPeriod::Day => "daily",
        QuotaPeriod::Month => "monthly",
    };
    let (used, held) = (&c.used, &c.reserved);
    let counted = |used: String, held: String, zero: bool| {
        if zero {
            format!("{used} used")
        } else {
            format!("{used} used, {held} held by requests running")
        }
    };
    if let Some(max) = c.quota.max_requests
        && used.requests + held.requests + 1 > max
    {
        return format!(
            "{whom} is at its {period} quota of {max} requests ({})",
            counted(
                used.requests.to_string(),
                held.requests.to_string(),
                held.requests == 0
            )
        );
    }
    if let Some(max) = c.quota.max_images
        && used.images + held.images + ask.images > max
    {
        return format!(
            "{whom} would go over its {period} quota of {max} images ({}, {} asked)",
            counted(
                used.images.to_string(),
                held.images.to_string(),
                held.images == 0
            ),
            ask.images
        );
    }
    if let Some(max) = c.quota.max_tokens
        && used.tokens + held.tokens + ask.tokens > max
    {
        return format!(
            "{whom} would go over its {period} quota of {max} tokens ({}, about {} asked)",
            counted(
                used.tokens.to_string(),
                held.tokens.to_string(),
                held.tokens == 0
            ),
            ask.tokens
        );
    }
    let spent = used.cost_usd + held.cost_usd;
    match c.quota.max_cost_usd {
        Some(max) if spent >= max => format!(
            "{whom} is at its {period} spending quota of ${max} ({})",
            counted(
                format!("${:.4}", used.cost_usd),
                format!("${:.4}", held.cost_usd),
                held.cost_usd == 0.0
            )
        ),
        Some(max) => format!(
            "{whom} would go over its {period} spending quota of ${max} ({}, about ${:.4} asked)",
            counted(
                format!("${:.4}", used.cost_usd),
                format!("${:.4}", held.cost_usd),
                held.cost_usd == 0.0
            ),
            ask.cost_usd
        ),
        // The quota changed between the refusal and its reading.
        None => format!("{whom} is at its {period} quota"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Quota, UsageTotals};

    fn counted(quota: Quota, used: UsageTotals, held: UsageTotals) -> CountedQuota {
        let since = quota.period.start(Utc::now());
        CountedQuota::new(quota, since, used, held)
    }

    fn ask(images: i64, tokens: i64, cost_usd: f64) -> Ask<'static> {
        Ask {
            tenant: "acme",
            user: None,
            request_id: "r-1",
            images,
            tokens,
            cost_usd,
        }
    }

    #[test]
    fn the_message_names_the_limit_that_would_go_over_and_what_holds_it() {
        let used = UsageTotals {
            requests: 7,
            images: 8,
            tokens: 900,
            cost_usd: 0.5,
        };
        let held = UsageTotals {
            requests: 3,
            images: 1,
            tokens: 50,
            cost_usd: 0.0,
        };
        let requests = counted(
            Quota {
                max_requests: Some(10),
                ..Quota::new("acme", QuotaPeriod::Day)
            },
            used,
            held,
        );
        assert_eq!(
            over(&requests, ask(1, 0, 0.0)),
            "tenant 'acme' is at its daily quota of 10 requests (7 used, 3 held by requests running)"
        );
        let images = counted(
            Quota {
                max_images: Some(10),
                ..Quota::new("acme", QuotaPeriod::Month)
            },
            used,
            UsageTotals::default(),
        );
        assert!(over(&images, ask(3, 0, 0.0)).contains("quota of 10 images (8 used, 3 asked)"));
        let tokens = counted(
            Quota {
                max_tokens: Some(1000),
                ..Quota::new("acme", QuotaPeriod::Month)
            },
            used,
            held,
        );
        assert!(over(&tokens, ask(0, 100, 0.0)).contains("quota of 1000 tokens"));
        let cost = counted(
            Quota {
                max_cost_usd: Some(0.5),
                ..Quota::new("acme", QuotaPeriod::Day)
            },
            used,
            held,
        );
        assert!(over(&cost, ask(0, 0, 0.0)).contains("spending quota of $0.5"));
    }

    #[test]
    fn left_is_the_limit_less_used_and_reserved_never_below_zero() {
        let c = counted(
            Quota {
                max_requests: Some(10),
                max_images: Some(4),
                ..Quota::new("acme", QuotaPeriod::Day)
            },
            UsageTotals {
                requests: 6,
                images: 5,
                ..UsageTotals::default()
            },
            UsageTotals {
                requests: 2,
                ..UsageTotals::default()
            },
        );
        assert_eq!(c.left.requests, Some(2));
        assert_eq!(c.left.images, Some(0));
        assert_eq!(c.left.tokens, None, "no token limit");
    }

    #[test]
    fn periods_start_at_utc_midnight_and_the_first_of_the_month() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-15T13:45:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            QuotaPeriod::Day.start(now).to_rfc3339(),
            "2026-12-15T00:00:00+00:00"
        );
        assert_eq!(
            QuotaPeriod::Month.start(now).to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
    }
}
