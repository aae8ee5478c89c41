//! `GET /v1/usage`: a tenant's finished requests over a time window, grouped by
//! provider type, model and kind, with totals.

use axum::{
    Json,
    extract::{Query, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_runtime::facade::UsageSummaryRow;
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
};

/// How far back `GET /v1/usage` looks without `from`.
pub(crate) const USAGE_DEFAULT_DAYS: i64 = 30;

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize)]
pub(super) struct UsageQuery {
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A tenant's usage over a time window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageReport {
    /// The tenant.
    tenant: String,
    /// The window's start (inclusive).
    #[schema(value_type = String, format = DateTime)]
    from: DateTime<Utc>,
    /// The window's end (exclusive).
    #[schema(value_type = String, format = DateTime)]
    to: DateTime<Utc>,
    /// Finished requests that used a provider, grouped by provider type, model and kind.
    groups: Vec<UsageGroup>,
    /// The sums of every group.
    total: UsageTotal,
}

/// The usage of one provider type, model and kind.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageGroup {
    /// Provider type.
    provider: String,
    /// Model.
    model: Option<String>,
    /// Kind.
    kind: String,
    /// Finished requests.
    requests: i64,
    /// Images made.
    images: i64,
    /// Prompt tokens.
    input_tokens: i64,
    /// Completion tokens.
    output_tokens: i64,
    /// Estimated cost.
    cost_usd: f64,
}

/// The sums of a usage report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageTotal {
    /// Finished requests.
    requests: i64,
    /// Images made.
    images: i64,
    /// Prompt tokens.
    input_tokens: i64,
    /// Completion tokens.
    output_tokens: i64,
    /// Estimated cost.
    cost_usd: f64,
}

impl From<&UsageSummaryRow> for UsageGroup {
    fn from(r: &UsageSummaryRow) -> Self {
        Self {
            provider: r.provider.clone(),
            model: r.model.clone(),
            kind: r.kind.clone(),
            requests: r.requests,
            images: r.images,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
        }
    }
}

impl UsageTotal {
    fn of(rows: &[UsageSummaryRow]) -> Self {
        let sum = |f: fn(&UsageSummaryRow) -> i64| rows.iter().map(f).sum::<i64>();
        Self {
            requests: sum(|r| r.requests),
            images: sum(|r| r.images),
            input_tokens: sum(|r| r.input_tokens),
            output_tokens: sum(|r| r.output_tokens),
            cost_usd: rows.iter().map(|r| r.cost_usd).sum::<f64>(),
        }
    }
}

/// The required `tenant` query parameter, checked.
pub(crate) fn tenant_query(tenant: Option<&str>) -> Result<&str, ApiError> {
    let tenant =
        tenant.ok_or_else(|| ApiError::bad_request("the tenant query parameter is required"))?;
    switchyard_core::Tenant::new(tenant)
        .map(|_| tenant)
        .map_err(|e| ApiError::bad_request(format!("tenant: {e}")))
}

pub(crate) fn parse_time(
    name: &str,
    value: Option<&str>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_request(format!("{name} '{text}' is not an RFC 3339 time: {e}"))
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant (required)"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive (default: 30 days before `to`)"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive (default: now)")), responses((status = 200, description = "finished requests that used a provider, grouped by provider type, model and kind", body = UsageReport), (status = 400, description = "missing tenant, bad time, or from not before to", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn usage(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let tenant = tenant_query(query.tenant.as_deref())?;
    let from = parse_time("from", query.from.as_deref())?;
    let to = parse_time("to", query.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = from.unwrap_or(to - chrono::Duration::days(USAGE_DEFAULT_DAYS));
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let rows = gateway.usage(tenant, from, to).await?;
    Ok(Json(UsageReport {
        tenant: tenant.to_owned(),
        from,
        to,
        groups: rows.iter().map(UsageGroup::from).collect(),
        total: UsageTotal::of(&rows),
    }))
}
