//! Statistics per provider config over a time range (issue 18 §1), read from the
//! database so they survive config edits and restarts: attempts and their outcomes
//! and latency (`attempt_log`, one row per attempt, written with the terminal row),
//! what was consumed (`usage_log`) and the feedback on results (`task_feedback`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{Backend, QueryError, Store, on_pool};

/// One attempt, for `attempt_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// The request's tenant.
    pub tenant: String,
    /// Its kind.
    pub kind: String,
    /// The instance tried.
    pub config_id: i64,
    /// Whether it produced the output.
    pub succeeded: bool,
    /// The error code when it failed.
    pub error_code: Option<String>,
    /// How long it took.
    pub latency_ms: i64,
}

/// A config's statistics over a range.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConfigStats {
    /// The config.
    pub config_id: i64,
    /// Attempts made on it.
    pub requests: i64,
    /// Attempts that produced the output.
    pub succeeded: i64,
    /// Attempts that failed.
    pub failed: i64,
    /// `succeeded / requests` (none without attempts).
    pub success_rate: Option<f64>,
    /// Failed attempts by error code.
    pub error_codes: BTreeMap<String, i64>,
    /// Attempt latency percentiles, in ms.
    pub p50_ms: Option<i64>,
    /// 95th percentile.
    pub p95_ms: Option<i64>,
    /// 99th percentile.
    pub p99_ms: Option<i64>,
    /// Images made.
    pub images: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Estimated cost.
    pub cost_usd: f64,
    /// Results rated.
    pub ratings: i64,
    /// Their mean rating (1–5).
    pub rating_avg: Option<f64>,
    /// Results marked favorite.
    pub favorites: i64,
}

/// One config's attempts in one time bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct StatsBucket {
    /// The bucket's start (`YYYY-MM-DD` or `YYYY-MM-DDTHH:00`, UTC).
    pub start: String,
    /// The config.
    pub config_id: i64,
    /// Attempts.
    pub requests: i64,
    /// Attempts that produced the output.
    pub succeeded: i64,
    /// Mean latency, in ms.
    pub avg_latency_ms: Option<f64>,
}

/// The bucket of a statistics series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsBucketSize {
    /// Hours (UTC).
    Hour,
    /// Days (UTC).
    Day,
}

fn bucket_of(backend: Backend, size: StatsBucketSize) -> &'static str {
    match (backend, size) {
        (Backend::Postgres, StatsBucketSize::Hour) => {
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00')"
        }
        (Backend::Postgres, StatsBucketSize::Day) => {
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
        (Backend::Sqlite, StatsBucketSize::Hour) => "substr(created_at, 1, 13) || ':00'",
        (Backend::Sqlite, StatsBucketSize::Day) => "substr(created_at, 1, 10)",
    }
}

/// `AND provider_config_id = $3` when one config is asked for.
fn one_config(config: Option<i64>) -> &'static str {
    if config.is_some() {
        " AND provider_config_id = $3"
    } else {
        ""
    }
}

type AttemptAgg = (i64, i64, i64, Option<i64>, Option<i64>, Option<i64>);
type UsageAgg = (i64, i64, i64, i64, f64);
type FeedbackAgg = (i64, i64, Option<f64>, i64);

