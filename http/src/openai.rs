//! OpenAI-compatible endpoints (PROTOCOL.md §4), for clients written against the
//! OpenAI API: `POST /v1/images/generations`, `POST /v1/images/edits` (multipart; the
//! uploaded files are stored as artifacts and the command names them),
//! `POST /v1/chat/completions` (with
//! `stream: true` as server-sent events) and `GET /v1/models`, authenticated by a
//! tenant key (`Authorization: Bearer sy_…`, made with the admin API).
//!
//! Each call becomes a command of the key's tenant with a fresh `request_id`. It runs
//! on this process's engine as a synchronous call (no bus round trip, no row before
//! the first provider byte): the same admission, routing, fallback and quotas as a
//! bus command, and its task row, usage and events are written behind the answer
//! (`switchyard_runtime::pipeline`, `call`). The handler answers at the terminal event,
//! or — for a streamed chat — relays the chunks as they come. The request's `model`
//! picks the instance: an instance name (`config_id`), else a provider type
//! (`provider`), else a model (`route.model`); `auto` or none routes as usual.

pub(crate) mod chat;
pub(crate) mod edit_form;
pub(crate) mod error;
pub(crate) mod images;

use std::time::Duration;

use axum::{Json, extract::State};
use futures_util::StreamExt;
use serde::Serialize;
use switchyard_core::{
    Command, CommandInput, ConfigRef, Event, Kind, ProviderSelector, ProviderType, RequestId,
    Route, Tenant,
};
use switchyard_runtime::facade::{Events, random_alphanumeric};
use utoipa::ToSchema;

use crate::{caller::Caller, state::OpenAiState};
use error::{OaiError, OpenAiErrorBody};

/// How long a call waits for its request to end.
pub(super) const WAIT: Duration = Duration::from_secs(300);

/// The tenant of the key that called (the group takes tenant keys only).
pub(super) fn key_tenant(caller: &Caller) -> Result<Tenant, OaiError> {
    caller.tenant().cloned().ok_or_else(OaiError::unauthorized)
}

/// A fresh request id: `oai-` and 22 characters of `[0-9A-Za-z]`.
pub(super) fn new_request_id() -> String {
    format!("oai-{}", random_alphanumeric(22))
}

/// The `route` for an OpenAI `model` (see the module docs).
/// A `model` that names no instance, provider type or configured model is the
/// caller's mistake, answered as OpenAI answers it (404 `model_not_found`), not as an
/// outage.
/// Another tenant's own provider accounts are not there for this one.
fn route_for(state: &OpenAiState, tenant: &Tenant, model: Option<&str>) -> Result<Route, OaiError> {
    let mut route = Route::default();
    let Some(model) = model.filter(|m| !m.is_empty() && *m != "auto") else {
        return Ok(route);
    };
    let table = state.gateway.routing_table();
    let visible: Vec<_> = table
        .instances
        .iter()
        .filter(|i| visible_to(i, tenant))
        .collect();
    if visible.iter().any(|i| i.config.spec.name == model) {
        route.config_id = Some(ConfigRef::Name(model.to_owned()));
    } else if let Ok(provider) = model.parse::<ProviderType>() {
        route.provider = ProviderSelector::Type(provider);
    } else if visible
        .iter()
        .any(|i| i.config.spec.model.as_deref() == Some(model))
    {
        route.model = Some(model.to_owned());
    } else {
        return Err(OaiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("the model '{model}' does not exist or you do not have access to it"),
        ));
    }
    Ok(route)
}

/// Validates the command and runs it on this process's engine: its events as they
/// happen, ending with the terminal one.
pub(super) async fn submit(state: &OpenAiState, command: Command) -> Result<Events, OaiError> {
    command
        .validate(None)
        .map_err(|e| OaiError::bad_request(e.to_string()))?;
    Ok(state.gateway.call(command).await?)
}

/// Waits for the first event that `wanted` picks.
pub(super) async fn wait_for(
    events: &mut Events,
    wanted: fn(&Event) -> bool,
) -> Result<Event, OaiError> {
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
        Ok(None) => Err(OaiError::bus_unavailable(
            "the event stream ended before the request did",
        )),
        Err(_) => Err(OaiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            format!("no answer within {} s", WAIT.as_secs()),
        )),
    }
}

/// Waits for the terminal event.
pub(super) async fn terminal(events: &mut Events) -> Result<Event, OaiError> {
    wait_for(events, Event::is_terminal).await
}

/// Parses a JSON body into `T`, as a 400 in OpenAI's shape when it does not fit.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OaiError> {
    serde_json::from_slice(body)
        .map_err(|e| OaiError::bad_request(format!("the body does not fit: {e}")))
}

/// The command of a call: the key's tenant, and the route its `model` picks.
pub(super) fn command(
    state: &OpenAiState,
    request_id: &str,
    tenant: &Tenant,
    user: Option<String>,
    kind: Kind,
    input: CommandInput,
    model: Option<&str>,
) -> Result<Command, OaiError> {
    let request_id =
        RequestId::new(request_id).map_err(|e| OaiError::bad_request(e.to_string()))?;
    let mut command = Command::new(request_id, tenant.clone(), kind, input);
    command.user = user;
    command.route = route_for(state, tenant, model)?;
    Ok(command)
}

pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

// === models ===

/// The answer of `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Always `list`.
    object: &'static str,
    /// Every live instance by name, and every model they serve.
    data: Vec<Model>,
}

/// A model: an instance name or a model an instance serves.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Model {
    /// What `model` may name.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// When its instance's config was created (Unix seconds).
    created: i64,
    /// The instance's provider type.
    owned_by: &'static str,
}

#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("tenant" = [])), responses((status = 200, description = "every live instance by name (owned_by its provider type) and every model they serve", body = ModelList), (status = 401, description = "missing or unknown tenant key", body = OpenAiErrorBody)))]
pub(super) async fn models(
    State(state): State<OpenAiState>,
    caller: Caller,
) -> Result<Json<ModelList>, OaiError> {
    let tenant = key_tenant(&caller)?;
    let table = state.gateway.routing_table();
    let mut data = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for instance in table.instances.iter().filter(|i| visible_to(i, &tenant)) {
        let spec = &instance.config.spec;
        let model = |id: &str| Model {
            id: id.to_owned(),
            object: "model",
            created: instance.config.created_at.timestamp(),
            owned_by: spec.provider.as_str(),
        };
        if seen.insert(spec.name.clone()) {
            data.push(model(&spec.name));
        }
        if let Some(served) = &spec.model
            && seen.insert(served.clone())
        {
            data.push(model(served));
        }
    }
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}

/// Whether `instance` is shared or `tenant`'s own account (another tenant's own
/// accounts are neither listed nor named for it).
fn visible_to(instance: &switchyard_runtime::facade::Instance, tenant: &Tenant) -> bool {
    switchyard_core::routing::ownership(instance.config.spec.owner.as_deref(), tenant.as_str())
        != switchyard_core::routing::Ownership::Foreign
}
