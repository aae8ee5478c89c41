//! A tenant's own provider accounts (bring your own key): `GET`/`POST
//! /v1/tenants/{tenant}/providers` and `GET`/`PATCH`/`DELETE
//! /v1/tenants/{tenant}/providers/{id}`, for the admin token or a key of that tenant.
//!
//! An own account is a provider config whose `owner` is the tenant: it serves only
//! that tenant's requests, its usage is recorded but not charged to the tenant's
//! quotas, and its key is encrypted and write-only like an operator's. Every write
//! tests the account with the provider's own test call (the adapter's health check)
//! before it is stored. Another tenant's accounts are answered 404, as if absent.
//! Its endpoints (`base_url`, an OAuth2 `token_url`) came from a tenant, so they are
//! reached through the outbound guard, like any URL from outside the operator's config.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;
use serde_json::Value;
use switchyard_core::{ConfigId, ProviderConfig, ProviderConfigDraft, ProviderSpec, ProviderType};
use switchyard_runtime::facade::{ProviderCheck, ProviderFilter, ProviderRecord};
use utoipa::ToSchema;

use crate::{
    caller::Caller,
    error::{ApiError, ErrorBody},
    keys::tenant_path,
    state::AdminApi,
};

/// The longest the provider's test call may take when a tenant saves an account.
const TEST_CALL_MS: u64 = 30_000;

/// The most own accounts one tenant may keep (each runs an actor in every process).
pub(crate) const MAX_OWN_ACCOUNTS: usize = 20;

/// A tenant's own accounts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OwnAccounts {
    /// The tenant.
    tenant: String,
    /// Its accounts (PROTOCOL.md §6 objects, keys masked).
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
}

/// The tenant of the path, if the caller may manage its accounts.
fn owner(caller: &Caller, tenant: &str) -> Result<String, ApiError> {
    let tenant = tenant_path(tenant)?;
    if !caller.sees(tenant.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a tenant key manages only its own tenant's accounts",
        ));
    }
    Ok(tenant.to_string())
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("provider account {id} not found"))
}

/// The draft of a tenant's write: `owner` set to the tenant (another owner refused),
/// the name put under the tenant's prefix (`acme.openai`), and only HTTP provider
/// types (mock and plugin adapters are the operator's).
fn own_draft(tenant: &str, body: &Bytes, creating: bool) -> Result<ProviderConfigDraft, ApiError> {
    let mut draft: ProviderConfigDraft =
        serde_json::from_slice(body).map_err(ApiError::NotAConfig)?;
    match draft.owner.as_deref() {
        Some(other) if other != tenant => {
            return Err(ApiError::bad_request(format!(
                "owner: must be '{tenant}' (or left out)"
            )));
        }
        _ => draft.owner = Some(tenant.to_owned()),
    }
    if let Some(name) = &draft.name {
        let prefix = format!("{tenant}.");
        if !name.starts_with(&prefix) {
            draft.name = Some(format!("{prefix}{name}"));
        }
    }
    let provider = draft.provider.as_deref().map(str::parse::<ProviderType>);
    if let Some(Ok(ProviderType::Mock | ProviderType::Wasm)) = provider {
        return Err(ApiError::bad_request(
            "provider: a tenant's own account is of an HTTP provider type, not mock or wasm",
        ));
    }
    if !creating && draft.provider.is_some() {
        return Err(ApiError::bad_request(
            "provider: the type of an account cannot change; create another",
        ));
    }
    Ok(draft)
}

/// How many own accounts `tenant` has.
async fn own_count(
    gateway: &switchyard_runtime::facade::Gateway,
    tenant: &str,
) -> Result<usize, ApiError> {
    Ok(gateway
        .providers(&ProviderFilter {
            owner: Some(tenant.to_owned()),
            ..ProviderFilter::default()
        })
        .await?
        .len())
}

fn too_many(tenant: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("tenant '{tenant}' has {MAX_OWN_ACCOUNTS} accounts, the most it may keep"),
    )
}

/// Tests `spec` with the provider before it is stored: the account must answer the
/// adapter's health check. A disabled account is stored untested.
async fn test_before_saving(
    gateway: &switchyard_runtime::facade::Gateway,
    spec: &ProviderSpec,
) -> Result<(), ApiError> {
    if !spec.enabled {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let config = ProviderConfig {
        id: ConfigId(0),
        spec: spec.clone(),
        version: 0,
        created_at: now,
        updated_at: now,
    };
    // A tenant's save waits for its test call at most this long, whatever the
    // account's own per-call timeout (up to an hour) says.
    let mut config = config;
    config.spec.timeout_ms = config.spec.timeout_ms.min(TEST_CALL_MS);
    let why = match gateway.check_provider(config).await {
        ProviderCheck::Healthy => return Ok(()),
        ProviderCheck::NoAdapter(why) => why,
        ProviderCheck::Failed { code, message } => format!("{code}: {message}"),
        ProviderCheck::TimedOut => "the provider did not answer in time".to_owned(),
    };
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("the account failed the provider's test call, so it was not saved ({why})"),
    ))
}

