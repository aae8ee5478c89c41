//! The HTTP face of `serve` (axum): health, readiness, artifacts, and the admin API for
//! provider configs, plugins, usage, quotas, jobs and tenant keys, and the
//! OpenAI-compatible endpoints (PROTOCOL.md §4). Admin endpoints need `Authorization: Bearer
//! <admin token>`; API keys are write-only and shown masked; validation errors are 400
//! with a JSON body naming each bad field.

mod jobs;
mod openai;
mod plugins;
mod quotas;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::{ConfigId, Kind, ProviderConfigDraft, ProviderType};

use switchyard_runtime::{
    artifacts::{ArtifactError, ArtifactStore},
    bus::Bus,
    engine::Engine,
    pipeline::{Pipeline, Readiness},
    reloader::{ReloadHandle, announce},
    settings::Secret,
    store::{ConfigChange, ProviderFilter, ProviderRecord, Store, StoreError},
};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Where images live.
    pub artifacts: ArtifactStore,
    /// Whether the command consumer is live.
    pub readiness: Readiness,
    /// The admin API, when served.
    pub admin: Option<AdminState>,
    /// Renders `/metrics` (Prometheus text), when a recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// What the admin API needs.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The repository.
    pub store: Store,
    /// The engine (live status).
    pub engine: Engine,
    /// Reloads this process.
    pub reload: ReloadHandle,
    /// Announces changes to other processes.
    pub bus: Bus,
    /// The bearer token.
    pub token: Secret,
    /// Replica membership (NATS deployments).
    pub membership: Option<switchyard_runtime::replicas::Membership>,
    /// The pipeline's quota checker (told when quotas change here).
    pub quotas: switchyard_runtime::quota::Quotas,
    /// The request pipeline (jobs enter it here).
    pub pipeline: Pipeline,
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight.
///
/// # Errors
/// The listener's.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The router.
pub fn router(state: HttpState) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/artifacts/{id}", get(artifact))
        .with_state(state.clone());
    if let Some(admin) = state.admin {
        let compatible = openai::OpenAiState {
            admin: admin.clone(),
            artifacts: state.artifacts.clone(),
        };
        let oai = Router::new()
            .route("/v1/images/generations", post(openai::image_generations))
            .route(
                "/v1/images/edits",
                post(openai::image_edits).layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
            )
            .route("/v1/chat/completions", post(openai::chat_completions))
            .route("/v1/models", get(openai::models))
            .layer(middleware::from_fn_with_state(
                compatible.clone(),
                openai::require_tenant_key,
            ))
            .with_state(compatible);
        app = app.merge(oai);
        // Jobs: the admin token (any tenant) or a tenant key (its own tenant only).
        let jobs = Router::new()
            .route("/v1/jobs", post(jobs::submit_job))
            .route("/v1/jobs/{id}", get(jobs::get_job))
            .route("/v1/jobs/{id}/events", get(jobs::job_events))
            .layer(middleware::from_fn_with_state(
                admin.clone(),
                require_admin_or_tenant,
            ))
            .with_state(admin.clone());
        app = app.merge(jobs);
        let api = Router::new()
            .route("/v1/providers", get(list_providers).post(create_provider))
            .route("/v1/providers/reload", post(reload))
            .route("/v1/providers/status", get(status))
            .route(
                "/v1/providers/{id}",
                get(get_provider)
                    .patch(patch_provider)
                    .delete(delete_provider),
            )
            .route("/v1/providers/{id}/test", post(test_provider))
            .route("/v1/usage", get(usage))
            .route(
                "/v1/quotas",
                get(quotas::list_quotas)
                    .put(quotas::put_quota)
                    .delete(quotas::delete_quota),
            )
            .route(
                "/v1/tenants/{tenant}/keys",
                get(openai::list_keys).post(openai::create_key),
            )
            .route("/v1/tenants/{tenant}/keys/{id}", delete(openai::revoke_key))
            .route("/v1/plugins", get(plugins::list_plugins))
            .route(
                "/v1/plugins/{name}",
                get(plugins::get_plugin)
                    .put(plugins::install_plugin)
                    .delete(plugins::delete_plugin)
                    .layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
            )
            .route(
                "/v1/plugins/{name}/rollback",
                post(plugins::rollback_plugin),
            )
            .layer(middleware::from_fn_with_state(
                admin.token.clone(),
                require_admin,
            ))
            .with_state(admin);
        app = app.merge(api);
    }
    app
}

