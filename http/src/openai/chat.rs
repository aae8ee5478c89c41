//! `POST /v1/chat/completions`: whole, or with `stream: true` as
//! `chat.completion.chunk` server-sent events ending in `[DONE]`.

use std::convert::Infallible;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{self, Sse},
    },
};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::{CommandInput, EventBody, Kind, Message, Role};
use switchyard_runtime::facade::Events;
use utoipa::ToSchema;

use super::{
    WAIT, command,
    error::{OaiError, OpenAiErrorBody},
    key_tenant, new_request_id, parse_body, submit, terminal, unix_now, wait_for,
};
use crate::{caller::Caller, state::OpenAiState};

/// OpenAI's chat completion body (the fields Switchyard reads).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChatCompletion {
    /// The conversation.
    messages: Vec<ChatMessage>,
    /// An instance name, a provider type, a model, or `auto`.
    #[serde(default)]
    model: Option<String>,
    /// Tokens at most (older name).
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Tokens at most (wins over `max_tokens`).
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    /// Sampling temperature.
    #[serde(default)]
    temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    top_p: Option<f64>,
    /// A stop sequence or a list of them.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    stop: Option<Value>,
    /// Whether to answer as server-sent `chat.completion.chunk` events.
    #[serde(default)]
    stream: bool,
    /// The end user.
    #[serde(default)]
    user: Option<String>,
}

/// One message of a chat completion body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChatMessage {
    /// `system`, `user` or `assistant`.
    role: String,
    /// A string, or content parts (`text`, `image_url`, `input_audio`, `file`,
    /// `video_url`).
    #[schema(value_type = Object)]
    content: Value,
}

/// A whole chat completion (`stream: false`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatCompletionAnswer {
    /// `chatcmpl-` and the request id.
    id: String,
    /// Always `chat.completion`.
    object: &'static str,
    /// Unix seconds.
    created: i64,
    /// The model that answered, else the one asked for (`auto` by default).
    model: String,
    /// The one answer.
    choices: Vec<ChatChoice>,
    /// Tokens used.
    usage: ChatUsage,
}

/// The answer of a chat completion.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatChoice {
    /// Always 0.
    index: u32,
    /// The assistant's message.
    message: AssistantMessage,
    /// Always `stop`.
    finish_reason: &'static str,
}

/// The assistant's message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AssistantMessage {
    /// Always `assistant`.
    role: &'static str,
    /// The text.
    content: String,
}

/// The tokens a chat completion used.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatUsage {
    /// Prompt tokens.
    prompt_tokens: u64,
    /// Completion tokens.
    completion_tokens: u64,
    /// Both.
    total_tokens: u64,
}

/// One `chat.completion.chunk` of a streamed answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ChatChunk {
    /// `chatcmpl-` and the request id, the same in every chunk.
    id: String,
    /// Always `chat.completion.chunk`.
    object: &'static str,
    /// Unix seconds, the same in every chunk.
    created: i64,
    /// The model asked for (`auto` by default).
    model: String,
    /// The one choice.
    choices: Vec<ChunkChoice>,
}

/// The choice of a chunk.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ChunkChoice {
    /// Always 0.
    index: u32,
    /// What this chunk adds.
    delta: ChunkDelta,
    /// `stop` in the last chunk, else null.
    finish_reason: Option<&'static str>,
}

/// What a chunk adds: the role (first chunk), text, or nothing (last chunk).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(crate) struct ChunkDelta {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// More text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

/// A failure after the stream started, sent as its last data before `[DONE]`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamError {
    /// The error (without `param`).
    error: StreamErrorDetail,
}

/// The error of a stream that failed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamErrorDetail {
    /// What went wrong.
    message: String,
    /// Always `server_error`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The error code.
    code: &'static str,
}

impl StreamError {
    fn new(message: impl Into<String>, code: &'static str) -> Self {
        Self {
            error: StreamErrorDetail {
                message: message.into(),
                kind: "server_error",
                code,
            },
        }
    }
}

/// The messages of a chat completion body, their roles checked; a content array keeps
/// its parts (text, image_url, input_audio, file, video_url) for the adapters.
fn messages_of(messages: &[ChatMessage]) -> Result<Vec<Message>, OaiError> {
    messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            serde_json::from_value::<Role>(Value::String(message.role.clone())).map_err(|_| {
                OaiError::bad_request(format!(
                    "messages: '{}' is not a role (system, user or assistant)",
                    message.role
                ))
            })?;
            let content = match &message.content {
                Value::Null => Value::String(String::new()),
                other => other.clone(),
            };
            serde_json::from_value::<Message>(
                serde_json::json!({"role": message.role, "content": content}),
            )
            .map_err(|e| OaiError::bad_request(format!("messages[{index}].content: {e}")))
        })
        .collect()
}

