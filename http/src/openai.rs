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

use std::{convert::Infallible, time::Duration};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{
        IntoResponse, Response,
        sse::{self, Sse},
    },
};
use base64::Engine as _;
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{
    Command, ErrorCode, ErrorInfo, Event, EventBody, Kind, ProviderType, Tenant,
};

use super::AdminState;
use switchyard_runtime::{
    artifacts::ArtifactStore,
    bus::{EventFilter, Events},
    store::StoreError,
};

/// How long a call waits for its request to end.
const WAIT: Duration = Duration::from_secs(300);

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
pub(super) struct KeyTenant(Tenant);

/// An error in OpenAI's shape: `{"error": {"message", "type", "code"}}`.
fn oai_error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Response {
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
fn failure_response(error: &ErrorInfo) -> Response {
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
fn new_request_id() -> String {
    format!(
        "oai-{}",
        switchyard_runtime::secrets::random_alphanumeric(22)
    )
}

/// The `route` for an OpenAI `model` (see the module docs).
fn route_for(state: &OpenAiState, model: Option<&str>) -> Value {
    let Some(model) = model.filter(|m| !m.is_empty() && *m != "auto") else {
        return json!({});
    };
    let table = state.admin.engine.table();
    if table.instances.iter().any(|i| i.config.spec.name == model) {
        return json!({"config_id": model});
    }
    if model.parse::<ProviderType>().is_ok() {
        return json!({"provider": model});
    }
    json!({"model": model})
}

/// How a call follows its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Every event (a stream of chunks): a subscription to the request's events.
    Events,
    /// Only the terminal event, sent to a private `reply_to` subject: one core
    /// subscription, no consumer on the event stream.
    Terminal,
}

/// Validates the command, subscribes to what `follow` asks for and publishes it.
async fn submit(state: &OpenAiState, mut body: Value, follow: Follow) -> Result<Events, Response> {
    let inbox = format!("_INBOX.switchyard.{}", new_request_id());
    if follow == Follow::Terminal {
        body["reply_to"] = json!(inbox);
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| bad_request(e.to_string()))?;
    let command =
        Command::parse_and_validate(&bytes, None).map_err(|e| bad_request(e.to_string()))?;
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
async fn wait_for(events: &mut Events, wanted: fn(&Event) -> bool) -> Result<Event, Response> {
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
async fn terminal(events: &mut Events) -> Result<Event, Response> {
    wait_for(events, Event::is_terminal).await
}

/// Parses a JSON body into `T`, as a 400 in OpenAI's shape when it does not fit.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body does not fit: {e}")))
}

/// The command of a call: a fresh request id, the key's tenant, and the route its
/// `model` picks.
fn command_body(
    state: &OpenAiState,
    request_id: &str,
    tenant: &Tenant,
    user: Option<String>,
    kind: Kind,
    input: Map<String, Value>,
    model: Option<&str>,
) -> Value {
    json!({
        "request_id": request_id,
        "tenant": tenant.as_str(),
        "user": user,
        "kind": kind.as_str(),
        "input": input,
        "route": route_for(state, model),
    })
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

// === images ===

#[derive(Debug, Deserialize)]
struct ImageGeneration {
    prompt: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    style: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    output_format: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", security(("tenant" = [])), request_body(content = String, description = "OpenAI's image generation body: prompt, model, n, size, quality, style, response_format (url | b64_json), output_format, user", content_type = "application/json"), responses((status = 200, description = "{created, data: [{url | b64_json, revised_prompt}]}"), (status = 400, description = "invalid request or content filtered"), (status = 401, description = "missing or unknown tenant key"), (status = 429, description = "quota exceeded or rate limited"), (status = 502, description = "the provider failed"), (status = 503, description = "no provider, or the bus is down")))]
pub(super) async fn image_generations(
    State(state): State<OpenAiState>,
    Extension(KeyTenant(tenant)): Extension<KeyTenant>,
    body: Bytes,
) -> Response {
    let ask: ImageGeneration = match parse_body(&body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let b64 = match wants_b64(ask.response_format.as_deref()) {
        Ok(b64) => b64,
        Err(response) => return response,
    };
    let mut input = Map::new();
    input.insert("prompt".into(), json!(ask.prompt));
    for (name, value) in [
        ("size", ask.size),
        ("quality", ask.quality),
        ("style", ask.style),
        ("output_format", ask.output_format),
    ] {
        if let Some(value) = value {
            input.insert(name.into(), json!(value));
        }
    }
    if let Some(n) = ask.n {
        input.insert("n".into(), json!(n));
    }
    let body = command_body(
        &state,
        &new_request_id(),
        &tenant,
        ask.user,
        Kind::ImageGenerate,
        input,
        ask.model.as_deref(),
    );
    images_answer(&state, body, b64).await
}

/// Runs an image command and answers `{created, data: [{url | b64_json,
/// revised_prompt}]}`, or the failure.
async fn images_answer(state: &OpenAiState, body: Value, b64: bool) -> Response {
    let mut events = match submit(state, body, Follow::Terminal).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let event = match terminal(&mut events).await {
        Ok(event) => event,
        Err(response) => return response,
    };
    match event.body {
        EventBody::Completed { output, .. } => {
            let mut data = Vec::with_capacity(output.images.len());
            for image in &output.images {
                let mut item = json!({"revised_prompt": image.revised_prompt});
                if b64 {
                    match state.artifacts.get(&image.artifact_id).await {
                        Ok((bytes, _)) => {
                            item["b64_json"] =
                                json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "artifact read failed");
                            return oai_error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "server_error",
                                "internal",
                                "a stored image could not be read",
                            );
                        }
                    }
                } else {
                    item["url"] = json!(image.url);
                }
                data.push(item);
            }
            Json(json!({"created": unix_now(), "data": data})).into_response()
        }
        EventBody::Failed { error, .. } => failure_response(&error),
        _ => oai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal",
            "no terminal event",
        ),
    }
}

/// `response_format`: whether images come back as base64.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn wants_b64(format: Option<&str>) -> Result<bool, Response> {
    match format {
        None | Some("url") => Ok(false),
        Some("b64_json") => Ok(true),
        Some(other) => Err(bad_request(format!(
            "response_format: '{other}' is neither 'url' nor 'b64_json'"
        ))),
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    oai_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_request",
        message,
    )
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "openai", security(("tenant" = [])), request_body(content = String, description = "multipart/form-data as OpenAI takes it: image (or image[], up to 10 files), mask (file), prompt, model, n, size, quality, response_format (url | b64_json), output_format, user", content_type = "multipart/form-data"), responses((status = 200, description = "{created, data: [{url | b64_json, revised_prompt}]}"), (status = 400, description = "invalid request (a file that is not an image, no image, no prompt …)"), (status = 401, description = "missing or unknown tenant key"), (status = 429, description = "quota exceeded or rate limited"), (status = 502, description = "the provider failed"), (status = 503, description = "no provider, or the bus is down")))]
pub(super) async fn image_edits(
    State(state): State<OpenAiState>,
    Extension(KeyTenant(tenant)): Extension<KeyTenant>,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut images = Vec::new();
    let mut mask = None;
    let mut fields: Map<String, Value> = Map::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return bad_request(format!("the form does not parse: {e}")),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return bad_request(format!("{name}: cannot be read: {e}")),
        };
        match name.as_str() {
            "image" | "image[]" | "mask" => {
                // Stored as artifacts, so the command names them and stays small.
                let meta = match state.artifacts.put(&bytes).await {
                    Ok(meta) => meta,
                    Err(switchyard_runtime::artifacts::ArtifactError::NotAnImage(why)) => {
                        return bad_request(format!("{name}: not an image ({why})"));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "artifact write failed");
                        return oai_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "server_error",
                            "internal",
                            "the image could not be stored",
                        );
                    }
                };
                let reference = json!({"artifact_id": meta.id});
                if name == "mask" {
                    mask = Some(reference);
                } else {
                    images.push(reference);
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                fields.insert(name, Value::String(text));
            }
        }
    }
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let b64 = match wants_b64(text("response_format").as_deref()) {
        Ok(b64) => b64,
        Err(response) => return response,
    };
    if images.is_empty() {
        return bad_request("image: at least one image file is required");
    }
    let mut input = Map::new();
    input.insert("prompt".into(), json!(text("prompt").unwrap_or_default()));
    input.insert("images".into(), Value::Array(images));
    if let Some(mask) = mask {
        input.insert("mask".into(), mask);
    }
    for name in ["size", "quality", "output_format"] {
        if let Some(value) = text(name) {
            input.insert(name.into(), json!(value));
        }
    }
    if let Some(n) = text("n") {
        match n.parse::<i64>() {
            Ok(n) => {
                input.insert("n".into(), json!(n));
            }
            Err(_) => return bad_request(format!("n: '{n}' is not a number")),
        }
    }
    let body = command_body(
        &state,
        &new_request_id(),
        &tenant,
        text("user"),
        Kind::ImageEdit,
        input,
        text("model").as_deref(),
    );
    images_answer(&state, body, b64).await
}

