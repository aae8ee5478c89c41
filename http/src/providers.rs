//! The admin API for provider configs: list, create, read, patch, delete, reload,
//! live status and a test call. Every write validates the whole config (a 400 names
//! each bad field), bumps its version and announces the change to every process.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::IntoResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::{ConfigRef, Kind, ProviderConfig, ProviderConfigDraft, ProviderType};
use switchyard_runtime::facade::{
    Gateway, InstanceStatus, InvalidConfig, ProviderCheck, ProviderFilter, ProviderRecord,
    ProviderStatus, ReloadReport,
};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody},
    state::AdminApi,
};

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

/// A page of provider configs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderPage {
    /// The configs of this page (PROTOCOL.md §6, keys masked).
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// How many configs pass the filter, on every page.
    total: usize,
    /// How many were skipped.
    offset: usize,
    /// At most this many per page.
    limit: usize,
}

/// The live status of this process's instances.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProvidersStatus {
    /// Replicas in the deployment (1 without NATS).
    replicas: u32,
    /// Each live instance: `{config_id, name, version, actor, breaker, in_flight, queued,
    /// latency_ewma_ms, restarts, requests, errors, limiter_waits, last_error,
    /// config_status, …}`.
    #[schema(value_type = Vec<Object>)]
    instances: Vec<Value>,
    /// Each stored config that does not validate: `{config_id, errors}`.
    #[schema(value_type = Vec<Object>)]
    invalid: Vec<InvalidConfig>,
}

/// The answer of a test call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestAnswer {
    /// Whether the provider answered the adapter's health check.
    ok: bool,
    /// The error code, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// What went wrong, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl TestAnswer {
    fn failed(code: Option<&'static str>, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            code,
            error: Some(error.into()),
        }
    }
}

fn parse_draft(body: &Bytes) -> Result<ProviderConfigDraft, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::NotAConfig)
}

fn not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(format!("provider config {id} not found"))
}

/// A config's status, as the seed's console shows it: `needs_api_key` (a config of a
/// type that needs a key, with neither a key nor OAuth2); `disabled`;
/// `failing` (its row does not validate, or in this process its actor failed or its
/// breaker is open); else `configured`.
fn config_status(record: &ProviderRecord, live: Option<&InstanceStatus>) -> &'static str {
    let draft = &record.draft;
    let needs_key = draft
        .provider
        .as_deref()
        .and_then(|p| p.parse::<ProviderType>().ok())
        .is_some_and(ProviderType::requires_api_key);
    if needs_key && draft.api_key.is_none() && draft.auth.is_none() {
        // Before it can be enabled.
        return "needs_api_key";
    }
    if draft.enabled == Some(false) {
        return "disabled";
    }
    let invalid = !record.problems.is_empty() || record.config().is_err();
    if invalid || live.is_some_and(instance_failing) {
        return "failing";
    }
    "configured"
}

/// Whether a live instance is failing here: its actor gave up, or its breaker is open.
fn instance_failing(instance: &InstanceStatus) -> bool {
    instance.actor == "failed" || instance.breaker == "open"
}

/// The config a path names: by id (digits) or by its unique name.
pub(crate) async fn config_named(
    gateway: &Gateway,
    target: &str,
) -> Result<ProviderRecord, ApiError> {
    let reference = match target.parse::<i64>() {
        Ok(id) => ConfigRef::Id(id),
        Err(_) => ConfigRef::Name(target.to_owned()),
    };
    gateway
        .find_provider(&reference)
        .await?
        .ok_or_else(|| not_found(target.chars().take(100).collect::<String>()))
}

#[utoipa::path(get, path = "/v1/providers", tag = "providers", security(("admin" = [])), params(("provider" = Option<String>, Query, description = "only this provider type"), ("enabled" = Option<bool>, Query, description = "only enabled or disabled configs"), ("kind" = Option<String>, Query, description = "only configs serving this kind"), ("offset" = Option<usize>, Query, description = "skip this many"), ("limit" = Option<usize>, Query, description = "at most this many (default 100, max 1000)")), responses((status = 200, description = "a page of provider configs (PROTOCOL.md §6, keys masked)", body = ProviderPage), (status = 400, description = "bad filter", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn list_providers(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ProviderPage>, ApiError> {
    let provider = query
        .provider
        .as_deref()
        .map(str::parse::<ProviderType>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let kind = query
        .kind
        .as_deref()
        .map(str::parse::<Kind>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let all = ProviderFilter {
        provider,
        enabled: query.enabled,
        kind,
        ..ProviderFilter::default()
    };
    let total = gateway.providers(&all).await?.len();
    let limit = query.limit.unwrap_or(100).min(1000);
    let page = ProviderFilter {
        offset: query.offset,
        limit: Some(limit),
        ..all
    };
    let records = gateway.providers(&page).await?;
    let live = gateway.provider_status().instances;
    Ok(Json(ProviderPage {
        items: records
            .iter()
            .map(|record| {
                let mut item = record.to_json();
                let instance = live.iter().find(|i| i.config_id == record.id);
                item["config_status"] = Value::from(config_status(record, instance));
                item
            })
            .collect(),
        total,
        offset: query.offset,
        limit,
    }))
}

#[utoipa::path(post, path = "/v1/providers", tag = "providers", security(("admin" = [])), request_body(content = ref("#/components/schemas/ProviderConfigDraft"), content_type = "application/json", description = "a provider config object (PROTOCOL.md §6); name and provider are required"), responses((status = 201, description = "the stored config, key masked", body = ref("#/components/schemas/ProviderConfig")), (status = 400, description = "{error, fields: [{path, message}]}", body = ErrorBody), (status = 409, description = "the name is taken", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn create_provider(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    body: Bytes,
) -> Result<(StatusCode, Json<ProviderConfig>), ApiError> {
    let spec = parse_draft(&body)?.validate()?;
    let config = gateway.create_provider(&spec).await?;
    Ok((StatusCode::CREATED, Json(config)))
}

