//! Tenants' retention policies (admin token): `GET`, `PUT` and `DELETE
//! /v1/tenants/{tenant}/retention`. The cluster's cleaner applies a change at its next
//! run (`retention.interval_ms`, hourly by default).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;
use switchyard_runtime::facade::{RetentionPolicy, RetentionView};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody, json_body},
    keys::tenant_path,
    state::AdminApi,
};

/// A tenant's retention policy: `{tenant, own: {tasks_days, artifacts_days,
/// usage_days}, effective: {…}}` (`null` in `own`: the default; 0 in `effective`:
/// kept for ever).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetentionBody {
    /// The tenant.
    tenant: String,
    /// Its own policy and what applies.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    retention: RetentionView,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/retention", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "its own policy and the one that applies", body = RetentionBody), (status = 400, description = "bad tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn get_retention(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<Json<RetentionBody>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let retention = gateway.tenant_retention(tenant.as_str()).await?;
    Ok(Json(RetentionBody {
        tenant: tenant.to_string(),
        retention,
    }))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/retention", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = Object, description = "`{tasks_days, artifacts_days, usage_days}`, each optional (left out: the default; 0: for ever; usage_days 0 or at least 32)", content_type = "application/json"), responses((status = 200, description = "stored; the cleaner applies it at its next run", body = RetentionBody), (status = 400, description = "a bad field, named", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn put_retention(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<RetentionBody>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let policy: RetentionPolicy = json_body(&body, "a retention policy")?;
    policy.check().map_err(ApiError::bad_request)?;
    let retention = gateway
        .set_tenant_retention(tenant.as_str(), &policy)
        .await?;
    Ok(Json(RetentionBody {
        tenant: tenant.to_string(),
        retention,
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/retention", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 204, description = "removed: the defaults apply again"), (status = 404, description = "the tenant has no policy of its own", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_retention(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_path(&tenant)?;
    if gateway.delete_tenant_retention(tenant.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "the tenant has no retention policy of its own",
        ))
    }
}
