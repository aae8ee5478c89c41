//! Plans (admin token): `GET /v1/plans`, `PUT` and `DELETE /v1/plans/{name}`, and a
//! tenant's plan: `GET`, `PUT` and `DELETE /v1/tenants/{tenant}/plan`. A plan is a
//! tenant-wide quota over a period; a tenant's own quota for that period wins.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use switchyard_runtime::facade::{Plan, PlanError, QuotaPeriod};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    keys::tenant_path,
    state::AdminApi,
};

/// A plan: its limits per period (`null`: no such limit).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBody {
    /// Its name (in `PUT`, the path's; a body may leave it out).
    #[serde(default)]
    name: Option<String>,
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

impl From<Plan> for PlanBody {
    fn from(plan: Plan) -> Self {
        Self {
            name: Some(plan.name),
            period: plan.period.as_str().to_owned(),
            max_requests: plan.max_requests,
            max_images: plan.max_images,
            max_tokens: plan.max_tokens,
            max_cost_usd: plan.max_cost_usd,
        }
    }
}

/// Every plan.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanList {
    /// By name.
    plans: Vec<PlanBody>,
}

/// A tenant's plan.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantPlan {
    /// The tenant.
    tenant: String,
    /// Its plan (`null`: none).
    plan: Option<String>,
}

/// The body of `PUT /v1/tenants/{tenant}/plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignBody {
    /// The plan's name.
    plan: String,
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::NotFound(_) => ApiError::not_found(e.to_string()),
            PlanError::InUse { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            PlanError::Query(e) => e.into(),
        }
    }
}

#[utoipa::path(get, path = "/v1/plans", tag = "plans", security(("admin" = [])), responses((status = 200, description = "every plan", body = PlanList), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn list_plans(
    State(AdminApi { gateway, .. }): State<AdminApi>,
) -> Result<Json<PlanList>, ApiError> {
    let plans = gateway.plans().await?;
    Ok(Json(PlanList {
        plans: plans.into_iter().map(PlanBody::from).collect(),
    }))
}

#[utoipa::path(put, path = "/v1/plans/{name}", tag = "plans", security(("admin" = [])), params(("name" = String, Path, description = "the plan")), request_body(content = PlanBody, description = "`{period, max_requests?, max_images?, max_tokens?, max_cost_usd?}` (at least one max)", content_type = "application/json"), responses((status = 200, description = "stored; every tenant assigned it has the new limits", body = PlanBody), (status = 400, description = "a bad field, named", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn put_plan(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PlanBody>, ApiError> {
    let body: PlanBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a plan: {e}")))?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request("name: differs from the path's"));
    }
    let plan = Plan {
        name,
        period: QuotaPeriod::parse(&body.period)
            .map_err(|e| ApiError::bad_request(format!("period: {e}")))?,
        max_requests: body.max_requests,
        max_images: body.max_images,
        max_tokens: body.max_tokens,
        max_cost_usd: body.max_cost_usd,
    };
    plan.check().map_err(ApiError::bad_request)?;
    gateway.set_plan(&plan).await?;
    Ok(Json(plan.into()))
}

#[utoipa::path(delete, path = "/v1/plans/{name}", tag = "plans", security(("admin" = [])), params(("name" = String, Path, description = "the plan")), responses((status = 204, description = "removed"), (status = 404, description = "no such plan", body = ErrorBody), (status = 409, description = "tenants are assigned it", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_plan(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    gateway.delete_plan(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/plan", tag = "plans", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "its plan, or null", body = TenantPlan), (status = 400, description = "bad tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn get_tenant_plan(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<Json<TenantPlan>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let plan = gateway.tenant_plan(tenant.as_str()).await?;
    Ok(Json(TenantPlan {
        tenant: tenant.to_string(),
        plan,
    }))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/plan", tag = "plans", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = AssignBody, description = "`{plan}`", content_type = "application/json"), responses((status = 200, description = "assigned; its quotas follow the plan except where it has its own", body = TenantPlan), (status = 400, description = "bad tenant or body", body = ErrorBody), (status = 404, description = "no such plan", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn put_tenant_plan(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<TenantPlan>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let body: AssignBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a plan assignment: {e}")))?;
    gateway.assign_plan(tenant.as_str(), &body.plan).await?;
    Ok(Json(TenantPlan {
        tenant: tenant.to_string(),
        plan: Some(body.plan),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/plan", tag = "plans", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 204, description = "its plan is taken away (its own quotas stay)"), (status = 404, description = "it had no plan", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_tenant_plan(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_path(&tenant)?;
    if gateway.unassign_plan(tenant.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("the tenant has no plan"))
    }
}