#[utoipa::path(get, path = "/v1/providers/{id}", tag = "providers", security(("admin" = [])), params(("id" = String, Path, description = "config id, or its unique name")), responses((status = 200, description = "the config, key masked (an invalid row shows its errors)", body = ref("#/components/schemas/ProviderConfig")), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn get_provider(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(target): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = config_named(&gateway, &target).await?;
    Ok(Json(record.to_json()))
}

#[utoipa::path(patch, path = "/v1/providers/{id}", tag = "providers", security(("admin" = [])), params(("id" = String, Path, description = "config id, or its unique name")), request_body(content = ref("#/components/schemas/ProviderConfigDraft"), content_type = "application/json", description = "any subset of the config fields; a masked api_key means unchanged"), responses((status = 200, description = "the stored config with its new version", body = ref("#/components/schemas/ProviderConfig")), (status = 400, description = "{error, fields: [{path, message}]}", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody), (status = 409, description = "name taken or concurrent write", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn patch_provider(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(target): Path<String>,
    body: Bytes,
) -> Result<Json<ProviderConfig>, ApiError> {
    let patch = parse_draft(&body)?;
    let id = config_named(&gateway, &target).await?.id;
    // The store refuses a change of `owner` (an account never changes hands).
    let config = gateway.patch_provider(id, patch).await?;
    Ok(Json(config))
}

#[utoipa::path(delete, path = "/v1/providers/{id}", tag = "providers", security(("admin" = [])), params(("id" = String, Path, description = "config id, or its unique name")), responses((status = 204, description = "deleted; its actor drains and stops"), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_provider(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(target): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = config_named(&gateway, &target).await?.id;
    if !gateway.delete_provider(id).await? {
        return Err(not_found(id));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/providers/reload", tag = "providers", security(("admin" = [])), responses((status = 200, description = "what the reload did", body = ref("#/components/schemas/ReloadReport")), (status = 500, description = "the reload failed", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn reload(
    State(AdminApi { gateway, .. }): State<AdminApi>,
) -> Result<Json<ReloadReport>, ApiError> {
    let report = gateway
        .reload()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(report))
}

#[utoipa::path(get, path = "/v1/providers/status", tag = "providers", security(("admin" = [])), responses((status = 200, description = "the live status of this process's instances, and the stored configs that do not validate", body = ProvidersStatus), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn status(
    State(AdminApi { gateway, .. }): State<AdminApi>,
) -> Json<ProvidersStatus> {
    let ProviderStatus {
        replicas,
        instances,
        invalid,
    } = gateway.provider_status();
    let instances = instances
        .iter()
        .map(|instance| {
            let mut item = serde_json::to_value(instance).unwrap_or(Value::Null);
            let status = if instance_failing(instance) {
                "failing"
            } else {
                "configured"
            };
            item["config_status"] = Value::from(status);
            item
        })
        .collect();
    Json(ProvidersStatus {
        replicas,
        instances,
        invalid,
    })
}

#[utoipa::path(post, path = "/v1/providers/{id}/test", tag = "providers", security(("admin" = [])), params(("id" = String, Path, description = "config id, or its unique name")), responses((status = 200, description = "the adapter's health check against the provider", body = TestAnswer), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn test_provider(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(target): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = config_named(&gateway, &target).await?;
    let config = record.config()?;
    let answer = match gateway.check_provider(config).await {
        ProviderCheck::Healthy => TestAnswer {
            ok: true,
            code: None,
            error: None,
        },
        ProviderCheck::NoAdapter(why) => TestAnswer::failed(None, why),
        ProviderCheck::Failed { code, message } => TestAnswer::failed(Some(code.as_str()), message),
        ProviderCheck::TimedOut => TestAnswer::failed(Some("timeout"), "no answer in time"),
    };
    Ok(Json(answer))
}
