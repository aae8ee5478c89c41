//! Admin endpoints for WASM plugins: install (`PUT` the `.wasm` body), list, remove,
//! roll back. Every write is validated first (nothing is stored for a bad file), then
//! announced so every runtime reloads the configs that use the plugin.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{AdminState, error};
use switchyard_runtime::{
    plugins::{InstallError, install},
    store::StoreError,
};

async fn changed(admin: &AdminState, name: &str) {
    switchyard_runtime::reloader::announce_plugins(&admin.bus, name).await;
    admin.reload.nudge();
}

fn plugin_store_error(e: &StoreError) -> Response {
    match e {
        StoreError::Conflict(message) => error(StatusCode::CONFLICT, message.clone()),
        other => {
            tracing::error!(error = %other, "plugin storage error");
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage error")
        }
    }
}

#[utoipa::path(put, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "install under this name; '-' takes the name the plugin gives")), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component"), responses((status = 201, description = "installed: {name, version, sha256, bytes, active, created_at}"), (status = 200, description = "the same file was installed already (made active again)"), (status = 400, description = "not a valid switchyard:provider plugin (the reason says why); nothing stored"), (status = 409, description = "this name and version exist with other content"), (status = 503, description = "this runtime runs no plugin host"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn install_plugin(
    State(admin): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(registry) = admin.engine.plugins() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this runtime runs no plugin host ([plugins] enabled = false)",
        );
    };
    let name = (name != "-").then_some(name.as_str());
    match install(&admin.store, registry.host(), &body, name).await {
        Ok((info, new)) => {
            changed(&admin, &info.name).await;
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(json!(info))).into_response()
        }
        Err(InstallError::Store(e)) => plugin_store_error(&e),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", security(("admin" = [])), responses((status = 200, description = "{items: [{name, version, sha256, bytes, active, created_at}]}"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn list_plugins(State(admin): State<AdminState>) -> Response {
    match admin.store.list_plugins(None).await {
        Ok(items) => Json(json!({"items": items})).into_response(),
        Err(e) => plugin_store_error(&e),
    }
}

#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "plugin name")), responses((status = 200, description = "{name, current, versions: [...]}"), (status = 404, description = "not installed"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn get_plugin(
    State(admin): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    match admin.store.list_plugins(Some(&name)).await {
        Ok(versions) if versions.is_empty() => error(
            StatusCode::NOT_FOUND,
            format!("plugin '{name}' is not installed"),
        ),
        Ok(versions) => {
            let current = versions
                .iter()
                .rev()
                .find(|v| v.active)
                .map(|v| v.version.clone());
            Json(json!({"name": name, "current": current, "versions": versions})).into_response()
        }
        Err(e) => plugin_store_error(&e),
    }
}

#[utoipa::path(delete, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "name (every version) or name@version")), responses((status = 204, description = "removed"), (status = 404, description = "not installed"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn delete_plugin(
    State(admin): State<AdminState>,
    Path(reference): Path<String>,
) -> Response {
    match admin.store.remove_plugin(&reference).await {
        Ok(0) => error(
            StatusCode::NOT_FOUND,
            format!("plugin '{reference}' is not installed"),
        ),
        Ok(_) => {
            changed(&admin, &reference).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => plugin_store_error(&e),
    }
}

#[utoipa::path(post, path = "/v1/plugins/{name}/rollback", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "plugin name")), responses((status = 200, description = "{deactivated, current}"), (status = 409, description = "no earlier version to return to"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn rollback_plugin(
    State(admin): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    match admin.store.rollback_plugin(&name).await {
        Ok((deactivated, current)) => {
            changed(&admin, &name).await;
            Json(json!({"deactivated": deactivated, "current": current})).into_response()
        }
        Err(e) => plugin_store_error(&e),
    }
}