/// The tenant's own record `id`, or 404 (also for another tenant's, or a shared one).
async fn own_record(
    gateway: &switchyard_runtime::facade::Gateway,
    tenant: &str,
    id: i64,
) -> Result<ProviderRecord, ApiError> {
    gateway
        .provider(ConfigId(id))
        .await?
        .filter(|r| r.draft.owner.as_deref() == Some(tenant))
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/providers", tag = "tenants", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "the tenant's own provider accounts, keys masked", body = OwnAccounts), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn list_own(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<OwnAccounts>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let records = gateway
        .providers(&ProviderFilter {
            owner: Some(tenant.clone()),
            ..ProviderFilter::default()
        })
        .await?;
    Ok(Json(OwnAccounts {
        tenant,
        items: records.iter().map(ProviderRecord::to_json).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/providers", tag = "tenants", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = ref("#/components/schemas/ProviderConfigDraft"), content_type = "application/json", description = "a provider config object (PROTOCOL.md §6) of an HTTP provider type; `owner` is the tenant, the name is put under `<tenant>.`"), responses((status = 201, description = "tested with the provider and stored, key masked", body = ref("#/components/schemas/ProviderConfig")), (status = 400, description = "{error, fields: [{path, message}]}", body = ErrorBody), (status = 409, description = "the name is taken, or the tenant has its most accounts", body = ErrorBody), (status = 422, description = "the provider's test call failed: not stored", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn create_own(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ProviderConfig>), ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let spec = own_draft(&tenant, &body, true)?.validate()?;
    if own_count(&gateway, &tenant).await? >= MAX_OWN_ACCOUNTS {
        return Err(too_many(&tenant));
    }
    test_before_saving(&gateway, &spec).await?;
    let config = gateway.create_provider(&spec).await?;
    // Concurrent creates may all have counted below the cap: the one that went over
    // takes its account back.
    if own_count(&gateway, &tenant).await? > MAX_OWN_ACCOUNTS {
        gateway.delete_provider(config.id).await?;
        return Err(too_many(&tenant));
    }
    Ok((StatusCode::CREATED, Json(config)))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/providers/{id}", tag = "tenants", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "config id")), responses((status = 200, description = "the account, key masked", body = ref("#/components/schemas/ProviderConfig")), (status = 404, description = "not one of the tenant's accounts", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn get_own(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    Ok(Json(own_record(&gateway, &tenant, id).await?.to_json()))
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}/providers/{id}", tag = "tenants", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "config id")), request_body(content = ref("#/components/schemas/ProviderConfigDraft"), content_type = "application/json", description = "any subset of the fields but `provider`; a masked secret means unchanged"), responses((status = 200, description = "tested with the provider and stored", body = ref("#/components/schemas/ProviderConfig")), (status = 400, description = "{error, fields: [{path, message}]}", body = ErrorBody), (status = 404, description = "not one of the tenant's accounts", body = ErrorBody), (status = 422, description = "the provider's test call failed: not stored", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn patch_own(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
    body: Bytes,
) -> Result<Json<ProviderConfig>, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    let mut patch = own_draft(&tenant, &body, false)?;
    let record = own_record(&gateway, &tenant, id).await?;
    // A masked key sent back means "unchanged" (as the store reads it).
    if patch.api_key.as_ref().is_some_and(|k| {
        k.looks_masked()
            && record.draft.api_key.as_ref().map(|c| c.masked()).as_deref() == Some(k.expose())
    }) {
        patch.api_key = None;
    }
    let spec = record.draft.clone().overlay(patch.clone()).validate()?;
    test_before_saving(&gateway, &spec).await?;
    Ok(Json(gateway.patch_provider(ConfigId(id), patch).await?))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/providers/{id}", tag = "tenants", security(("admin" = []), ("tenant" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "config id")), responses((status = 204, description = "deleted; its actor drains and stops"), (status = 404, description = "not one of the tenant's accounts", body = ErrorBody), (status = 403, description = "a key of another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn delete_own(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    let tenant = owner(&caller, &tenant)?;
    own_record(&gateway, &tenant, id).await?;
    if !gateway.delete_provider(ConfigId(id)).await? {
        return Err(not_found(id));
    }
    Ok(StatusCode::NO_CONTENT)
}
