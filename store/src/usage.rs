//! Usage log and per-tenant quotas.

use chrono::{DateTime, Utc};
use switchyard_core::{ConfigId, Kind};

use super::{QueryError, Store, on_pool};

/// One finished attempt's consumption.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// The task, if any.
    pub task_id: Option<i64>,
    /// Who pays.
    pub tenant: String,
    /// End user.
    pub user: Option<String>,
    /// The instance.
    pub config_id: Option<ConfigId>,
    /// Its provider type (`openai`, …).
    pub provider: String,
    /// Model used.
    pub model: Option<String>,
    /// Kind.
    pub kind: Kind,
    /// Images made.
    pub images: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Estimated cost.
    pub cost_usd: f64,
}

/// Usage summed per provider, model and kind.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UsageSummaryRow {
    /// Provider type.
    pub provider: String,
    /// Model.
    pub model: Option<String>,
    /// Kind.
    pub kind: String,
    /// Rows summed.
    pub requests: i64,
    /// Images made.
    pub images: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Estimated cost.
    pub cost_usd: f64,
}

/// What a tenant (or one user of it) used since a time: what quotas count.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct UsageTotals {
    /// Finished requests that used a provider.
    pub requests: i64,
    /// Images made.
    pub images: i64,
    /// Estimated cost.
    pub cost_usd: f64,
}

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
    /// Spend at most.
    pub max_cost_usd: Option<f64>,
}

impl Quota {
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
        if self.max_requests.is_none() && self.max_images.is_none() && self.max_cost_usd.is_none() {
            return Err("give at least one of max_requests, max_images, max_cost_usd".to_owned());
        }
        for (name, bad) in [
            ("max_requests", self.max_requests.is_some_and(|m| m < 0)),
            ("max_images", self.max_images.is_some_and(|m| m < 0)),
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
}

/// A quota with what it counted in its current period (since `since`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CountedQuota {
    /// The quota.
    #[serde(flatten)]
    pub quota: Quota,
    /// The start of its current period.
    pub since: DateTime<Utc>,
    /// What it counted since then.
    pub used: UsageTotals,
}

impl CountedQuota {
    /// Whether it limits `user`'s requests (a tenant-wide quota limits every user's).
    pub fn applies_to(&self, user: Option<&str>) -> bool {
        self.quota.user.is_none() || self.quota.user.as_deref() == user
    }
}

#[derive(sqlx::FromRow)]
struct QuotaRow {
    tenant: String,
    user_id: String,
    period: String,
    max_requests: Option<i64>,
    max_images: Option<i64>,
    max_cost_usd: Option<f64>,
}

pub(super) const INSERT_USAGE: &str = "INSERT INTO usage_log (task_id, tenant, user_id, \
    provider_config_id, provider, model, kind, images, input_tokens, output_tokens, cost_usd, \
    created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Binds a usage row to [`INSERT_USAGE`], for either database.
pub(super) fn bind_usage<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    usage: &'q UsageRecord,
    now: DateTime<Utc>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(usage.task_id)
        .bind(&usage.tenant)
        .bind(&usage.user)
        .bind(usage.config_id.map(|c| c.0))
        .bind(&usage.provider)
        .bind(&usage.model)
        .bind(usage.kind.as_str())
        .bind(usage.images)
        .bind(usage.input_tokens)
        .bind(usage.output_tokens)
        .bind(usage.cost_usd)
        .bind(now)
}

impl Store {
    /// Appends a usage row.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn record_usage(&self, usage: &UsageRecord) -> Result<(), QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| bind_usage(
            sqlx::query(INSERT_USAGE),
            usage,
            now
        )
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// A tenant's usage in `[from, to)`, grouped by provider, model and kind.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn usage_summary(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageSummaryRow>, QueryError> {
        let rows: Vec<UsageSummaryRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT provider, model, kind, CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(images), 0) AS BIGINT) AS images, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd \
             FROM usage_log WHERE tenant = $1 AND created_at >= $2 AND created_at < $3 \
             GROUP BY provider, model, kind ORDER BY provider, model, kind"
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// What `tenant` (or only its `user`) used since `from`.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn usage_totals(
        &self,
        tenant: &str,
        user: Option<&str>,
        from: DateTime<Utc>,
    ) -> Result<UsageTotals, QueryError> {
        let totals: UsageTotals = on_pool!(self, |pool| sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(images), 0) AS BIGINT) AS images, \
             CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd \
             FROM usage_log WHERE tenant = $1 AND created_at >= $2 \
             AND ($3 IS NULL OR user_id = $3)"
        )
        .bind(tenant)
        .bind(from)
        .bind(user)
        .fetch_one(pool)
        .await)?;
        Ok(totals)
    }

    /// A tenant's quotas, each with what it counted in the period that contains `now`.
    ///
    /// # Errors
    /// [`QueryError::Database`] or [`QueryError::Corrupt`].
    pub async fn counted_quotas(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<CountedQuota>, QueryError> {
        let mut counted = Vec::new();
        for quota in self.quotas(tenant).await? {
            let since = quota.period.start(now);
            let used = self
                .usage_totals(tenant, quota.user.as_deref(), since)
                .await?;
            counted.push(CountedQuota { quota, since, used });
        }
        Ok(counted)
    }

    /// Removes a quota; false if there was none.
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
            "DELETE FROM quotas WHERE tenant = $1 AND user_id = $2 AND period = $3"
        )
        .bind(tenant)
        .bind(user.unwrap_or(""))
        .bind(period.as_str())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// Creates or replaces a quota.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_quota(&self, quota: &Quota) -> Result<(), QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO quotas (tenant, user_id, period, max_requests, max_images, max_cost_usd, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant, user_id, period) DO UPDATE SET \
             max_requests = excluded.max_requests, max_images = excluded.max_images, \
             max_cost_usd = excluded.max_cost_usd, updated_at = excluded.updated_at"
        )
        .bind(&quota.tenant)
        .bind(quota.user.as_deref().unwrap_or(""))
        .bind(quota.period.as_str())
        .bind(quota.max_requests)
        .bind(quota.max_images)
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
        let rows: Vec<QuotaRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT tenant, user_id, period, max_requests, max_images, max_cost_usd \
             FROM quotas WHERE tenant = $1 ORDER BY user_id, period"
        )
        .bind(tenant)
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|r| {
                let period =
                    QuotaPeriod::parse(&r.period).map_err(|detail| QueryError::Corrupt {
                        table: "quotas",
                        detail,
                    })?;
                Ok(Quota {
                    tenant: r.tenant,
                    user: Some(r.user_id).filter(|u| !u.is_empty()),
                    period,
                    max_requests: r.max_requests,
                    max_images: r.max_images,
                    max_cost_usd: r.max_cost_usd,
                })
            })
            .collect()
    }
}
