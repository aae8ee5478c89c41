//! A tenant's webhooks, for the admin token or a key of that tenant: `GET`/`POST
//! /v1/tenants/{tenant}/webhooks`, `GET`/`PATCH`/`DELETE
//! /v1/tenants/{tenant}/webhooks/{id}`, and the delivery log `GET
//! /v1/tenants/{tenant}/webhooks/{id}/deliveries`. Another tenant's endpoints are
//! answered 404, as if absent. The secret is shown once, in the answer to the `POST`.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use switchyard_runtime::facade::{DeliveryRecord, Webhook, WebhookError, WebhookRequest};
use utoipa::ToSchema;

use crate::{
    caller::Caller,
    error::{ApiError, ErrorBody, json_body},
    keys::tenant_path,
    state::AdminApi,
};

/// The tenant of the path, if the caller may manage its webhooks.
fn owner(caller: &Caller, tenant: &str) -> Result<String, ApiError> {
    let tenant = tenant_path(tenant)?;
    if !caller.sees(tenant.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a tenant key manages only its own tenant's webhooks",
        ));
    }
    Ok(tenant.to_string())
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid(message) => ApiError::bad_request(message),
            WebhookError::NotFound(_) => ApiError::not_found(error.to_string()),
            WebhookError::TooMany(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            WebhookError::Database(e) => ApiError::storage(e),
        }
    }
}

/// An endpoint: `{id, tenant, url, events, enabled, created_at}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookBody {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    webhook: Webhook,
}

/// A new endpoint, with its signing secret (shown this once; never in `Debug`).
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    webhook: Webhook,
    /// `whsec_…`: the key of the `webhook-signature` header.
    secret: String,
}

impl std::fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhook")
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

/// A tenant's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    /// The tenant.
    tenant: String,
    /// Its endpoints.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Webhook>,
}

/// An endpoint's deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryLog {
    /// The endpoint.
    webhook_id: i64,
    /// `{id, event_id, event_type, request_id, status, attempts, last_status,
    /// last_error, next_attempt_ms, created_at, finished_at}`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<DeliveryRecord>,
}

/// `?before=ID&limit=N` of the delivery log.
#[derive(Debug, Deserialize)]
pub(crate) struct DeliveryQuery {
    before: Option<String>,
    limit: Option<String>,
}

/// `PATCH`: `{enabled}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookPatch {
    enabled: bool,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "the tenant's endpoints (secrets never shown)", body = WebhookList), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn list_webhooks(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<WebhookList>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let items = gateway.webhooks().list(&tenant).await?;
    Ok(Json(WebhookList { tenant, items }))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = Object, description = "`{url, events?, secret?}`: events of `accepted`, `started`, `progress`, `completed`, `failed` (default: the last two); secret `whsec_…` (default: one is made)", content_type = "application/json"), responses((status = 201, description = "registered; the secret is shown this once", body = CreatedWebhook), (status = 400, description = "a bad field, named (an internal address is refused unless allow-listed)", body = ErrorBody), (status = 409, description = "the tenant has its most webhooks", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn create_webhook(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let request: WebhookRequest = json_body(&body, "a webhook")?;
    let (webhook, secret) = gateway.webhooks().register(&tenant, request).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook { webhook, secret }),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/webhooks/{id}", tag = "webhooks", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the endpoint")), responses((status = 200, description = "the endpoint", body = WebhookBody), (status = 404, description = "no such endpoint of this tenant", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn get_webhook(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<Json<WebhookBody>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let webhook = gateway.webhooks().get(&tenant, id).await?;
    Ok(Json(WebhookBody { webhook }))
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}/webhooks/{id}", tag = "webhooks", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the endpoint")), request_body(content = Object, description = "`{enabled}`: off, nothing more is sent and what was queued is given up", content_type = "application/json"), responses((status = 200, description = "changed", body = WebhookBody), (status = 400, description = "a bad field, named", body = ErrorBody), (status = 404, description = "no such endpoint of this tenant", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn patch_webhook(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
    body: Bytes,
) -> Result<Json<WebhookBody>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let patch: WebhookPatch = json_body(&body, "a webhook change")?;
    let webhook = gateway
        .webhooks()
        .set_enabled(&tenant, id, patch.enabled)
        .await?;
    Ok(Json(WebhookBody { webhook }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/webhooks/{id}", tag = "webhooks", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the endpoint")), responses((status = 204, description = "removed, with its delivery log"), (status = 404, description = "no such endpoint of this tenant", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn delete_webhook(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    gateway.webhooks().delete(&tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/webhooks/{id}/deliveries", tag = "webhooks", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the endpoint"), ("before" = Option<i64>, Query, description = "only deliveries with a smaller id (the next page)"), ("limit" = Option<u32>, Query, description = "at most this many (1–500, default 100)")), responses((status = 200, description = "its deliveries, newest first", body = DeliveryLog), (status = 400, description = "a bad parameter, named", body = ErrorBody), (status = 404, description = "no such endpoint of this tenant", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn list_deliveries(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<DeliveryLog>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let before = query
        .before
        .as_deref()
        .map(|b| {
            b.parse::<i64>()
                .map_err(|_| ApiError::bad_request("before: must be a delivery id"))
        })
        .transpose()?;
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| ApiError::bad_request("limit: must be 1 to 500"))?,
    };
    let items = gateway
        .webhooks()
        .deliveries(&tenant, id, before, limit)
        .await?;
    Ok(Json(DeliveryLog {
        webhook_id: id,
        items,
    }))
}
