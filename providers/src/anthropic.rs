//! `anthropic`: the Messages API, with SSE streaming (named events, cumulative usage,
//! `ping` ignored, `error` events mid-stream, `message_stop` as the terminator).

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{ErrorCode, ProviderConfig, ProviderType, Role};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter,
    answer::Answer,
    options,
    wire::{Api, Authorize, KeyIn, Refined, scrub_raw, str_at},
};

const VERSION: &str = "2023-06-01";

/// Type-specific options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AnthropicOptions {
    /// `max_tokens` when the command gives none (the API requires one).
    default_max_tokens: Option<u32>,
    /// `anthropic-beta` header.
    beta: Option<String>,
}

/// The adapter of one Anthropic account.
#[derive(Debug)]
pub struct AnthropicAdapter {
    api: Api,
    model: String,
    options: AnthropicOptions,
}

impl AnthropicAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        Ok(Self {
            api: Api::for_config(config, "https://api.anthropic.com", refine),
            model: config
                .spec
                .model
                .clone()
                .unwrap_or_else(|| "claude-sonnet-4-5-20250929".to_owned()),
            options: options(config)?,
        })
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let mut request = request
            .auth(&self.api, KeyIn::Header("x-api-key"))?
            .header("anthropic-version", VERSION);
        if let Some(beta) = &self.options.beta {
            request = request.header("anthropic-beta", beta);
        }
        Ok(request)
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub(crate) fn refine(_status: StatusCode, body: &Value) -> Refined {
    let kind = str_at(body, "/error/type").unwrap_or_default();
    Refined {
        code: match kind {
            "overloaded_error" | "api_error" => Some(ErrorCode::ProviderUnavailable),
            "billing_error" => Some(ErrorCode::Unauthorized),
            "timeout_error" => Some(ErrorCode::Timeout),
            _ => None,
        },
        message: str_at(body, "/error/message").map(str::to_owned),
        retry_after_ms: None,
    }
}

#[derive(Debug, Deserialize)]
struct MessageResponse {
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Usage,
}

#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl ProviderAdapter for AnthropicAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Anthropic
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let http = self.build(&request);
        let api = self.api.clone();
        Box::pin(async move {
            let response = api.send(http?).await?;
            if request.streaming() {
                stream(&api, response, &request).await
            } else {
                read_message(&api, &api.body(response).await?)?
                    .fetch(&api)
                    .await
            }
        })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        let request = self.authorize(api.client.get(api.url("/v1/models?limit=1")));
        Box::pin(async move {
            api.send(request?).await?;
            Ok(())
        })
    }
}

impl AnthropicAdapter {
    fn build(&self, request: &AdapterRequest) -> Result<reqwest::RequestBuilder, AttemptError> {
        let input = &request.command.input;
        let mut system: Vec<String> = input.system.iter().cloned().collect();
        let mut messages = Vec::new();
        for message in input.messages.as_deref().unwrap_or(&[]) {
            match message.role {
                // The API has no system role inside `messages`.
                Role::System => system.push(message.content.clone()),
                Role::User | Role::Assistant => {
                    let role = if message.role == Role::User {
                        "user"
                    } else {
                        "assistant"
                    };
                    let content =
                        crate::parts::anthropic_content(message).map_err(|unsupported| {
                            AttemptError::new(ErrorCode::InvalidRequest, unsupported.to_string())
                        })?;
                    messages.push(json!({"role": role, "content": content}));
                }
            }
        }
        let max_tokens = input
            .max_tokens
            .or(self.options.default_max_tokens.map(i64::from))
            .unwrap_or(1024);
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("max_tokens".into(), json!(max_tokens));
        body.insert("messages".into(), Value::Array(messages));
        if !system.is_empty() {
            body.insert("system".into(), json!(system.join("\n\n")));
        }
        if let Some(t) = input.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = input.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(stop) = &input.stop {
            body.insert("stop_sequences".into(), json!(stop));
        }
        if let Some(user) = &request.command.user {
            body.insert("metadata".into(), json!({"user_id": user}));
        }
        if request.streaming() {
            body.insert("stream".into(), json!(true));
        }
        body.extend(request.params_for(ProviderType::Anthropic));
        self.authorize(
            self.api
                .client
                .post(self.api.url("/v1/messages"))
                .json(&body),
        )
    }
}

/// Reads a Messages answer (not streamed).
pub(crate) fn read_message(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (MessageResponse, Value) = api.parse(body)?;
    let text: String = parsed
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    refusal_check(api, parsed.stop_reason.as_deref(), &text)?;
    Ok(Answer {
        images: Vec::new(),
        text: Some(text),
        input_tokens: parsed.usage.input_tokens.unwrap_or(0),
        output_tokens: parsed.usage.output_tokens.unwrap_or(0),
        raw: Some(scrub_raw(&raw)),
    })
}

fn refusal_check(api: &Api, stop_reason: Option<&str>, text: &str) -> Result<(), AttemptError> {
    if stop_reason == Some("refusal") {
        let detail = if text.is_empty() {
            "the model refused"
        } else {
            text
        };
        return Err(api.error(ErrorCode::ContentFiltered, detail));
    }
    Ok(())
}

/// Reads a streamed Messages answer: named events until `message_stop`.
pub(crate) async fn stream(
    api: &Api,
    response: reqwest::Response,
    request: &AdapterRequest,
) -> Result<AdapterOutput, AttemptError> {
    use futures_util::StreamExt as _;
    let mut events = api.events(response);
    let mut text = String::new();
    let mut input_tokens = 0;
    let mut output_tokens = 0;
    let mut stop_reason: Option<String> = None;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.data.trim().is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| api.malformed(&e))?;
        match str_at(&data, "/type").unwrap_or(event.event.as_str()) {
            "message_start" => {
                if let Some(n) = data
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64)
                {
                    input_tokens = n;
                }
                if let Some(n) = data
                    .pointer("/message/usage/output_tokens")
                    .and_then(Value::as_u64)
                {
                    output_tokens = n;
                }
            }
            "content_block_delta" => {
                if let Some(delta) = str_at(&data, "/delta/text").filter(|d| !d.is_empty()) {
                    text.push_str(delta);
                    request.chunk(delta);
                }
            }
            "message_delta" => {
                // Counts are cumulative.
                if let Some(n) = data.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    output_tokens = n;
                }
                if let Some(n) = data.pointer("/usage/input_tokens").and_then(Value::as_u64) {
                    input_tokens = n;
                }
                if let Some(reason) = str_at(&data, "/delta/stop_reason") {
                    stop_reason = Some(reason.to_owned());
                }
            }
            "message_stop" => {
                refusal_check(api, stop_reason.as_deref(), &text)?;
                return Ok(AdapterOutput {
                    images: Vec::new(),
                    text: Some(text),
                    input_tokens,
                    output_tokens,
                    raw: None,
                });
            }
            "error" => {
                let refined = refine(StatusCode::OK, &data);
                let message = refined
                    .message
                    .unwrap_or_else(|| "error in the stream".into());
                return Err(api.error(
                    refined.code.unwrap_or(ErrorCode::ProviderUnavailable),
                    message,
                ));
            }
            // ping, content_block_start/stop and future event types.
            _ => {}
        }
    }
    Err(api.stream_cut("no message_stop"))
}