// === chat ===

#[derive(Debug, Deserialize)]
struct ChatCompletion {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: Value,
}

/// A message's text: a string, or the text parts of a content array.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", security(("tenant" = [])), request_body(content = String, description = "OpenAI's chat completion body: messages, model, max_tokens (or max_completion_tokens), temperature, top_p, stop, stream, user", content_type = "application/json"), responses((status = 200, description = "a chat.completion object, or with stream: true text/event-stream of chat.completion.chunk objects ending with data: [DONE]"), (status = 400, description = "invalid request"), (status = 401, description = "missing or unknown tenant key"), (status = 429, description = "quota exceeded or rate limited"), (status = 502, description = "the provider failed"), (status = 503, description = "no provider, or the bus is down")))]
pub(super) async fn chat_completions(
    State(state): State<OpenAiState>,
    Extension(KeyTenant(tenant)): Extension<KeyTenant>,
    body: Bytes,
) -> Response {
    let ask: ChatCompletion = match parse_body(&body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let messages: Vec<Value> = ask
        .messages
        .iter()
        .map(|m| json!({"role": m.role, "content": text_of(&m.content)}))
        .collect();
    let mut input = Map::new();
    input.insert("messages".into(), Value::Array(messages));
    if let Some(max) = ask.max_completion_tokens.or(ask.max_tokens) {
        input.insert("max_tokens".into(), json!(max));
    }
    if let Some(t) = ask.temperature {
        input.insert("temperature".into(), json!(t));
    }
    if let Some(p) = ask.top_p {
        input.insert("top_p".into(), json!(p));
    }
    match ask.stop {
        Some(Value::String(stop)) => {
            input.insert("stop".into(), json!([stop]));
        }
        Some(stop @ Value::Array(_)) => {
            input.insert("stop".into(), stop);
        }
        _ => {}
    }
    if ask.stream {
        input.insert("stream".into(), json!(true));
    }
    let request_id = new_request_id();
    let body = command_body(
        &state,
        &request_id,
        &tenant,
        ask.user,
        Kind::TextGenerate,
        input,
        ask.model.as_deref(),
    );
    let follow = if ask.stream {
        Follow::Events
    } else {
        Follow::Terminal
    };
    let mut events = match submit(&state, body, follow).await {
        Ok(events) => events,
        Err(response) => return response,
    };
    let id = format!("chatcmpl-{request_id}");
    let model = ask.model.unwrap_or_else(|| "auto".to_owned());
    if ask.stream {
        // Until the first chunk a failure is still an HTTP error, as OpenAI answers it;
        // only then does the event stream start.
        let first = match wait_for(&mut events, |e| {
            e.is_terminal() || matches!(e.body, EventBody::Chunk { .. })
        })
        .await
        {
            Ok(first) => first,
            Err(response) => return response,
        };
        if let EventBody::Failed { error, .. } = &first.body {
            return failure_response(error);
        }
        let events: Events = Box::pin(stream::once(async move { first }).chain(events));
        return Sse::new(chat_chunks(events, id, model, unix_now())).into_response();
    }
    let event = match terminal(&mut events).await {
        Ok(event) => event,
        Err(response) => return response,
    };
    match event.body {
        EventBody::Completed {
            output,
            usage,
            provider,
            ..
        } => Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": unix_now(),
            "model": provider.model.unwrap_or(model),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": output.text.unwrap_or_default()},
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
        }))
        .into_response(),
        EventBody::Failed { error, .. } => failure_response(&error),
        _ => oai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal",
            "no terminal event",
        ),
    }
}

