//! Statistics per provider config over a time range (admin token): `GET
//! /v1/providers/stats` for every config and `GET /v1/providers/{id}/stats` for one,
//! with `from`, `to` (RFC 3339; default the last 24 h) and `bucket` (`hour` or `day`)
//! for a series. Read from the database: they survive config edits and restarts.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_runtime::facade::{ProviderFilter, StatsBucket, StatsBucketSize};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
    usage::parse_time,
};

/// The longest range one query may span.
const MAX_RANGE_DAYS: i64 = 400;

/// `?from&to&bucket`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

/// Statistics: each config's totals (`items`) and, with `bucket`, a series.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsBody {
    /// Inclusive.
    #[schema(value_type = String, format = DateTime)]
    from: DateTime<Utc>,
    /// Exclusive.
    #[schema(value_type = String, format = DateTime)]
    to: DateTime<Utc>,
    /// Per config: `config_id`, `name`, `provider`, `model`, `requests` (attempts),
    /// `succeeded`, `failed`, `success_rate`, `error_codes`, `p50_ms`, `p95_ms`,
    /// `p99_ms`, `images`, `input_tokens`, `output_tokens`, `cost_usd`, `ratings`,
    /// `rating_avg`, `favorites`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// Per bucket and config: `start`, `config_id`, `requests`, `succeeded`,
    /// `avg_latency_ms` (empty without `bucket`).
    #[schema(value_type = Vec<Object>)]
    series: Vec<StatsBucket>,
}

/// A query's range and bucket.
type Window = (DateTime<Utc>, DateTime<Utc>, Option<StatsBucketSize>);

fn window(query: &StatsQuery) -> Result<Window, ApiError> {
    let to = parse_time("to", query.to.as_deref())?.unwrap_or_else(Utc::now);
    let from =
        parse_time("from", query.from.as_deref())?.unwrap_or(to - chrono::Duration::hours(24));
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::bad_request(format!(
            "from and to may be at most {MAX_RANGE_DAYS} days apart"
        )));
    }
    let bucket = match query.bucket.as_deref() {
        None => None,
        Some("hour") => Some(StatsBucketSize::Hour),
        Some("day") => Some(StatsBucketSize::Day),
        Some(_) => return Err(ApiError::bad_request("bucket: must be hour or day")),
    };
    if bucket == Some(StatsBucketSize::Hour) && to - from > chrono::Duration::days(31) {
        return Err(ApiError::bad_request(
            "bucket=hour spans at most 31 days; use bucket=day",
        ));
    }
    Ok((from, to, bucket))
}

async fn stats(
    api: &AdminApi,
    query: &StatsQuery,
    config: Option<i64>,
) -> Result<StatsBody, ApiError> {
    let (from, to, bucket) = window(query)?;
    let (stats, series) = api.gateway.config_stats(from, to, config, bucket).await?;
    // Names only: a config that cannot be read is shown by its id.
    let records = api
        .gateway
        .providers(&ProviderFilter::default())
        .await
        .unwrap_or_default();
    let items = stats
        .into_iter()
        .map(|s| {
            let mut item = serde_json::to_value(&s).unwrap_or(Value::Null);
            // The config as it is now (a deleted one keeps its id only).
            if let Some(record) = records.iter().find(|r| r.id.0 == s.config_id) {
                item["name"] = Value::from(record.draft.name.clone());
                item["provider"] = Value::from(record.draft.provider.clone());
                item["model"] = Value::from(record.draft.model.clone());
            }
            item
        })
        .collect();
    Ok(StatsBody {
        from,
        to,
        items,
        series,
    })
}

#[utoipa::path(get, path = "/v1/providers/stats", tag = "providers", security(("admin" = [])), params(("from" = Option<String>, Query, description = "RFC 3339, inclusive (default: 24 h before `to`)"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive (default: now)"), ("bucket" = Option<String>, Query, description = "`hour` or `day`: also a series")), responses((status = 200, description = "every config's statistics over the range", body = StatsBody), (status = 400, description = "a bad parameter, named", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn all_stats(
    State(api): State<AdminApi>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsBody>, ApiError> {
    Ok(Json(stats(&api, &query, None).await?))
}

#[utoipa::path(get, path = "/v1/providers/{id}/stats", tag = "providers", security(("admin" = [])), params(("id" = String, Path, description = "the config: its id, or its unique name"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive (default: 24 h before `to`)"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive (default: now)"), ("bucket" = Option<String>, Query, description = "`hour` or `day`: also a series")), responses((status = 200, description = "the config's statistics over the range (no items: nothing in it)", body = StatsBody), (status = 400, description = "a bad parameter, named", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn one_stats(
    State(api): State<AdminApi>,
    Path(target): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsBody>, ApiError> {
    // By id (also a deleted config's) or by the name of a live one.
    let id = match target.parse::<i64>() {
        Ok(id) => id,
        Err(_) => {
            crate::providers::config_named(&api.gateway, &target)
                .await?
                .id
                .0
        }
    };
    Ok(Json(stats(&api, &query, Some(id)).await?))
}
