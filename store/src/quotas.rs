//! Quota definitions: a tenant's (or one of its users') limits per UTC day or month,
//! and what each has counted and holds in its current period. Enforcement — the
//! reservation a request takes at admission and settles at its end — is in
//! [`crate::quota_holds`].

use chrono::{DateTime, Utc};

use super::{QueryError, Store, UsageTotals, on_pool};

/// The period a quota counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    /// A calendar day (UTC).
    Day,
    /// A calendar month (UTC).
    Month,
}

impl QuotaPeriod {
    /// The start (UTC) of the period that contains `now`.
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::{Datelike, TimeZone};
        let day = now.date_naive();
        let first = match self {
            QuotaPeriod::Day => day,
            QuotaPeriod::Month => day.with_day(1).unwrap_or(day),
        };
        Utc.from_utc_datetime(&first.and_time(chrono::NaiveTime::MIN))
    }

    /// Parses the stored name.
    ///
    /// # Errors
    /// What is wrong with `name`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "day" => Ok(QuotaPeriod::Day),
            "month" => Ok(QuotaPeriod::Month),
            _ => Err(format!("'{name}' is neither 'day' nor 'month'")),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
        }
    }
}

/// A limit for a tenant (or one user of it) over a period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Quota {
    /// The tenant.
    pub tenant: String,
    /// One user, or `None` for the whole tenant.
    pub user: Option<String>,
    /// Counting period.
    pub period: QuotaPeriod,
    /// Requests at most.
    pub max_requests: Option<i64>,
    /// Images at most.
    pub max_images: Option<i64>,
    /// Input plus output tokens at most.
    pub max_tokens: Option<i64>,
    /// Spend at most.
    pub max_cost_usd: Option<f64>,
}

impl Quota {
    /// A quota of `tenant` over `period` with no limit set yet.
    pub fn new(tenant: impl Into<String>, period: QuotaPeriod) -> Self {
        Self {
            tenant: tenant.into(),
            user: None,
            period,
            max_requests: None,
            max_images: None,
            max_tokens: None,
            max_cost_usd: None,
        }
    }

    /// Checks what the store cannot: a valid tenant, a non-empty user if any, at least
    /// one limit, and no negative one. The message names the field.
    ///
    /// # Errors
    /// The first problem found.
    pub fn check(&self) -> Result<(), String> {
        switchyard_core::Tenant::new(self.tenant.as_str()).map_err(|e| format!("tenant: {e}"))?;
        if self.user.as_deref() == Some("") {
            return Err("user: leave it out for the whole tenant".to_owned());
        }
        if self.max_requests.is_none()
            && self.max_images.is_none()
            && self.max_tokens.is_none()
            && self.max_cost_usd.is_none()
        {
            return Err(
                "give at least one of max_requests, max_images, max_tokens, max_cost_usd"
                    .to_owned(),
            );
        }
        for (name, bad) in [
            ("max_requests", self.max_requests.is_some_and(|m| m < 0)),
            ("max_images", self.max_images.is_some_and(|m| m < 0)),
            ("max_tokens", self.max_tokens.is_some_and(|m| m < 0)),
            (
                "max_cost_usd",
                self.max_cost_usd.is_some_and(|m| !m.is_finite() || m < 0.0),
            ),
        ] {
            if bad {
                return Err(format!("{name}: must be a number ≥ 0"));
            }
        }
        Ok(())
    }

    /// Whether it limits `user`'s requests (a tenant-wide quota limits every user's).
    pub fn applies_to(&self, user: Option<&str>) -> bool {
        self.user.is_none() || self.user.as_deref() == user
    }
}

/// A stored quota: its row id (what its counters and holds refer to) and itself.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredQuota {
    /// Row id.
    pub id: i64,
    /// The quota.
    pub quota: Quota,
    /// The plan it comes from (`None`: the tenant's own).
    pub plan: Option<String>,
}

/// What a quota leaves in its current period, per limit (`None`: no such limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Left {
    /// Requests left.
    pub requests: Option<i64>,
    /// Images left.
    pub images: Option<i64>,
    /// Tokens left.
    pub tokens: Option<i64>,
    /// Spend left.
    pub cost_usd: Option<f64>,
}

/// A quota with what it counted in its current period (since `since`) and what
/// requests still running hold of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CountedQuota {
    /// The quota.
    #[serde(flatten)]
    pub quota: Quota,
    /// The start of its current period.
    pub since: DateTime<Utc>,
    /// What finished requests used since then.
    pub used: UsageTotals,
    /// What admitted requests that have not finished hold.
    pub reserved: UsageTotals,
    /// What is left for new requests: the limit less `used` and `reserved`.
    pub left: Left,
    /// The plan it comes from (`null`: the tenant's own).
    pub plan: Option<String>,
}

