//! Admin endpoints for WASM plugins: install (`PUT` the `.wasm` body), list, remove,
//! roll back. Every write is validated first (nothing is stored for a bad file), then
//! announced so every runtime reloads the configs that use the plugin.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;
use switchyard_runtime::facade::{InstallError, PluginInfo, PluginInstallError, PluginWriteError};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
};

/// The installed plugin versions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PluginList {
    /// Every version of every plugin: `{id, name, version, sha256, bytes, active,
    /// created_at}`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<PluginInfo>,
}

/// One plugin's versions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PluginDetail {
    /// The plugin.
    name: String,
    /// The version `plugin = "name"` means now: the newest active one.
    current: Option<String>,
    /// Every version, oldest first.
    #[schema(value_type = Vec<Object>)]
    versions: Vec<PluginInfo>,
}

/// What a rollback did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rollback {
    /// The version no longer active.
    #[schema(value_type = Object)]
    deactivated: PluginInfo,
    /// The version the name means now.
    #[schema(value_type = Object)]
    current: PluginInfo,
}

/// A plugin registry write: a conflict with what is installed is the caller's (409),
/// a database failure a storage error.
impl From<PluginWriteError> for ApiError {
    fn from(e: PluginWriteError) -> Self {
        match e {
            PluginWriteError::OtherContent { .. }
            | PluginWriteError::Vanished { .. }
            | PluginWriteError::NoEarlierVersion(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            PluginWriteError::Database(_) => ApiError::storage(e),
        }
    }
}

#[utoipa::path(put, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "install under this name; '-' takes the name the plugin gives")), request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component"), responses((status = 201, description = "installed", body = ref("#/components/schemas/PluginInfo")), (status = 200, description = "the same file was installed already (made active again)", body = ref("#/components/schemas/PluginInfo")), (status = 400, description = "not a valid switchyard:provider plugin (the reason says why); nothing stored", body = ErrorBody), (status = 409, description = "this name and version exist with other content", body = ErrorBody), (status = 503, description = "this runtime runs no plugin host", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn install_plugin(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<PluginInfo>), ApiError> {
    let name = (name != "-").then_some(name.as_str());
    let (info, new) = gateway
        .install_plugin(&body, name)
        .await
        .map_err(|e| match e {
            PluginInstallError::NoHost => ApiError::unavailable(
                "this runtime runs no plugin host ([plugins] enabled = false)",
            ),
            PluginInstallError::Install(InstallError::Store(e)) => e.into(),
            PluginInstallError::Install(e) => ApiError::bad_request(e.to_string()),
        })?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)))
}

#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", security(("admin" = [])), responses((status = 200, description = "every installed version", body = PluginList), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn list_plugins(
    State(AdminApi { gateway, .. }): State<AdminApi>,
) -> Result<Json<PluginList>, ApiError> {
    let items = gateway.plugins(None).await?;
    Ok(Json(PluginList { items }))
}

#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "plugin name")), responses((status = 200, description = "the plugin's versions and the current one", body = PluginDetail), (status = 404, description = "not installed", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn get_plugin(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
) -> Result<Json<PluginDetail>, ApiError> {
    let versions = gateway.plugins(Some(&name)).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "plugin '{name}' is not installed"
        )));
    }
    let current = versions
        .iter()
        .rev()
        .find(|v| v.active)
        .map(|v| v.version.clone());
    Ok(Json(PluginDetail {
        name,
        current,
        versions,
    }))
}

#[utoipa::path(delete, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "name (every version) or name@version")), responses((status = 204, description = "removed"), (status = 404, description = "not installed", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_plugin(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    let removed = gateway.remove_plugin(&reference).await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!(
            "plugin '{reference}' is not installed"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/plugins/{name}/rollback", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "plugin name")), responses((status = 200, description = "the version deactivated and the one current now", body = Rollback), (status = 409, description = "no earlier version to return to", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn rollback_plugin(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
) -> Result<Json<Rollback>, ApiError> {
    let (deactivated, current) = gateway.rollback_plugin(&name).await?;
    Ok(Json(Rollback {
        deactivated,
        current,
    }))
}
