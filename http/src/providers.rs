//! The admin API for provider configs: list, create, read, patch, delete, reload,
//! live status and a test call. Every write validates the whole config (a 400 names
//! each bad field), bumps its version and announces the change to every process.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use switchyard_core::{ConfigId, Kind, ProviderConfigDraft, ProviderType};
use switchyard_runtime::{
    reloader::announce,
    store::{ConfigChange, ProviderFilter, ProviderRecord, StoreError},
};

use super::{AdminState, error};

/// Query of `GET /v1/providers`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    provider: Option<String>,
    enabled: Option<bool>,
    kind: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

pub(super) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(v) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid provider config", "fields": v.errors})),
        )
            .into_response(),
        StoreError::NameTaken(name) => error(
            StatusCode::CONFLICT,
            format!("a provider config named '{name}' already exists"),
        ),
        StoreError::NotFound(id) => error(
            StatusCode::NOT_FOUND,
            format!("provider config {id} not found"),
        ),
        StoreError::VersionConflict { .. } => error(StatusCode::CONFLICT, e.to_string()),
        other => {
            tracing::error!(error = %other, "admin api storage error");
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage error")
        }
    }
}

#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn parse_draft(body: &Bytes) -> Result<ProviderConfigDraft, Response> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "body is not a provider config object", "detail": e.to_string()})),
        )
            .into_response()
    })
}

pub(super) async fn changed(admin: &AdminState, id: ConfigId, op: &str, version: i64) {
    announce(
        &admin.bus,
        &ConfigChange {
            id,
            op: op.to_owned(),
            version,
        },
    )
    .await;
    admin.reload.nudge();
}

