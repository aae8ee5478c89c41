//! The usage log: one row per request that used a provider.

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
    /// Whether it counts against the tenant's quotas: not when the tenant's own
    /// provider account served it (bring your own key).
    pub charged: bool,
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
    /// Input plus output tokens.
    pub tokens: i64,
    /// Estimated cost.
    pub cost_usd: f64,
}

pub(super) const INSERT_USAGE: &str = "INSERT INTO usage_log (task_id, tenant, user_id, \
    provider_config_id, provider, model, kind, images, input_tokens, output_tokens, cost_usd, \
    charged, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

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
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
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
        .bind(usage.charged)
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

    /// What `tenant` (or only its `user`) used since `from`, as its quotas count it
    /// (usage on its own provider accounts is not charged).
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
             CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens, \
             CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd \
             FROM usage_log WHERE tenant = $1 AND created_at >= $2 \
             AND ($3 IS NULL OR user_id = $3) AND charged"
        )
        .bind(tenant)
        .bind(from)
        .bind(user)
        .fetch_one(pool)
        .await)?;
        Ok(totals)
    }
}