/// `stop`: a string or a list of strings. Any other `stop` is ignored, as it was
/// before the command was typed.
fn stop_of(stop: Option<Value>) -> Result<Option<Vec<String>>, OaiError> {
    match stop {
        Some(Value::String(stop)) => Ok(Some(vec![stop])),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(stop) => Ok(stop),
                _ => Err(OaiError::bad_request("stop: a string or a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Ok(None),
    }
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", security(("tenant" = [])), request_body(content = ChatCompletion, description = "OpenAI's chat completion body", content_type = "application/json"), responses((status = 200, description = "a chat.completion object, or with stream: true text/event-stream of chat.completion.chunk objects (ChatChunk; a failure after the first chunk sends a StreamError) ending with data: [DONE]", content((ChatCompletionAnswer = "application/json"), (ChatChunk = "text/event-stream"))), (status = 400, description = "invalid request", body = OpenAiErrorBody), (status = 401, description = "missing or unknown tenant key", body = OpenAiErrorBody), (status = 429, description = "quota exceeded or rate limited", body = OpenAiErrorBody), (status = 502, description = "the provider failed", body = OpenAiErrorBody), (status = 503, description = "no provider, or the bus is down", body = OpenAiErrorBody)))]
pub(crate) async fn chat_completions(
    State(state): State<OpenAiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, OaiError> {
    let tenant = key_tenant(&caller)?;
    let ask: ChatCompletion = parse_body(&body)?;
    let input = CommandInput {
        messages: Some(messages_of(&ask.messages)?),
        max_tokens: ask.max_completion_tokens.or(ask.max_tokens),
        temperature: ask.temperature,
        top_p: ask.top_p,
        stop: stop_of(ask.stop)?,
        stream: ask.stream.then_some(true),
        ..CommandInput::default()
    };
    let request_id = new_request_id();
    let command = command(
        &state,
        &request_id,
        &tenant,
        ask.user,
        Kind::TextGenerate,
        input,
        ask.model.as_deref(),
    )?;
    let mut events = submit(&state, command).await?;
    let id = format!("chatcmpl-{request_id}");
    let model = ask.model.unwrap_or_else(|| "auto".to_owned());
    if ask.stream {
        // Until the first chunk a failure is still an HTTP error, as OpenAI answers it;
        // only then does the event stream start.
        let first = wait_for(&mut events, |e| {
            e.is_terminal() || matches!(e.body, EventBody::Chunk { .. })
        })
        .await?;
        if let EventBody::Failed { error, .. } = &first.body {
            return Err(error.into());
        }
        let events: Events = Box::pin(stream::once(async move { first }).chain(events));
        return Ok(Sse::new(chat_chunks(events, id, model, unix_now())).into_response());
    }
    match terminal(&mut events).await?.body {
        EventBody::Completed {
            output,
            usage,
            provider,
            ..
        } => Ok(Json(ChatCompletionAnswer {
            id,
            object: "chat.completion",
            created: unix_now(),
            model: provider.model.unwrap_or(model),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: output.text.unwrap_or_default(),
                },
                finish_reason: "stop",
            }],
            usage: ChatUsage {
                prompt_tokens: usage.input_tokens,
                completion_tokens: usage.output_tokens,
                total_tokens: usage.input_tokens + usage.output_tokens,
            },
        })
        .into_response()),
        EventBody::Failed { error, .. } => Err((&error).into()),
        _ => Err(OaiError::internal("no terminal event")),
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
    chunk_data(events, id, model, created).map(|data| Ok(sse::Event::default().data(data)))
}

/// The data of each server-sent event of [`chat_chunks`], `[DONE]` last.
fn chunk_data(
    events: Events,
    id: String,
    model: String,
    created: i64,
) -> impl Stream<Item = String> + Send {
    let chunk = move |delta: ChunkDelta, finish: Option<&'static str>| ChatChunk {
        id: id.clone(),
        object: "chat.completion.chunk",
        created,
        model: model.clone(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish,
        }],
    };
    let first = data(&chunk(
        ChunkDelta {
            role: Some("assistant"),
            content: Some(String::new()),
        },
        None,
    ));
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
                        EventBody::Chunk { delta, .. } => Some((
                            data(&chunk(
                                ChunkDelta {
                                    role: None,
                                    content: Some(delta),
                                },
                                None,
                            )),
                            false,
                        )),
                        EventBody::Completed { .. } => {
                            Some((data(&chunk(ChunkDelta::default(), Some("stop"))), true))
                        }
                        EventBody::Failed { error, .. } => Some((
                            data(&StreamError::new(error.message, error.code.as_str())),
                            true,
                        )),
                        _ => None,
                    },
                    Ok(None) => Some((
                        data(&StreamError::new(
                            "the event stream ended",
                            "bus_unavailable",
                        )),
                        true,
                    )),
                    Err(_) => Some((
                        data(&StreamError::new("no answer in time", "timeout")),
                        true,
                    )),
                };
                if let Some((data, done)) = item {
                    return Some((data, (events, done)));
                }
            }
        }
    });
    stream::once(async move { first })
        .chain(body)
        .chain(stream::once(async { "[DONE]".to_owned() }))
}

