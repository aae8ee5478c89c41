//! OpenAI-compatible endpoints (PROTOCOL.md §4), for clients written against the
//! OpenAI API: `POST /v1/images/generations`, `POST /v1/images/edits` (multipart; the
//! uploaded files are stored as artifacts and the command names them),
//! `POST /v1/chat/completions` (with
//! `stream: true` as server-sent events) and `GET /v1/models`, authenticated by a
//! tenant key (`Authorization: Bearer sy_…`, made with the admin API).
//!
//! Each call becomes a command of the key's tenant with a fresh `request_id` and goes
//! through the bus like any other, so it gets the same routing, fallback, quotas,
//! usage, task row and events. The handler answers when the terminal event arrives:
//! on a private `reply_to` subject (one core subscription, no consumer on the event
//! stream), or — for a streamed chat — by following the request's events. The request's `model` picks the instance: an
//! instance name (`config_id`), else a provider type (`provider`), else a model
//! (`route.model`); `auto` or none routes as usual.

pub(crate) mod chat;
pub(crate) mod images;

use std::time::Duration;

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde_json::json;
use switchyard_core::{
    Command, CommandInput, ConfigRef, ErrorCode, ErrorInfo, Event, Kind, ProviderSelector,
    ProviderType, RequestId, Route, Tenant,
};

use super::AdminState;
use switchyard_runtime::{
    artifacts::ArtifactStore,
    bus::{EventFilter, Events},
    store::StoreError,
};

/// How long a call waits for its request to end.
pub(super) const WAIT: Duration = Duration::from_secs(300);

/// What the OpenAI-compatible handlers share.
#[derive(Debug, Clone)]
pub struct OpenAiState {
    /// Store, bus and engine.
    pub admin: AdminState,
    /// For `response_format: b64_json`.
    pub artifacts: ArtifactStore,
}

/// The tenant a request's key belongs to.
#[derive(Debug, Clone)]
pub(super) struct KeyTenant(pub(super) Tenant);

/// An error in OpenAI's shape: `{"error": {"message", "type", "code"}}`.
pub(super) fn oai_error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: impl Into<String>,
) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "code": code, "param": null}})),
    )
        .into_response()
}

fn store_failure(e: &StoreError) -> Response {
    tracing::error!(error = %e, "store error on the OpenAI-compatible API");
    oai_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "store_unavailable",
        "the database is unavailable",
    )
}

/// The status and OpenAI error type of a failed request.
pub(super) fn failure_response(error: &ErrorInfo) -> Response {
    let (status, kind) = match error.code {
        ErrorCode::InvalidRequest | ErrorCode::ContentFiltered => {
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        }
        ErrorCode::QuotaExceeded | ErrorCode::RateLimited => {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
        }
        ErrorCode::NoProvider | ErrorCode::ProviderUnavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "server_error")
        }
        ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, "server_error"),
        // The provider refused our key: not the caller's fault.
        ErrorCode::Unauthorized | ErrorCode::ProviderError | ErrorCode::PluginError => {
            (StatusCode::BAD_GATEWAY, "server_error")
        }
        ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    oai_error(status, kind, error.code.as_str(), error.message.clone())
}

/// Middleware: a live tenant key, or 401.
pub(super) async fn require_tenant_key(
    State(state): State<OpenAiState>,
    headers: HeaderMap,
    mut request: Request,
    next: Next,
) -> Response {
    let given = super::bearer(&headers);
    let unauthorized = || {
        let mut response = oai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or unknown API key (a tenant key, sy_…)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    };
    if given.is_empty() {
        return unauthorized();
    }
    match state.admin.store.tenant_of_key(given).await {
        Ok(Some(tenant)) => match Tenant::new(tenant) {
            Ok(tenant) => {
                request.extensions_mut().insert(KeyTenant(tenant));
                next.run(request).await
            }
            Err(_) => unauthorized(),
        },
        Ok(None) => unauthorized(),
        Err(e) => store_failure(&e),
    }
}

/// A fresh request id: `oai-` and 22 characters of `[0-9A-Za-z]`.
pub(super) fn new_request_id() -> String {
    format!(
        "oai-{}",
        switchyard_runtime::secrets::random_alphanumeric(22)
    )
}

/// The `route` for an OpenAI `model` (see the module docs).
fn route_for(state: &OpenAiState, model: Option<&str>) -> Route {
    let mut route = Route::default();
    let Some(model) = model.filter(|m| !m.is_empty() && *m != "auto") else {
        return route;
    };
    let table = state.admin.engine.table();
    if table.instances.iter().any(|i| i.config.spec.name == model) {
        route.config_id = Some(ConfigRef::Name(model.to_owned()));
    } else if let Ok(provider) = model.parse::<ProviderType>() {
        route.provider = ProviderSelector::Type(provider);
    } else {
        route.model = Some(model.to_owned());
    }
    route
}

