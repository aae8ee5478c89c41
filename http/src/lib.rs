//! The HTTP face of `serve` (axum): health, readiness, artifacts, and the admin API for
//! provider configs, plugins, usage, quotas, jobs and tenant keys, and the
//! OpenAI-compatible endpoints (PROTOCOL.md §4). Admin endpoints need `Authorization: Bearer
//! <admin token>`; API keys are write-only and shown masked; validation errors are 400
//! with a JSON body naming each bad field.

mod jobs;
mod keys;
mod openai;
mod plugins;
mod providers;
mod quotas;
mod usage;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde_json::{Value, json};

use providers::{
    create_provider, delete_provider, get_provider, list_providers, patch_provider, reload, status,
    store_error, test_provider,
};
use switchyard_runtime::{
    artifacts::{ArtifactError, ArtifactStore},
    bus::Bus,
    engine::Engine,
    pipeline::{Pipeline, Readiness},
    reloader::ReloadHandle,
    settings::Secret,
    store::Store,
};
use usage::{tenant_query, usage};

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
            .route(
                "/v1/images/generations",
                post(openai::images::image_generations),
            )
            .route(
                "/v1/images/edits",
                post(openai::images::image_edits)
                    .layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
            )
            .route("/v1/chat/completions", post(openai::chat::chat_completions))
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
                get(keys::list_keys).post(keys::create_key),
            )
            .route("/v1/tenants/{tenant}/keys/{id}", delete(keys::revoke_key))
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
    paths(healthz, readyz, metrics_text, artifact, providers::list_providers, providers::create_provider, providers::get_provider, providers::patch_provider, providers::delete_provider, providers::reload, providers::status, providers::test_provider, usage::usage, jobs::submit_job, jobs::get_job, jobs::job_events, quotas::list_quotas, quotas::put_quota, quotas::delete_quota, keys::create_key, keys::list_keys, keys::revoke_key, openai::images::image_generations, openai::images::image_edits, openai::chat::chat_completions, openai::models, plugins::install_plugin, plugins::list_plugins, plugins::get_plugin, plugins::delete_plugin, plugins::rollback_plugin),
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
