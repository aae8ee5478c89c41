//! `POST /v1/chat/completions`: whole, or with `stream: true` as
//! `chat.completion.chunk` server-sent events ending in `[DONE]`.

use std::convert::Infallible;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{self, Sse},
    },
};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::{CommandInput, EventBody, Kind, Message, Role};
use switchyard_runtime::bus::Events;

use super::{
    Follow, KeyTenant, OpenAiState, WAIT, bad_request, command, failure_response, new_request_id,
    oai_error, parse_body, submit, terminal, unix_now, wait_for,
};

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
pub(crate) async fn chat_completions(
    State(state): State<OpenAiState>,
    Extension(KeyTenant(tenant)): Extension<KeyTenant>,
    body: Bytes,
) -> Response {
    let ask: ChatCompletion = match parse_body(&body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let mut messages = Vec::with_capacity(ask.messages.len());
    for message in &ask.messages {
        let role = match serde_json::from_value::<Role>(Value::String(message.role.clone())) {
            Ok(role) => role,
            Err(_) => {
                return bad_request(format!(
                    "messages: '{}' is not a role (system, user or assistant)",
                    message.role
                ));
            }
        };
        messages.push(Message {
            role,
            content: text_of(&message.content),
        });
    }
    let stop = match ask.stop {
        None | Some(Value::Null) => None,
        Some(Value::String(stop)) => Some(vec![stop]),
        Some(Value::Array(items)) => match items
            .into_iter()
            .map(|item| match item {
                Value::String(stop) => Ok(stop),
                _ => Err(()),
            })
            .collect::<Result<Vec<_>, ()>>()
        {
            Ok(stops) => Some(stops),
            Err(()) => return bad_request("stop: a string or a list of strings"),
        },
        // Any other `stop` is ignored, as it was before the command was typed.
        Some(_) => None,
    };
    let input = CommandInput {
        messages: Some(messages),
        max_tokens: ask.max_completion_tokens.or(ask.max_tokens),
        temperature: ask.temperature,
        top_p: ask.top_p,
        stop,
        stream: ask.stream.then_some(true),
        ..CommandInput::default()
    };
    let request_id = new_request_id();
    let command = match command(
        &state,
        &request_id,
        &tenant,
        ask.user,
        Kind::TextGenerate,
        input,
        ask.model.as_deref(),
    ) {
        Ok(command) => command,
        Err(response) => return response,
    };
    let follow = if ask.stream {
        Follow::Events
    } else {
        Follow::Terminal
    };
    let mut events = match submit(&state, command, follow).await {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::text_of;

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
}
