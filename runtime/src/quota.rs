//! Per-tenant quotas, enforced before a request runs.
//!
//! A quota (table `quotas`, admin API `/v1/quotas`) caps a tenant's — or one of its
//! users' — requests, images or spend per UTC day or month, counted from the usage
//! rows written with each completed request. A request that would go over gets one
//! `failed` event with `quota_exceeded` (not retryable) and calls no provider.
//!
//! Checking must not cost a database round trip per command (that is what the group
//! commit exists to avoid), so each process keeps, per tenant, its quotas and the
//! usage they count, read again every [`REFRESH`] (by one caller, while the others go
//! on with what is cached) and advanced by its own completions in between. The limit is therefore soft by what other processes finished in the
//! last [`REFRESH`] and by the requests in flight at once; a tenant without quotas
//! costs one cached lookup.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use crate::store::{CountedQuota, QueryError, QuotaPeriod, Store};

/// How old a tenant's cached quotas and usage may get.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The quota checker of one process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Quotas {
    store: Store,
    refresh: Duration,
    tenants: Arc<Mutex<HashMap<String, Tenant>>>,
}

#[derive(Debug)]
struct Tenant {
    read_at: Instant,
    quotas: Vec<CountedQuota>,
}

impl Tenant {
    /// The first quota `ask` would go over, as the message of its error.
    fn verdict(&self, ask: Ask<'_>) -> Option<String> {
        self.quotas
            .iter()
            .filter(|c| c.applies_to(ask.user))
            .find_map(|c| over(c, ask.images))
    }
}

/// The asked request, as quotas see it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Who pays.
    pub tenant: &'a str,
    /// The end user, if given.
    pub user: Option<&'a str>,
    /// Images asked for (0 for text).
    pub images: i64,
}

impl Quotas {
    /// A checker over a store, refreshing every [`REFRESH`].
    pub fn new(store: Store) -> Self {
        Self::with_refresh(store, REFRESH)
    }

    /// A checker refreshing at another interval (tests).
    pub fn with_refresh(store: Store, refresh: Duration) -> Self {
        Self {
            store,
            refresh,
            tenants: Arc::default(),
        }
    }

    /// Why the request may not run, if it may not: the message of its
    /// `quota_exceeded` error.
    ///
    /// # Errors
    /// [`QueryError`] when the quotas or usage cannot be read.
    pub async fn check(&self, ask: Ask<'_>) -> Result<Option<String>, QueryError> {
        let now = Utc::now();
        // Decided under the lock from what is cached, unless it must be read again.
        let cached = self.tenants.lock().ok().and_then(|mut tenants| {
            let t = tenants.get_mut(ask.tenant)?;
            if rolled_over(t, now) {
                return None;
            }
            if t.read_at.elapsed() >= self.refresh {
                // One caller reads again; the others meanwhile count on what is here.
                t.read_at = Instant::now();
                return None;
            }
            Some(t.verdict(ask))
        });
        match cached {
            Some(verdict) => Ok(verdict),
            None => self.read(ask, now).await,
        }
    }

    /// Counts a completed request of this process until the next read.
    pub fn record(&self, tenant: &str, user: Option<&str>, images: i64, cost_usd: f64) {
        if let Ok(mut tenants) = self.tenants.lock()
            && let Some(t) = tenants.get_mut(tenant)
        {
            for c in &mut t.quotas {
                if c.applies_to(user) {
                    c.used.requests += 1;
                    c.used.images += images;
                    c.used.cost_usd += cost_usd;
                }
            }
        }
    }

    /// Forgets a tenant's cached quotas (they changed in this process).
    pub fn invalidate(&self, tenant: &str) {
        if let Ok(mut tenants) = self.tenants.lock() {
            tenants.remove(tenant);
        }
    }

    /// Reads the tenant's quotas and usage, caches them, and decides `ask` by them.
    async fn read(&self, ask: Ask<'_>, now: DateTime<Utc>) -> Result<Option<String>, QueryError> {
        let tenant = Tenant {
            read_at: Instant::now(),
            quotas: self.store.counted_quotas(ask.tenant, now).await?,
        };
        let verdict = tenant.verdict(ask);
        if let Ok(mut tenants) = self.tenants.lock() {
            tenants.insert(ask.tenant.to_owned(), tenant);
        }
        Ok(verdict)
    }
}

/// A counted period ended: its usage starts again from zero.
fn rolled_over(tenant: &Tenant, now: DateTime<Utc>) -> bool {
    tenant
        .quotas
        .iter()
        .any(|c| c.quota.period.start(now) != c.since)
}

fn over(c: &CountedQuota, images: i64) -> Option<String> {
    let whom = match &c.quota.user {
        Some(user) => format!("user '{user}' of tenant '{}'", c.quota.tenant),
        None => format!("tenant '{}'", c.quota.tenant),
    };
    let period = match c.quota.period {
        QuotaPeriod::Day => "daily",
        QuotaPeriod::Month => "monthly",
    };
    if let Some(max) = c.quota.max_requests
        && c.used.requests + 1 > max
    {
        return Some(format!(
            "{whom} is at its {period} quota of {max} requests ({} used)",
            c.used.requests
        ));
    }
    if let Some(max) = c.quota.max_images
        && c.used.images + images > max
    {
        return Some(format!(
            "{whom} would go over its {period} quota of {max} images ({} used, {images} asked)",
            c.used.images
        ));
    }
    if let Some(max) = c.quota.max_cost_usd
        && c.used.cost_usd >= max
    {
        return Some(format!(
            "{whom} is at its {period} spending quota of ${max} (${:.4} used)",
            c.used.cost_usd
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Quota, UsageTotals};

    fn counted(quota: Quota, used: UsageTotals) -> CountedQuota {
        CountedQuota {
            since: quota.period.start(Utc::now()),
            quota,
            used,
        }
    }

    fn quota() -> Quota {
        Quota {
            tenant: "acme".into(),
            user: None,
            period: QuotaPeriod::Day,
            max_requests: None,
            max_images: None,
            max_cost_usd: None,
        }
    }

    #[test]
    fn each_limit_refuses_only_past_it() {
        let used = UsageTotals {
            requests: 9,
            images: 8,
            cost_usd: 0.5,
        };
        let requests = counted(
            Quota {
                max_requests: Some(10),
                ..quota()
            },
            used,
        );
        assert_eq!(over(&requests, 1), None, "the 10th request may run");
        let at_limit = CountedQuota {
            used: UsageTotals {
                requests: 10,
                ..used
            },
            ..requests
        };
        assert!(over(&at_limit, 1).is_some_and(|m| m.contains("10 requests")));

        let images = counted(
            Quota {
                max_images: Some(10),
                ..quota()
            },
            used,
        );
        assert_eq!(over(&images, 2), None);
        assert!(over(&images, 3).is_some_and(|m| m.contains("3 asked")));

        let cost = counted(
            Quota {
                max_cost_usd: Some(0.5),
                ..quota()
            },
            used,
        );
        assert!(over(&cost, 0).is_some_and(|m| m.contains("spending")));
    }

    #[test]
    fn periods_start_at_utc_midnight_and_the_first_of_the_month() {
        let now = DateTime::parse_from_rfc3339("2026-12-15T13:45:00Z")
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
