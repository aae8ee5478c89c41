//! Tenants' limits at intake (admin token): `GET`, `PUT` and `DELETE
//! /v1/tenants/{tenant}/limits`. A write applies in this process at once, in the
//! others within their 2 s refresh; each process enforces its 1/n share.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;
use switchyard_runtime::facade::{LimitsView, TenantLimits};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody, json_body},
    keys::tenant_path,
    state::AdminApi,
};

/// A tenant's limits: `{tenant, own: {rpm, concurrency, user_rpm,
/// user_concurrency}, effective: {…}}` (`null` in `own`: the default; in
/// `effective`: unlimited).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LimitsBody {
    /// The tenant.
    tenant: String,
    /// Its own limits and what applies.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    limits: LimitsView,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/limits", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "its own limits and the ones that apply", body = LimitsBody), (status = 400, description = "bad tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn get_limits(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<Json<LimitsBody>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let limits = gateway.tenant_limits(tenant.as_str()).await?;
    Ok(Json(LimitsBody {
        tenant: tenant.to_string(),
        limits,
    }))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/limits", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = Object, description = "`{rpm, concurrency, user_rpm, user_concurrency}`, each optional (left out: the default)", content_type = "application/json"), responses((status = 200, description = "stored; applies at once here, within 2 s on other replicas", body = LimitsBody), (status = 400, description = "a bad field, named", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn put_limits(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<LimitsBody>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let limits: TenantLimits = json_body(&body, "limits")?;
    limits.check().map_err(ApiError::bad_request)?;
    let limits = gateway.set_tenant_limits(tenant.as_str(), &limits).await?;
    Ok(Json(LimitsBody {
        tenant: tenant.to_string(),
        limits,
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/limits", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 204, description = "removed: the defaults apply again"), (status = 404, description = "the tenant has no limits of its own", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_limits(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_path(&tenant)?;
    if gateway.delete_tenant_limits(tenant.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("the tenant has no limits of its own"))
    }
}