impl Store {
    /// Each config's statistics over `[from, to)` (only `config`, if given), by
    /// config id; a config without attempts, usage or feedback in the range is left
    /// out.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn config_stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        config: Option<i64>,
    ) -> Result<Vec<ConfigStats>, QueryError> {
        let only = one_config(config);
        // Percentiles by rank within each config: the value at rank ⌈n·p⌉.
        let attempts_sql = format!(
            "WITH a AS (SELECT provider_config_id AS c, latency_ms AS l, succeeded AS s, \
             ROW_NUMBER() OVER (PARTITION BY provider_config_id ORDER BY latency_ms) AS rn, \
             COUNT(*) OVER (PARTITION BY provider_config_id) AS n FROM attempt_log \
             WHERE created_at >= $1 AND created_at < $2{only}) \
             SELECT c, COUNT(*), CAST(SUM(CASE WHEN s THEN 1 ELSE 0 END) AS BIGINT), \
             MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN l END), \
             MAX(CASE WHEN rn = (n * 95 + 99) / 100 THEN l END), \
             MAX(CASE WHEN rn = (n * 99 + 99) / 100 THEN l END) FROM a GROUP BY c"
        );
        let codes_sql = format!(
            "SELECT provider_config_id, COALESCE(error_code, 'unknown'), COUNT(*) \
             FROM attempt_log WHERE created_at >= $1 AND created_at < $2{only} \
             AND NOT succeeded GROUP BY provider_config_id, error_code"
        );
        let usage_sql = format!(
            "SELECT provider_config_id, CAST(COALESCE(SUM(images), 0) AS BIGINT), \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) FROM usage_log \
             WHERE created_at >= $1 AND created_at < $2 AND provider_config_id IS NOT NULL\
             {only} GROUP BY provider_config_id"
        );
        let feedback_sql = format!(
            "SELECT provider_config_id, COUNT(rating), CAST(AVG(rating) AS DOUBLE PRECISION), \
             CAST(SUM(CASE WHEN favorite THEN 1 ELSE 0 END) AS BIGINT) FROM task_feedback \
             WHERE updated_at >= $1 AND updated_at < $2 AND provider_config_id IS NOT NULL\
             {only} GROUP BY provider_config_id"
        );
        // Each query binds the range, and the config if one is asked for.
        macro_rules! rows {
            ($pool:expr, $sql:expr) => {{
                let q = sqlx::query_as(sqlx::AssertSqlSafe($sql))
                    .persistent(false)
                    .bind(from)
                    .bind(to);
                match config {
                    Some(c) => q.bind(c),
                    None => q,
                }
                .fetch_all($pool)
                .await?
            }};
        }
        let (attempts, codes, usage, feedback) = on_pool!(self, |pool| {
            let attempts: Vec<AttemptAgg> = rows!(pool, attempts_sql);
            let codes: Vec<(i64, String, i64)> = rows!(pool, codes_sql);
            let usage: Vec<UsageAgg> = rows!(pool, usage_sql);
            let feedback: Vec<FeedbackAgg> = rows!(pool, feedback_sql);
            Ok::<_, sqlx::Error>((attempts, codes, usage, feedback))
        })?;
        let mut stats: BTreeMap<i64, ConfigStats> = BTreeMap::new();
        fn entry(stats: &mut BTreeMap<i64, ConfigStats>, id: i64) -> &mut ConfigStats {
            stats.entry(id).or_insert_with(|| ConfigStats {
                config_id: id,
                ..ConfigStats::default()
            })
        }
        for (id, requests, succeeded, p50, p95, p99) in attempts {
            let s = entry(&mut stats, id);
            s.requests = requests;
            s.succeeded = succeeded;
            s.failed = requests - succeeded;
            s.success_rate = (requests > 0).then(|| succeeded as f64 / requests as f64);
            (s.p50_ms, s.p95_ms, s.p99_ms) = (p50, p95, p99);
        }
        for (id, code, count) in codes {
            let s = entry(&mut stats, id);
            *s.error_codes.entry(code).or_default() += count;
        }
        for (id, images, input, output, cost) in usage {
            let s = entry(&mut stats, id);
            (s.images, s.input_tokens, s.output_tokens, s.cost_usd) = (images, input, output, cost);
        }
        for (id, ratings, avg, favorites) in feedback {
            let s = entry(&mut stats, id);
            (s.ratings, s.rating_avg, s.favorites) = (ratings, avg, favorites);
        }
        Ok(stats.into_values().collect())
    }

    /// Each config's attempts per `size` bucket over `[from, to)` (only `config`, if
    /// given), oldest first.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn config_stats_series(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        config: Option<i64>,
        size: StatsBucketSize,
    ) -> Result<Vec<StatsBucket>, QueryError> {
        let bucket = bucket_of(self.backend(), size);
        let sql = format!(
            "SELECT {bucket} AS start, provider_config_id AS config_id, COUNT(*) AS requests, \
             CAST(SUM(CASE WHEN succeeded THEN 1 ELSE 0 END) AS BIGINT) AS succeeded, \
             CAST(AVG(latency_ms) AS DOUBLE PRECISION) AS avg_latency_ms FROM attempt_log \
             WHERE created_at >= $1 AND created_at < $2{} \
             GROUP BY {bucket}, provider_config_id ORDER BY 1, 2",
            one_config(config)
        );
        let rows = on_pool!(self, |pool| {
            let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(from)
                .bind(to);
            match config {
                Some(c) => q.bind(c),
                None => q,
            }
            .fetch_all(pool)
            .await
        })?;
        Ok(rows)
    }
}