#[utoipa::path(get, path = "/v1/providers", tag = "providers", security(("admin" = [])), params(("provider" = Option<String>, Query, description = "only this provider type"), ("enabled" = Option<bool>, Query, description = "only enabled or disabled configs"), ("kind" = Option<String>, Query, description = "only configs serving this kind"), ("offset" = Option<usize>, Query, description = "skip this many"), ("limit" = Option<usize>, Query, description = "at most this many (default 100, max 1000)")), responses((status = 200, description = "{items: [provider config (PROTOCOL.md §6, keys masked)], total, offset, limit}"), (status = 400, description = "bad filter"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn list_providers(
    State(admin): State<AdminState>,
    Query(query): Query<ListQuery>,
) -> Response {
    let provider = match query
        .provider
        .as_deref()
        .map(str::parse::<ProviderType>)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let kind = match query.kind.as_deref().map(str::parse::<Kind>).transpose() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let all = ProviderFilter {
        provider,
        enabled: query.enabled,
        kind,
        ..ProviderFilter::default()
    };
    let total = match admin.store.list_providers(&all).await {
        Ok(records) => records.len(),
        Err(e) => return store_error(e),
    };
    let limit = query.limit.unwrap_or(100).min(1000);
    let page = ProviderFilter {
        offset: query.offset,
        limit: Some(limit),
        ..all
    };
    match admin.store.list_providers(&page).await {
        Ok(records) => Json(json!({
            "items": records.iter().map(ProviderRecord::to_json).collect::<Vec<_>>(),
            "total": total,
            "offset": query.offset,
            "limit": limit,
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(post, path = "/v1/providers", tag = "providers", security(("admin" = [])), request_body(content_type = "application/json", description = "a provider config object (PROTOCOL.md §6); name and provider are required"), responses((status = 201, description = "the stored config, key masked"), (status = 400, description = "{error, fields: [{path, message}]}"), (status = 409, description = "the name is taken"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn create_provider(State(admin): State<AdminState>, body: Bytes) -> Response {
    let draft = match parse_draft(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let spec = match draft.validate() {
        Ok(spec) => spec,
        Err(e) => return store_error(StoreError::Invalid(e)),
    };
    match admin.store.insert_provider(&spec).await {
        Ok(config) => {
            changed(&admin, config.id, "insert", config.version).await;
            (StatusCode::CREATED, Json(json!(config))).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[utoipa::path(get, path = "/v1/providers/{id}", tag = "providers", security(("admin" = [])), params(("id" = i64, Path, description = "config id")), responses((status = 200, description = "the config, key masked (an invalid row shows its errors)"), (status = 404, description = "not found"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn get_provider(State(admin): State<AdminState>, Path(id): Path<i64>) -> Response {
    match admin.store.get_provider(ConfigId(id)).await {
        Ok(Some(record)) => Json(record.to_json()).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("provider config {id} not found"),
        ),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(patch, path = "/v1/providers/{id}", tag = "providers", security(("admin" = [])), params(("id" = i64, Path, description = "config id")), request_body(content_type = "application/json", description = "any subset of the config fields; a masked api_key means unchanged"), responses((status = 200, description = "the stored config with its new version"), (status = 400, description = "{error, fields: [{path, message}]}"), (status = 404, description = "not found"), (status = 409, description = "name taken or concurrent write"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn patch_provider(
    State(admin): State<AdminState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let patch = match parse_draft(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match admin.store.patch_provider(ConfigId(id), patch).await {
        Ok(config) => {
            changed(&admin, config.id, "update", config.version).await;
            Json(json!(config)).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[utoipa::path(delete, path = "/v1/providers/{id}", tag = "providers", security(("admin" = [])), params(("id" = i64, Path, description = "config id")), responses((status = 204, description = "deleted; its actor drains and stops"), (status = 404, description = "not found"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn delete_provider(
    State(admin): State<AdminState>,
    Path(id): Path<i64>,
) -> Response {
    match admin.store.delete_provider(ConfigId(id)).await {
        Ok(true) => {
            changed(&admin, ConfigId(id), "delete", 0).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("provider config {id} not found"),
        ),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(post, path = "/v1/providers/reload", tag = "providers", security(("admin" = [])), responses((status = 200, description = "{live, added, replaced, removed, invalid, failed, versions}"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn reload(State(admin): State<AdminState>) -> Response {
    match admin.reload.reload_all().await {
        Ok(report) => Json(json!(report)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[utoipa::path(get, path = "/v1/providers/status", tag = "providers", security(("admin" = [])), responses((status = 200, description = "{replicas, instances: [{config_id, name, version, actor, breaker, in_flight, queued, latency_ewma_ms, restarts, requests, errors, limiter_waits, last_error, …}], invalid: [{config_id, errors}]}"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn status(State(admin): State<AdminState>) -> Response {
    let replicas = admin
        .membership
        .as_ref()
        .map_or(1, switchyard_runtime::replicas::Membership::replicas);
    Json(json!({
        "replicas": replicas,
        "instances": admin.engine.status(),
        "invalid": admin.reload.invalid(),
    }))
    .into_response()
}

#[utoipa::path(post, path = "/v1/providers/{id}/test", tag = "providers", security(("admin" = [])), params(("id" = i64, Path, description = "config id")), responses((status = 200, description = "{ok, code?, error?}: the adapter's health check against the provider"), (status = 404, description = "not found"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn test_provider(
    State(admin): State<AdminState>,
    Path(id): Path<i64>,
) -> Response {
    let record = match admin.store.get_provider(ConfigId(id)).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("provider config {id} not found"),
            );
        }
        Err(e) => return store_error(e),
    };
    let mut config = match record.config() {
        Ok(config) => config,
        Err(e) => return store_error(StoreError::Invalid(e)),
    };
    let plugins = admin.engine.plugins();
    if let Some(plugins) = plugins {
        plugins.resolve(&admin.store, [&mut config]).await;
    }
    let adapter = match switchyard_runtime::providers::build_adapter_with(
        &config,
        plugins.map(|p| p.as_ref() as &dyn switchyard_runtime::providers::PluginSource),
    ) {
        Ok(adapter) => adapter,
        Err(e) => return Json(json!({"ok": false, "error": e.to_string()})).into_response(),
    };
    let timeout = std::time::Duration::from_millis(config.spec.timeout_ms);
    match tokio::time::timeout(timeout, adapter.health_check()).await {
        Ok(Ok(())) => Json(json!({"ok": true})).into_response(),
        Ok(Err(e)) => {
            Json(json!({"ok": false, "code": e.code, "error": e.message})).into_response()
        }
        Err(_) => Json(json!({"ok": false, "code": "timeout", "error": "no answer in time"}))
            .into_response(),
    }
}