/// A request's events as `chat.completion.chunk` server-sent events: one per `chunk`
/// event, a last one with `finish_reason`, then `[DONE]`. A request that fails after
/// its first chunk sends an `error` object before `[DONE]` (the text stays incomplete).
fn chat_chunks(
    events: Events,
    id: String,
    model: String,
    created: i64,
) -> impl Stream<Item = Result<sse::Event, Infallible>> + Send {
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = stream::unfold((events, false), move |(mut events, done)| {
        let chunk = chunk.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let next = tokio::time::timeout_at(deadline, events.next()).await;
                let item = match next {
                    Ok(Some(event)) => match event.body {
                        EventBody::Chunk { delta, .. } => {
                            Some((chunk(json!({"content": delta}), None), false))
                        }
                        EventBody::Completed { .. } => Some((chunk(json!({}), Some("stop")), true)),
                        EventBody::Failed { error, .. } => Some((
                            json!({"error": {"message": error.message, "type": "server_error", "code": error.code.as_str()}}),
                            true,
                        )),
                        _ => None,
                    },
                    Ok(None) => Some((
                        json!({"error": {"message": "the event stream ended", "type": "server_error", "code": "bus_unavailable"}}),
                        true,
                    )),
                    Err(_) => Some((
                        json!({"error": {"message": "no answer in time", "type": "server_error", "code": "timeout"}}),
                        true,
                    )),
                };
                if let Some((value, done)) = item {
                    return Some((value, (events, done)));
                }
            }
        }
    });
    stream::once(async move { first })
        .chain(body)
        .map(|value| Ok(sse::Event::default().data(value.to_string())))
        .chain(stream::once(async {
            Ok(sse::Event::default().data("[DONE]"))
        }))
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