impl CountedQuota {
    /// Counts `used` and `reserved` against `quota` from `since`.
    pub fn new(
        quota: Quota,
        since: DateTime<Utc>,
        used: UsageTotals,
        reserved: UsageTotals,
    ) -> Self {
        let left = Left {
            requests: quota
                .max_requests
                .map(|m| (m - used.requests - reserved.requests).max(0)),
            images: quota
                .max_images
                .map(|m| (m - used.images - reserved.images).max(0)),
            tokens: quota
                .max_tokens
                .map(|m| (m - used.tokens - reserved.tokens).max(0)),
            cost_usd: quota
                .max_cost_usd
                .map(|m| (m - used.cost_usd - reserved.cost_usd).max(0.0)),
        };
        Self {
            quota,
            since,
            used,
            reserved,
            left,
            plan: None,
        }
    }

    /// Whether it limits `user`'s requests (a tenant-wide quota limits every user's).
    pub fn applies_to(&self, user: Option<&str>) -> bool {
        self.quota.applies_to(user)
    }
}

#[derive(sqlx::FromRow)]
struct QuotaRow {
    id: i64,
    tenant: String,
    user_id: String,
    period: String,
    max_requests: Option<i64>,
    max_images: Option<i64>,
    max_tokens: Option<i64>,
    max_cost_usd: Option<f64>,
    plan: Option<String>,
}

impl QuotaRow {
    fn into_stored(self) -> Result<StoredQuota, QueryError> {
        let period = QuotaPeriod::parse(&self.period).map_err(|detail| QueryError::Corrupt {
            table: "quotas",
            detail,
        })?;
        Ok(StoredQuota {
            id: self.id,
            plan: self.plan,
            quota: Quota {
                tenant: self.tenant,
                user: Some(self.user_id).filter(|u| !u.is_empty()),
                period,
                max_requests: self.max_requests,
                max_images: self.max_images,
                max_tokens: self.max_tokens,
                max_cost_usd: self.max_cost_usd,
            },
        })
    }
}

impl Store {
    /// A tenant's quotas, each with what it counted and holds in the period that
    /// contains `now`.
    ///
    /// # Errors
    /// [`QueryError::Database`] or [`QueryError::Corrupt`].
    pub async fn counted_quotas(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<CountedQuota>, QueryError> {
        let mut counted = Vec::new();
        for stored in self.stored_quotas(tenant).await? {
            let since = stored.quota.period.start(now);
            let (used, reserved) = match self.quota_counter(stored.id, since).await? {
                Some(counter) => counter,
                // Not counted yet this period: what the usage log holds.
                None => (
                    self.usage_totals(tenant, stored.quota.user.as_deref(), since)
                        .await?,
                    UsageTotals::default(),
                ),
            };
            let mut quota = CountedQuota::new(stored.quota, since, used, reserved);
            quota.plan = stored.plan;
            counted.push(quota);
        }
        Ok(counted)
    }

    /// Removes a quota of the tenant's own (its counters and holds with it); false if
    /// there was none (a plan's quota is not removed here: take the plan away). A
    /// tenant-wide one gives way to its plan's, if it has a plan for that period.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn delete_quota(
        &self,
        tenant: &str,
        user: Option<&str>,
        period: QuotaPeriod,
    ) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM quotas WHERE tenant = $1 AND user_id = $2 AND period = $3 \
             AND plan IS NULL"
        )
        .bind(tenant)
        .bind(user.unwrap_or(""))
        .bind(period.as_str())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if affected > 0 && user.is_none() {
            self.restore_plan_quota(tenant).await?;
        }
        Ok(affected > 0)
    }

    /// Creates or replaces a quota of the tenant's own (it takes the place of its plan's
    /// for that period). A replaced quota keeps its counters: the new limits apply to
    /// what it counted so far.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_quota(&self, quota: &Quota) -> Result<(), QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO quotas (tenant, user_id, period, max_requests, max_images, max_tokens, \
             max_cost_usd, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (tenant, user_id, period) DO UPDATE SET \
             max_requests = excluded.max_requests, max_images = excluded.max_images, \
             max_tokens = excluded.max_tokens, max_cost_usd = excluded.max_cost_usd, \
             updated_at = excluded.updated_at, plan = NULL"
        )
        .bind(&quota.tenant)
        .bind(quota.user.as_deref().unwrap_or(""))
        .bind(quota.period.as_str())
        .bind(quota.max_requests)
        .bind(quota.max_images)
        .bind(quota.max_tokens)
        .bind(quota.max_cost_usd)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// A tenant's quotas (whole-tenant and per-user).
    ///
    /// # Errors
    /// [`QueryError::Database`] or [`QueryError::Corrupt`].
    pub async fn quotas(&self, tenant: &str) -> Result<Vec<Quota>, QueryError> {
        Ok(self
            .stored_quotas(tenant)
            .await?
            .into_iter()
            .map(|s| s.quota)
            .collect())
    }

    /// A tenant's quotas with their row ids, by user then period.
    ///
    /// # Errors
    /// [`QueryError::Database`] or [`QueryError::Corrupt`].
    pub async fn stored_quotas(&self, tenant: &str) -> Result<Vec<StoredQuota>, QueryError> {
        let rows: Vec<QuotaRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, tenant, user_id, period, max_requests, max_images, max_tokens, \
             max_cost_usd, plan FROM quotas WHERE tenant = $1 ORDER BY user_id, period"
        )
        .bind(tenant)
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(QuotaRow::into_stored).collect()
    }
}
