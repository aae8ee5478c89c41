//! Usage reports (#16 §8): a tenant's usage (or one user's) per UTC day, grouped by
//! user, provider type, model, kind and config, and its failed requests per day, kind
//! and error code. Days are the unit both databases can cut alike; weeks and months
//! are folded from them by the caller.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Backend, QueryError, Store, on_pool};

/// A day's usage of one group.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UsageDayRow {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The end user (`None`: none given, or not grouped by user).
    #[sqlx(rename = "user_id")]
    pub user: Option<String>,
    /// Provider type.
    pub provider: String,
    /// Model.
    pub model: Option<String>,
    /// Kind.
    pub kind: String,
    /// The provider config (instance) that served.
    pub config_id: Option<i64>,
    /// Requests that used a provider.
    pub requests: i64,
    /// Images made.
    pub images: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Estimated cost.
    pub cost_usd: f64,
    /// Of `requests`, those charged to the tenant's quotas (not its own accounts').
    pub charged_requests: i64,
    /// Of `cost_usd`, what was charged to the tenant's quotas.
    pub charged_cost_usd: f64,
}

/// A day's failed requests of one kind and error code.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FailureDayRow {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The end user (`None`: none given, or not grouped by user).
    #[sqlx(rename = "user_id")]
    pub user: Option<String>,
    /// Kind.
    pub kind: String,
    /// The protocol's error code.
    pub error_code: Option<String>,
    /// Failed requests.
    pub failures: i64,
}

/// What a usage report covers.
#[derive(Debug, Clone, Copy)]
pub struct ReportScope<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Only this user of it.
    pub user: Option<&'a str>,
    /// Group by user too.
    pub by_user: bool,
    /// From (inclusive).
    pub from: DateTime<Utc>,
    /// To (exclusive).
    pub to: DateTime<Utc>,
}

/// The expression of a row's UTC day in each database (PostgreSQL keeps
/// `timestamptz`; SQLite keeps RFC 3339 text in UTC, whose first ten characters are
/// the day).
fn day_of(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        Backend::Sqlite => format!("substr({column}, 1, 10)"),
    }
}

/// The user column to select and to group by: the user, or none.
fn user_columns(by_user: bool) -> (&'static str, &'static str) {
    if by_user {
        ("user_id", ", user_id")
    } else {
        ("CAST(NULL AS TEXT)", "")
    }
}

/// `day` as a date (a malformed one, which the queries never give, as the epoch).
pub fn parse_day(day: &str) -> NaiveDate {
    NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap_or_default()
}

impl Store {
    /// A tenant's usage per UTC day and group, in `scope`.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn usage_by_day(
        &self,
        scope: &ReportScope<'_>,
    ) -> Result<Vec<UsageDayRow>, QueryError> {
        let day = day_of(self.backend(), "created_at");
        let (user, by_user) = user_columns(scope.by_user);
        let sql = format!(
            "SELECT {day} AS day, {user} AS user_id, provider, model, kind, \
             provider_config_id AS config_id, CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(images), 0) AS BIGINT) AS images, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd, \
             CAST(COALESCE(SUM(CASE WHEN charged THEN 1 ELSE 0 END), 0) AS BIGINT) \
             AS charged_requests, \
             CAST(COALESCE(SUM(CASE WHEN charged THEN cost_usd ELSE 0 END), 0) \
             AS DOUBLE PRECISION) AS charged_cost_usd \
             FROM usage_log WHERE tenant = $1 AND created_at >= $2 AND created_at < $3 \
             AND ($4 IS NULL OR user_id = $4) \
             GROUP BY {day}{by_user}, provider, model, kind, provider_config_id \
             ORDER BY 1, 2, provider, model, kind, provider_config_id"
        );
        self.scoped(&sql, scope).await
    }

    /// A tenant's failed requests per UTC day, kind and error code, in `scope` (by the
    /// day each was accepted).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn failures_by_day(
        &self,
        scope: &ReportScope<'_>,
    ) -> Result<Vec<FailureDayRow>, QueryError> {
        let day = day_of(self.backend(), "created_at");
        let (user, by_user) = user_columns(scope.by_user);
        let sql = format!(
            "SELECT {day} AS day, {user} AS user_id, kind, error_code, \
             CAST(COUNT(*) AS BIGINT) AS failures FROM tasks \
             WHERE tenant = $1 AND created_at >= $2 AND created_at < $3 \
             AND status = 'failed' AND ($4 IS NULL OR user_id = $4) \
             GROUP BY {day}{by_user}, kind, error_code ORDER BY 1, 2, kind, error_code"
        );
        self.scoped(&sql, scope).await
    }

    /// Runs a report query whose `$1`…`$4` are the scope's tenant, from, to and user.
    async fn scoped<R>(&self, sql: &str, scope: &ReportScope<'_>) -> Result<Vec<R>, QueryError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        let rows = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.from)
            .bind(scope.to)
            .bind(scope.user)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}