// === admin: tenant keys ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    name: String,
}

fn key_json(key: &switchyard_runtime::store::TenantKey) -> Value {
    json!({
        "id": key.id, "tenant": key.tenant, "name": key.name, "prefix": key.prefix,
        "created_at": key.created_at, "revoked_at": key.revoked_at,
    })
}

#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn tenant_path(tenant: &str) -> Result<Tenant, Response> {
    Tenant::new(tenant).map_err(|e| super::error(StatusCode::BAD_REQUEST, format!("tenant: {e}")))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), request_body(content = String, description = "{name?}: a label", content_type = "application/json"), responses((status = 201, description = "{id, tenant, name, prefix, created_at, key}: `key` is shown this once and never again"), (status = 400, description = "bad tenant or body"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn create_key(
    State(admin): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let tenant = match tenant_path(&tenant) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let ask: NewKey = if body.is_empty() {
        NewKey::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(ask) => ask,
            Err(e) => return super::error(StatusCode::BAD_REQUEST, format!("not a key: {e}")),
        }
    };
    match admin
        .store
        .create_tenant_key(tenant.as_str(), &ask.name)
        .await
    {
        Ok((key, secret)) => {
            let mut body = key_json(&key);
            body["key"] = json!(secret);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => super::store_error(e),
    }
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant")), responses((status = 200, description = "{items: [{id, tenant, name, prefix, created_at, revoked_at}]}: never the keys themselves"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn list_keys(
    State(admin): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> Response {
    let tenant = match tenant_path(&tenant) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match admin.store.tenant_keys(tenant.as_str()).await {
        Ok(keys) => {
            Json(json!({"items": keys.iter().map(key_json).collect::<Vec<_>>()})).into_response()
        }
        Err(e) => super::store_error(e),
    }
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/keys/{id}", tag = "tenants", security(("admin" = [])), params(("tenant" = String, Path, description = "the tenant"), ("id" = i64, Path, description = "the key id")), responses((status = 204, description = "revoked: it stops working at once"), (status = 404, description = "no such live key"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn revoke_key(
    State(admin): State<AdminState>,
    axum::extract::Path((tenant, id)): axum::extract::Path<(String, i64)>,
) -> Response {
    let tenant = match tenant_path(&tenant) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match admin.store.revoke_tenant_key(tenant.as_str(), id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => super::error(StatusCode::NOT_FOUND, "no such live key"),
        Err(e) => super::store_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parts_are_joined_as_text() {
        assert_eq!(text_of(&json!("hi")), "hi");
        assert_eq!(
            text_of(
                &json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}])
            ),
            "ab"
        );
        assert_eq!(text_of(&json!(null)), "");
    }

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