/// The JSON text of an event's data.
fn data(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_parts_are_kept_and_their_text_joined() {
        let message = |content: Value| ChatMessage {
            role: "user".to_owned(),
            content,
        };
        let plain = messages_of(&[message(json!("hi"))]).unwrap();
        assert_eq!(
            (plain[0].content.as_str(), plain[0].parts.is_none()),
            ("hi", true)
        );
        let parts = messages_of(&[message(json!([
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": "https://example.com/k.png"}},
            {"type": "text", "text": "b"}
        ]))])
        .unwrap();
        assert_eq!(parts[0].content, "ab");
        assert_eq!(parts[0].parts.as_ref().map(Vec::len), Some(3));
        assert_eq!(messages_of(&[message(json!(null))]).unwrap()[0].content, "");
        let unknown = messages_of(&[message(json!([{"type": "hologram"}]))]);
        assert!(unknown.is_err());
    }

    #[tokio::test]
    async fn a_stream_reads_as_chunks_then_done() {
        use switchyard_core::{ErrorCode, ErrorInfo, Event, RequestId, Tenant};
        let event = |seq, body| Event {
            v: 1,
            request_id: RequestId::new("r").unwrap(),
            tenant: Tenant::new("t").unwrap(),
            seq,
            time: chrono::Utc::now(),
            body,
        };
        let events: Events = Box::pin(stream::iter([
            event(
                2,
                EventBody::Chunk {
                    index: 0,
                    delta: "Hel".into(),
                },
            ),
            event(
                3,
                EventBody::Failed {
                    error: ErrorInfo::new(ErrorCode::ProviderError, "boom"),
                    attempts: Vec::new(),
                    routing: None,
                    latency_ms: 1,
                    chunks_delivered: None,
                },
            ),
        ]));
        let sent: Vec<String> = chunk_data(events, "chatcmpl-x".into(), "auto".into(), 7)
            .collect()
            .await;
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 7,
                   "model": "auto",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let expected = [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            json!({"error": {"message": "boom", "type": "server_error", "code": "provider_error"}}),
        ];
        assert_eq!(sent.len(), 4, "{sent:?}");
        for (sent, expected) in sent.iter().zip(expected) {
            assert_eq!(serde_json::from_str::<Value>(sent).unwrap(), expected);
        }
        assert_eq!(sent[3], "[DONE]");
    }

    #[tokio::test]
    async fn a_completed_stream_ends_with_stop() {
        use switchyard_core::{Event, RequestId, Tenant};
        let completed: EventBody = serde_json::from_value(json!({
            "type": "completed", "output": {"images": []},
            "usage": {"images": 0, "input_tokens": 1, "output_tokens": 2, "cost_usd": 0.0},
            "provider": {"config_id": 1, "name": "m", "type": "mock"},
            "attempts": [], "latency_ms": 1, "cached": false,
        }))
        .unwrap();
        let events: Events = Box::pin(stream::iter([Event {
            v: 1,
            request_id: RequestId::new("r").unwrap(),
            tenant: Tenant::new("t").unwrap(),
            seq: 2,
            time: chrono::Utc::now(),
            body: completed,
        }]));
        let sent: Vec<String> = chunk_data(events, "c".into(), "m".into(), 1)
            .collect()
            .await;
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&sent[1]).unwrap()["choices"][0],
            json!({"index": 0, "delta": {}, "finish_reason": "stop"})
        );
    }
}
