//! `GET /v1/usage/report`: a tenant's usage (or one user's) in day, week or month
//! buckets, grouped by provider type, model, kind and config (and user, if asked),
//! with failed requests counted per kind and error code.

use axum::{
    Json,
    extract::{Query, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_runtime::facade::{Bucket, ReportScope, UsageBuckets};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
    usage::{parse_time, tenant_query},
};

/// The longest window one report covers.
const MAX_DAYS: i64 = 400;

/// Query of `GET /v1/usage/report`.
#[derive(Debug, Deserialize)]
pub(super) struct ReportQuery {
    tenant: Option<String>,
    user: Option<String>,
    #[serde(default)]
    by_user: bool,
    bucket: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A usage report: `{tenant, user, from, to, bucket, buckets: [{start, groups:
/// [{user?, provider, model, kind, config_id, requests, images, input_tokens,
/// output_tokens, cost_usd, charged_requests, charged_cost_usd}], failures: [{user?,
/// kind, error_code, failures}], total}], total: {requests, images, input_tokens,
/// output_tokens, cost_usd, charged_requests, charged_cost_usd, failures}}`; the
/// `charged_` sums leave out what the tenant's own provider accounts served.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReportBody {
    /// The tenant.
    tenant: String,
    /// The one user reported on, if any.
    user: Option<String>,
    /// The window's start (inclusive).
    #[schema(value_type = String, format = DateTime)]
    from: DateTime<Utc>,
    /// The window's end (exclusive).
    #[schema(value_type = String, format = DateTime)]
    to: DateTime<Utc>,
    /// The buckets and their sums.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    report: UsageBuckets,
}

#[utoipa::path(get, path = "/v1/usage/report", tag = "usage", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant (required)"), ("user" = Option<String>, Query, description = "only this user of the tenant"), ("by_user" = Option<bool>, Query, description = "group by user too"), ("bucket" = Option<String>, Query, description = "`day` (default), `week` (from Monday) or `month`, in UTC"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive (default: 30 days before `to`)"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive (default: now); at most 400 days after `from`")), responses((status = 200, description = "usage per bucket and group, failures per kind and error code", body = ReportBody), (status = 400, description = "missing tenant, bad bucket or time, or a window that is empty or too long", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn usage_report(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<ReportBody>, ApiError> {
    let tenant = tenant_query(query.tenant.as_deref())?;
    let bucket = Bucket::parse(query.bucket.as_deref().unwrap_or("day"))
        .map_err(|e| ApiError::bad_request(format!("bucket: {e}")))?;
    let to = parse_time("to", query.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = parse_time("from", query.from.as_deref())?
        .unwrap_or(to - chrono::Duration::days(super::usage::USAGE_DEFAULT_DAYS));
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    if to - from > chrono::Duration::days(MAX_DAYS) {
        return Err(ApiError::bad_request(format!(
            "a report covers at most {MAX_DAYS} days"
        )));
    }
    let scope = ReportScope {
        tenant,
        user: query.user.as_deref(),
        by_user: query.by_user,
        from,
        to,
    };
    let report = gateway.usage_report(&scope, bucket).await?;
    Ok(Json(ReportBody {
        tenant: tenant.to_owned(),
        user: query.user.clone(),
        from,
        to,
        report,
    }))
}
