//! Quotas (admin token): `GET /v1/quotas?tenant=…` lists a tenant's quotas with what
//! each has counted in its current period, what running requests hold and what is left, `PUT /v1/quotas` creates or replaces one,
//! `DELETE /v1/quotas?tenant=…&period=…[&user=…]` removes one. A write applies to
//! requests admitted from then on (the gateway tells the pipeline's quota checker).

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use switchyard_runtime::facade::{CountedQuota, Quota, QuotaPeriod};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
    usage::tenant_query,
};

/// The body of `PUT /v1/quotas`: at least one `max_…`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaBody {
    /// The tenant.
    tenant: String,
    /// One user of the tenant, for a per-user quota.
    #[serde(default)]
    user: Option<String>,
    /// `day` or `month`.
    period: String,
    /// Requests at most, per period.
    #[serde(default)]
    max_requests: Option<i64>,
    /// Images at most, per period.
    #[serde(default)]
    max_images: Option<i64>,
    /// Input plus output tokens at most, per period.
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Spend at most, per period.
    #[serde(default)]
    max_cost_usd: Option<f64>,
}

/// A tenant's quotas.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuotaList {
    /// The tenant.
    tenant: String,
    /// Each quota with what it counted since the start of its current period, what
    /// requests still running hold of it, and what is left (`null`: no such limit):
    /// `{tenant, user, period, max_requests, max_images, max_tokens, max_cost_usd,
    /// since, used: {requests, images, tokens, cost_usd}, reserved: {…}, left: {…}}`.
    #[schema(value_type = Vec<Object>)]
    quotas: Vec<CountedQuota>,
}

/// Query of `GET` and `DELETE /v1/quotas`.
#[derive(Debug, Deserialize)]
pub(super) struct QuotaQuery {
    tenant: Option<String>,
    user: Option<String>,
    period: Option<String>,
}

fn period_of(period: &str) -> Result<QuotaPeriod, ApiError> {
    QuotaPeriod::parse(period).map_err(|e| ApiError::bad_request(format!("period: {e}")))
}

#[utoipa::path(get, path = "/v1/quotas", tag = "quotas", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant (required)")), responses((status = 200, description = "each quota with what it counted since the start of its current period", body = QuotaList), (status = 400, description = "missing or invalid tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn list_quotas(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Query(query): Query<QuotaQuery>,
) -> Result<Json<QuotaList>, ApiError> {
    let tenant = tenant_query(query.tenant.as_deref())?;
    let quotas = gateway.quotas(tenant, chrono::Utc::now()).await?;
    Ok(Json(QuotaList {
        tenant: tenant.to_owned(),
        quotas,
    }))
}

#[utoipa::path(put, path = "/v1/quotas", tag = "quotas", security(("admin" = [])), request_body(content = QuotaBody, description = "the quota (at least one max)", content_type = "application/json"), responses((status = 200, description = "the quota as stored; it applies to requests accepted from now on", body = ref("#/components/schemas/Quota")), (status = 400, description = "a bad field, named", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn put_quota(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    body: Bytes,
) -> Result<Json<Quota>, ApiError> {
    let body: QuotaBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a quota: {e}")))?;
    let quota = Quota {
        tenant: body.tenant,
        user: body.user,
        period: period_of(&body.period)?,
        max_requests: body.max_requests,
        max_images: body.max_images,
        max_tokens: body.max_tokens,
        max_cost_usd: body.max_cost_usd,
    };
    quota.check().map_err(ApiError::bad_request)?;
    gateway.set_quota(&quota).await?;
    Ok(Json(quota))
}

#[utoipa::path(delete, path = "/v1/quotas", tag = "quotas", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant"), ("period" = String, Query, description = "day or month"), ("user" = Option<String>, Query, description = "the user, for a per-user quota")), responses((status = 204, description = "removed"), (status = 404, description = "no such quota", body = ErrorBody), (status = 400, description = "missing tenant or period", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_quota(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Query(query): Query<QuotaQuery>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_query(query.tenant.as_deref())?;
    let period = query
        .period
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("the period query parameter is required"))?;
    let period = period_of(period)?;
    if !gateway
        .delete_quota(tenant, query.user.as_deref(), period)
        .await?
    {
        return Err(ApiError::not_found("no such quota"));
    }
    Ok(StatusCode::NO_CONTENT)
}
