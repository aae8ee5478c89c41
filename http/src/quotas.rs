//! Quotas (admin token): `GET /v1/quotas?tenant=…` lists a tenant's quotas with what
//! each has counted in its current period, `PUT /v1/quotas` creates or replaces one,
//! `DELETE /v1/quotas?tenant=…&period=…[&user=…]` removes one. See [`switchyard_runtime::quota`].

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{AdminState, error, store_error, tenant_query};
use switchyard_runtime::store::{Quota, QuotaPeriod};

/// The body of `PUT /v1/quotas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    tenant: String,
    #[serde(default)]
    user: Option<String>,
    period: String,
    #[serde(default)]
    max_requests: Option<i64>,
    #[serde(default)]
    max_images: Option<i64>,
    #[serde(default)]
    max_cost_usd: Option<f64>,
}

/// Query of `GET` and `DELETE /v1/quotas`.
#[derive(Debug, Deserialize)]
pub(super) struct QuotaQuery {
    tenant: Option<String>,
    user: Option<String>,
    period: Option<String>,
}

#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn period_of(period: &str) -> Result<QuotaPeriod, Response> {
    QuotaPeriod::parse(period).map_err(|e| error(StatusCode::BAD_REQUEST, format!("period: {e}")))
}

#[utoipa::path(get, path = "/v1/quotas", tag = "quotas", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant (required)")), responses((status = 200, description = "{tenant, quotas: [{tenant, user, period, max_requests, max_images, max_cost_usd, since, used: {requests, images, cost_usd}}]}: each quota with what it counted since the start of its current period"), (status = 400, description = "missing or invalid tenant"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn list_quotas(
    State(admin): State<AdminState>,
    Query(query): Query<QuotaQuery>,
) -> Response {
    let tenant = match tenant_query(query.tenant.as_deref()) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match admin.store.counted_quotas(tenant, chrono::Utc::now()).await {
        Ok(quotas) => Json(json!({"tenant": tenant, "quotas": quotas})).into_response(),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(put, path = "/v1/quotas", tag = "quotas", security(("admin" = [])), request_body(content = String, description = "{tenant, user?, period: \"day\"|\"month\", max_requests?, max_images?, max_cost_usd?} (at least one max)", content_type = "application/json"), responses((status = 200, description = "the quota as stored; it applies to requests accepted from now on"), (status = 400, description = "a bad field, named"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn put_quota(State(admin): State<AdminState>, body: Bytes) -> Response {
    let body: QuotaBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a quota: {e}")),
    };
    let period = match period_of(&body.period) {
        Ok(period) => period,
        Err(response) => return response,
    };
    let quota = Quota {
        tenant: body.tenant,
        user: body.user,
        period,
        max_requests: body.max_requests,
        max_images: body.max_images,
        max_cost_usd: body.max_cost_usd,
    };
    if let Err(message) = quota.check() {
        return error(StatusCode::BAD_REQUEST, message);
    }
    if let Err(e) = admin.store.set_quota(&quota).await {
        return store_error(e);
    }
    admin.quotas.invalidate(&quota.tenant);
    Json(quota).into_response()
}

#[utoipa::path(delete, path = "/v1/quotas", tag = "quotas", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant"), ("period" = String, Query, description = "day or month"), ("user" = Option<String>, Query, description = "the user, for a per-user quota")), responses((status = 204, description = "removed"), (status = 404, description = "no such quota"), (status = 400, description = "missing tenant or period"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn delete_quota(
    State(admin): State<AdminState>,
    Query(query): Query<QuotaQuery>,
) -> Response {
    let tenant = match tenant_query(query.tenant.as_deref()) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let Some(period) = query.period.as_deref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "the period query parameter is required",
        );
    };
    let period = match period_of(period) {
        Ok(period) => period,
        Err(response) => return response,
    };
    match admin
        .store
        .delete_quota(tenant, query.user.as_deref(), period)
        .await
    {
        Ok(true) => {
            admin.quotas.invalidate(tenant);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such quota"),
        Err(e) => store_error(e),
    }
}
