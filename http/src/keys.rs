//! The admin API for tenant keys: `POST/GET /v1/tenants/{tenant}/keys` and
//! `DELETE /v1/tenants/{tenant}/keys/{id}`. A key is shown once, kept as SHA-256 at
//! rest, and revocable at once.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::Tenant;
use switchyard_runtime::facade::TenantKey;
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
};

/// The body of `POST /v1/tenants/{tenant}/keys` (it may be left out).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// A label.
    #[serde(default)]
    name: String,
}

/// A tenant key, without the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyInfo {
    /// The key's id.
    id: i64,
    /// Whose key it is.
    tenant: String,
    /// Its label.
    name: String,
    /// Its first characters, to tell keys apart (`sy_AbCd…`).
    prefix: String,
    /// Created at.
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Revoked at, if it was.
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<DateTime<Utc>>,
}

impl From<&TenantKey> for KeyInfo {
    fn from(key: &TenantKey) -> Self {
        Self {
            id: key.id,
            tenant: key.tenant.clone(),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A key just made: shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    /// The key's row.
    #[serde(flatten)]
    info: KeyInfo,
    /// The key itself (`sy_…`).
    key: String,
}

/// A tenant's keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList {
    /// Every key of the tenant, live or revoked.
    items: Vec<KeyInfo>,
}

pub(crate) fn tenant_path(tenant: &str) -> Result<Tenant, ApiError> {
    Tenant::new(tenant).map_err(|e| ApiError::bad_request(format!("tenant: {e}")))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = NewKey, description = "a label, or no body", content_type = "application/json"), responses((status = 201, description = "the key: `key` is shown this once and never again", body = CreatedKey), (status = 400, description = "bad tenant or body", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn create_key(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let tenant = tenant_path(&tenant)?;
    let ask: NewKey = if body.is_empty() {
        NewKey::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("not a key: {e}")))?
    };
    let (key, secret) = gateway
        .tenant_keys()
        .create(tenant.as_str(), &ask.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            info: KeyInfo::from(&key),
            key: secret,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "the tenant's keys: never the keys themselves", body = KeyList), (status = 400, description = "bad tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn list_keys(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(tenant): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let tenant = tenant_path(&tenant)?;
    let keys = gateway.tenant_keys().list(tenant.as_str()).await?;
    Ok(Json(KeyList {
        items: keys.iter().map(KeyInfo::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/keys/{id}", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the key id")), responses((status = 204, description = "revoked: it stops working at once on this replica, within 10 s on the others (their key caches)"), (status = 404, description = "no such live key", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn revoke_key(
    State(AdminApi { gateway, key_cache }): State<AdminApi>,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_path(&tenant)?;
    if gateway.tenant_keys().revoke(tenant.as_str(), id).await? {
        key_cache.clear();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such live key"))
    }
}