/// The OpenAPI document of every endpoint above (served at `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchyard", description = "Event-driven gateway to AI image and text providers. Admin endpoints need `Authorization: Bearer <admin token>`."),
    paths(healthz, readyz, metrics_text, artifact, list_providers, create_provider, get_provider, patch_provider, delete_provider, reload, status, test_provider, usage, jobs::submit_job, jobs::get_job, jobs::job_events, quotas::list_quotas, quotas::put_quota, quotas::delete_quota, openai::create_key, openai::list_keys, openai::revoke_key, openai::image_generations, openai::image_edits, openai::chat_completions, openai::models, plugins::install_plugin, plugins::list_plugins, plugins::get_plugin, plugins::delete_plugin, plugins::rollback_plugin),
    modifiers(&AdminAuth),
)]
pub struct ApiDoc;

struct AdminAuth;

impl utoipa::Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "tenant",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as JSON.
pub fn openapi() -> Value {
    serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(Value::Null)
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up")))]
async fn healthz() -> &'static str {
    "ok"
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The token of an `Authorization: Bearer …` header, or "".
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Who called an endpoint open to both the admin and tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The admin token: any tenant.
    Admin,
    /// A tenant key: this tenant only.
    Tenant(String),
}

impl Caller {
    /// Whether this caller may see `tenant`'s data.
    pub(crate) fn sees(&self, tenant: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(own) => own == tenant,
        }
    }
}

/// Middleware: the admin token or a live tenant key, or 401; tells the handler which.
async fn require_admin_or_tenant(
    State(admin): State<AdminState>,
    headers: HeaderMap,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let given = bearer(&headers);
    let caller = if constant_time_eq(given.as_bytes(), admin.token.expose().as_bytes()) {
        Some(Caller::Admin)
    } else if given.is_empty() {
        None
    } else {
        match admin.store.tenant_of_key(given).await {
            Ok(tenant) => tenant.map(Caller::Tenant),
            Err(e) => return store_error(e),
        }
    };
    let Some(caller) = caller else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token or tenant key",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn require_admin(
    State(token): State<Secret>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let given = bearer(&headers);
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        next.run(request).await
    } else {
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text: switchyard_requests_total, switchyard_provider_calls_total, switchyard_provider_latency_seconds, switchyard_provider_in_flight, switchyard_provider_breaker_state, switchyard_provider_limiter_waits_total, switchyard_actor_restarts_total, …")))]
async fn metrics_text(State(state): State<HttpState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "metrics are not recorded in this process",
        ),
    }
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "actors run and the command consumer is live"), (status = 503, description = "still starting")))]
async fn readyz(State(state): State<HttpState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the command consumer is not live",
        )
            .into_response()
    }
}

#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "artifacts", params(("id" = String, Path, description = "artifact id (hex SHA-256)")), responses((status = 200, description = "the image bytes, with their content type"), (status = 404, description = "no such artifact")))]
async fn artifact(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match state.artifacts.get(&id).await {
        Ok((bytes, meta)) => (
            [
                (header::CONTENT_TYPE, meta.mime),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::ETAG, format!("\"{}\"", meta.sha256)),
            ],
            bytes,
        )
            .into_response(),
        Err(ArtifactError::NotFound(_) | ArtifactError::BadId(_)) => {
            error(StatusCode::NOT_FOUND, "no such artifact")
        }
        Err(e) => {
            tracing::error!(error = %e, "artifact read failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "artifact store error")
        }
    }
}

// === admin: usage ===

