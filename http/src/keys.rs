//! The admin API for tenant keys: `POST/GET /v1/tenants/{tenant}/keys` and
//! `DELETE /v1/tenants/{tenant}/keys/{id}`. A key is shown once, kept as SHA-256 at
//! rest, and revocable at once.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::Tenant;

use super::AdminState;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    name: String,
}

fn key_json(key: &switchyard_runtime::store::TenantKey) -> Value {
    json!({
        "id": key.id, "tenant": key.tenant, "name": key.name, "prefix": key.prefix,
        "created_at": key.created_at, "revoked_at": key.revoked_at,
    })
}

#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn tenant_path(tenant: &str) -> Result<Tenant, Response> {
    Tenant::new(tenant).map_err(|e| super::error(StatusCode::BAD_REQUEST, format!("tenant: {e}")))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = String, description = "{name?}: a label", content_type = "application/json"), responses((status = 201, description = "{id, tenant, name, prefix, created_at, key}: `key` is shown this once and never again"), (status = 400, description = "bad tenant or body"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn create_key(
    State(admin): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let tenant = match tenant_path(&tenant) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let ask: NewKey = if body.is_empty() {
        NewKey::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(ask) => ask,
            Err(e) => return super::error(StatusCode::BAD_REQUEST, format!("not a key: {e}")),
        }
    };
    match admin
        .store
        .create_tenant_key(tenant.as_str(), &ask.name)
        .await
    {
        Ok((key, secret)) => {
            let mut body = key_json(&key);
            body["key"] = json!(secret);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => super::store_error(e),
    }
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "{items: [{id, tenant, name, prefix, created_at, revoked_at}]}: never the keys themselves"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn list_keys(
    State(admin): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> Response {
    let tenant = match tenant_path(&tenant) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match admin.store.tenant_keys(tenant.as_str()).await {
        Ok(keys) => {
            Json(json!({"items": keys.iter().map(key_json).collect::<Vec<_>>()})).into_response()
        }
        Err(e) => super::store_error(e),
    }
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/keys/{id}", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the key id")), responses((status = 204, description = "revoked: it stops working at once"), (status = 404, description = "no such live key"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn revoke_key(
    State(admin): State<AdminState>,
    axum::extract::Path((tenant, id)): axum::extract::Path<(String, i64)>,
) -> Response {
    let tenant = match tenant_path(&tenant) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match admin.store.revoke_tenant_key(tenant.as_str(), id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => super::error(StatusCode::NOT_FOUND, "no such live key"),
        Err(e) => super::store_error(e),
    }
}
