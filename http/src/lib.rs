//! The HTTP face of `serve` (axum): health, readiness, artifacts, and the admin API for
//! provider configs, plugins, usage, quotas, jobs and tenant keys, and the
//! OpenAI-compatible endpoints (PROTOCOL.md §4). Admin endpoints need `Authorization: Bearer
//! <admin token>`; API keys are write-only and shown masked; validation errors are 400
//! with a JSON body naming each bad field.
//!
//! Where things are:
//! - [`router`] (here): the route groups and which callers each takes.
//! - [`serve()`]: the accept loop, with the connection limits and timeouts of
//!   [`ConnectionPolicy`] and a graceful drain at shutdown.
//! - `state`: what the handlers share; `caller`: who calls (the admin token or a tenant
//!   key), resolved once per request by the group's middleware.
//! - `error`: `ApiError`, the admin and jobs API's error (`{"error": …}`);
//!   `openai/error`: `OaiError`, the OpenAI-compatible one (`{"error": {"message", …}}`).
//!   Handlers return `Result<_, …Error>` and use `?`.
//! - One file per resource, with its handlers and the types of its bodies:
//!   `operations` (health, readiness, metrics, artifacts), `providers`, `plugins`,
//!   `usage`, `quotas`, `keys`, `jobs`, `openai` (models) with `openai/images` and
//!   `openai/chat`.
//! - `openapi`: the OpenAPI document, from the handlers' `#[utoipa::path]` attributes
//!   and the bodies' `ToSchema` derives.

mod artifacts;
mod batches;
mod caller;
mod error;
mod feedback;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod jobs;
mod key_cache;
mod keys;
mod limits;
mod openai;
mod openapi;
mod operations;
mod plans;
mod plugins;
mod providers;
mod quotas;
mod retention;
mod serve;
mod state;
mod stats;
mod templates;
mod tenant_providers;
mod usage;
mod usage_report;
mod webhooks;

use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{delete, get, post},
};

use caller::{Gate, Scope, require};
pub use openapi::{ApiDoc, openapi};
pub use serve::{ConnectionPolicy, serve};
pub use state::{AdminState, HttpState};

/// The router: every endpoint, with the security headers on every response.
pub fn router(state: HttpState) -> Router {
    let https = headers::Https(state.https);
    routes(state).layer(middleware::from_fn_with_state(
        https,
        headers::security_headers,
    ))
}

fn routes(state: HttpState) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(operations::healthz))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics_text))
        .with_state(state.clone());
    let Some(admin) = state.admin else {
        return app;
    };
    let (authenticator, admin, compatible) = admin.split(state.gateway);
    // Artifacts: a signed link, the admin token, or a key of an owning tenant.
    let files = Router::new()
        .route("/v1/artifacts/{id}", get(artifacts::artifact))
        .with_state(artifacts::ArtifactApi {
            gateway: admin.gateway.clone(),
            authenticator: authenticator.clone(),
        });
    app = app.merge(files);
    let gate = |scope| {
        middleware::from_fn_with_state(
            Gate {
                authenticator: authenticator.clone(),
                scope,
            },
            require,
        )
    };
    // A tenant key only.
    let oai = Router::new()
        .route(
            "/v1/images/generations",
            post(openai::images::image_generations),
        )
        .route(
            "/v1/images/edits",
            post(openai::images::image_edits).layer(DefaultBodyLimit::max(64 << 20)),
        )
        .route("/v1/chat/completions", post(openai::chat::chat_completions))
        .route("/v1/models", get(openai::models))
        .layer(gate(Scope::Tenant))
        .with_state(compatible);
    app = app.merge(oai);
    // Jobs and a tenant's own provider accounts: the admin token (any tenant) or a
    // tenant key (its own tenant only).
    let jobs = Router::new()
        .route("/v1/jobs", post(jobs::submit_job))
        .route(
            "/v1/batches",
            post(batches::submit_batch).layer(DefaultBodyLimit::max(16 << 20)),
        )
        .route(
            "/v1/batches/{id}",
            get(batches::get_batch).delete(batches::cancel_batch),
        )
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/events", get(jobs::job_events))
        .route("/v1/jobs/{id}/feedback", post(feedback::post_feedback))
        // A tenant's own provider accounts: the admin token or that tenant's key.
        .route(
            "/v1/tenants/{tenant}/providers",
            get(tenant_providers::list_own).post(tenant_providers::create_own),
        )
        .route(
            "/v1/tenants/{tenant}/providers/{id}",
            get(tenant_providers::get_own)
                .patch(tenant_providers::patch_own)
                .delete(tenant_providers::delete_own),
        )
        // A tenant's webhooks and their delivery log: the admin token or its key.
        .route(
            "/v1/tenants/{tenant}/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/v1/tenants/{tenant}/webhooks/{id}",
            get(webhooks::get_webhook)
                .patch(webhooks::patch_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route(
            "/v1/tenants/{tenant}/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .layer(gate(Scope::AdminOrTenant))
        .with_state(admin.clone());
    app = app.merge(jobs);
    // The admin token only.
    let api = Router::new()
        .route(
            "/v1/providers",
            get(providers::list_providers).post(providers::create_provider),
        )
        .route("/v1/providers/reload", post(providers::reload))
        .route("/v1/providers/status", get(providers::status))
        .route("/v1/providers/stats", get(stats::all_stats))
        .route("/v1/providers/{id}/stats", get(stats::one_stats))
        .route(
            "/v1/providers/{id}",
            get(providers::get_provider)
                .patch(providers::patch_provider)
                .delete(providers::delete_provider),
        )
        .route("/v1/providers/{id}/test", post(providers::test_provider))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/usage/report", get(usage_report::usage_report))
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
        .route(
            "/v1/tenants/{tenant}/limits",
            get(limits::get_limits)
                .put(limits::put_limits)
                .delete(limits::delete_limits),
        )
        .route(
            "/v1/tenants/{tenant}/retention",
            get(retention::get_retention)
                .put(retention::put_retention)
                .delete(retention::delete_retention),
        )
        .route("/v1/templates", get(templates::list_templates))
        .route(
            "/v1/templates/{name}",
            get(templates::get_template)
                .put(templates::put_template)
                .delete(templates::delete_template),
        )
        .route("/v1/plans", get(plans::list_plans))
        .route(
            "/v1/plans/{name}",
            axum::routing::put(plans::put_plan).delete(plans::delete_plan),
        )
        .route(
            "/v1/tenants/{tenant}/plan",
            get(plans::get_tenant_plan)
                .put(plans::put_tenant_plan)
                .delete(plans::delete_tenant_plan),
        )
        .route("/v1/plugins", get(plugins::list_plugins))
        .route(
            "/v1/plugins/{name}",
            get(plugins::get_plugin)
                .put(plugins::install_plugin)
                .delete(plugins::delete_plugin)
                .layer(DefaultBodyLimit::max(64 << 20)),
        )
        .route(
            "/v1/plugins/{name}/rollback",
            post(plugins::rollback_plugin),
        )
        .layer(gate(Scope::Admin))
        .with_state(admin);
    app.merge(api)
}