/// How far back `GET /v1/usage` looks without `from`.
const USAGE_DEFAULT_DAYS: i64 = 30;

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize)]
struct UsageQuery {
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The required `tenant` query parameter, checked.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn tenant_query(tenant: Option<&str>) -> Result<&str, Response> {
    let Some(tenant) = tenant else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the tenant query parameter is required",
        ));
    };
    switchyard_core::Tenant::new(tenant)
        .map(|_| tenant)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("tenant: {e}")))
}

#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn parse_time(
    name: &str,
    value: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Response> {
    value
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("{name} '{text}' is not an RFC 3339 time: {e}"),
                    )
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant (required)"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive (default: 30 days before `to`)"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive (default: now)")), responses((status = 200, description = "{tenant, from, to, groups: [{provider, model, kind, requests, images, input_tokens, output_tokens, cost_usd}], total: {requests, images, input_tokens, output_tokens, cost_usd}}: finished requests that used a provider, grouped by provider type, model and kind"), (status = 400, description = "missing tenant, bad time, or from not before to"), (status = 401, description = "missing or wrong admin token")))]
async fn usage(State(admin): State<AdminState>, Query(query): Query<UsageQuery>) -> Response {
    let tenant = match tenant_query(query.tenant.as_deref()) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let (from, to) = match (
        parse_time("from", query.from.as_deref()),
        parse_time("to", query.to.as_deref()),
    ) {
        (Ok(from), Ok(to)) => {
            let to = to.unwrap_or_else(chrono::Utc::now);
            (
                from.unwrap_or(to - chrono::Duration::days(USAGE_DEFAULT_DAYS)),
                to,
            )
        }
        (Err(response), _) | (_, Err(response)) => return response,
    };
    if from >= to {
        return error(StatusCode::BAD_REQUEST, "from must be before to");
    }
    let rows = match admin.store.usage_summary(tenant, from, to).await {
        Ok(rows) => rows,
        Err(e) => return store_error(e),
    };
    let groups: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "provider": r.provider, "model": r.model, "kind": r.kind,
                "requests": r.requests, "images": r.images,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                "cost_usd": r.cost_usd,
            })
        })
        .collect();
    let sum =
        |f: fn(&switchyard_runtime::store::UsageSummaryRow) -> i64| rows.iter().map(f).sum::<i64>();
    Json(json!({
        "tenant": tenant,
        "from": from,
        "to": to,
        "groups": groups,
        "total": {
            "requests": sum(|r| r.requests),
            "images": sum(|r| r.images),
            "input_tokens": sum(|r| r.input_tokens),
            "output_tokens": sum(|r| r.output_tokens),
            "cost_usd": rows.iter().map(|r| r.cost_usd).sum::<f64>(),
        },
    }))
    .into_response()
}

// === admin: provider configs ===

/// Query of `GET /v1/providers`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    provider: Option<String>,
    enabled: Option<bool>,
    kind: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

fn store_error(e: StoreError) -> Response {
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

async fn changed(admin: &AdminState, id: ConfigId, op: &str, version: i64) {
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
async fn list_providers(
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
async fn create_provider(State(admin): State<AdminState>, body: Bytes) -> Response {
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
async fn get_provider(State(admin): State<AdminState>, Path(id): Path<i64>) -> Response {
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
async fn patch_provider(
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
async fn delete_provider(State(admin): State<AdminState>, Path(id): Path<i64>) -> Response {
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
async fn reload(State(admin): State<AdminState>) -> Response {
    match admin.reload.reload_all().await {
        Ok(report) => Json(json!(report)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[utoipa::path(get, path = "/v1/providers/status", tag = "providers", security(("admin" = [])), responses((status = 200, description = "{replicas, instances: [{config_id, name, version, actor, breaker, in_flight, queued, latency_ewma_ms, restarts, requests, errors, limiter_waits, last_error, …}], invalid: [{config_id, errors}]}"), (status = 401, description = "missing or wrong admin token")))]
async fn status(State(admin): State<AdminState>) -> Response {
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
async fn test_provider(State(admin): State<AdminState>, Path(id): Path<i64>) -> Response {
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