/// How a call follows its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Follow {
    /// Every event (a stream of chunks): a subscription to the request's events.
    Events,
    /// Only the terminal event, sent to a private `reply_to` subject: one core
    /// subscription, no consumer on the event stream.
    Terminal,
}

/// Validates the command, subscribes to what `follow` asks for and publishes it.
pub(super) async fn submit(
    state: &OpenAiState,
    mut command: Command,
    follow: Follow,
) -> Result<Events, Response> {
    let inbox = format!("_INBOX.switchyard.{}", new_request_id());
    if follow == Follow::Terminal {
        command.reply_to = Some(inbox.clone());
    }
    command
        .validate(None)
        .map_err(|e| bad_request(e.to_string()))?;
    let bus = &state.admin.bus;
    let unavailable = |e: switchyard_runtime::bus::BusError| {
        tracing::warn!(error = %e, "OpenAI-compatible call not queued");
        oai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "bus_unavailable",
            format!("the request could not be queued: {e}"),
        )
    };
    // Subscribed before publishing, so nothing can be missed.
    let events: Events = match follow {
        Follow::Events => bus
            .events(EventFilter::Request(
                command.tenant.clone(),
                command.request_id.clone(),
            ))
            .await
            .map_err(unavailable)?,
        Follow::Terminal => Box::pin(
            bus.subscribe_core(&inbox)
                .await
                .map_err(unavailable)?
                .filter_map(
                    |payload| async move { serde_json::from_slice::<Event>(&payload).ok() },
                ),
        ),
    };
    bus.publish_command(&command).await.map_err(unavailable)?;
    Ok(events)
}

/// Waits for the first event that `wanted` picks.
pub(super) async fn wait_for(
    events: &mut Events,
    wanted: fn(&Event) -> bool,
) -> Result<Event, Response> {
    let wait = async {
        while let Some(event) = events.next().await {
            if wanted(&event) {
                return Some(event);
            }
        }
        None
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(oai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "bus_unavailable",
            "the event stream ended before the request did",
        )),
        Err(_) => Err(oai_error(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            format!("no answer within {} s", WAIT.as_secs()),
        )),
    }
}

/// Waits for the terminal event.
pub(super) async fn terminal(events: &mut Events) -> Result<Event, Response> {
    wait_for(events, Event::is_terminal).await
}

/// Parses a JSON body into `T`, as a 400 in OpenAI's shape when it does not fit.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body does not fit: {e}")))
}

/// The command of a call: the key's tenant, and the route its `model` picks.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
pub(super) fn command(
    state: &OpenAiState,
    request_id: &str,
    tenant: &Tenant,
    user: Option<String>,
    kind: Kind,
    input: CommandInput,
    model: Option<&str>,
) -> Result<Command, Response> {
    let request_id = RequestId::new(request_id).map_err(|e| bad_request(e.to_string()))?;
    let mut command = Command::new(request_id, tenant.clone(), kind, input);
    command.user = user;
    command.route = route_for(state, model);
    Ok(command)
}

pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) fn bad_request(message: impl Into<String>) -> Response {
    oai_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_request",
        message,
    )
}

// === models ===

#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("tenant" = [])), responses((status = 200, description = "{object: \"list\", data: [{id, object: \"model\", created, owned_by}]}: every live instance by name (owned_by its provider type) and every model they serve"), (status = 401, description = "missing or unknown tenant key")))]
pub(super) async fn models(State(state): State<OpenAiState>) -> Response {
    let table = state.admin.engine.table();
    let mut data = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for instance in &table.instances {
        let spec = &instance.config.spec;
        let created = instance.config.created_at.timestamp();
        if seen.insert(spec.name.clone()) {
            data.push(
                json!({"id": spec.name, "object": "model", "created": created,
                             "owned_by": spec.provider.as_str()}),
            );
        }
        if let Some(model) = &spec.model
            && seen.insert(model.clone())
        {
            data.push(json!({"id": model, "object": "model", "created": created,
                             "owned_by": spec.provider.as_str()}));
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_onto_openai_statuses() {
        for (code, status) in [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::QuotaExceeded, 429),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::NoProvider, 503),
            (ErrorCode::Timeout, 504),
            (ErrorCode::ProviderError, 502),
            (ErrorCode::Unauthorized, 502),
        ] {
            let response = failure_response(&ErrorInfo::new(code, "x"));
            assert_eq!(response.status().as_u16(), status, "{code:?}");
        }
    }
}
