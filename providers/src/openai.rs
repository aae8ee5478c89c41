//! `openai` and `openai_compatible`: images generations and edits (DALL·E 2/3,
//! GPT-image), chat completions with SSE streaming. `openai_compatible` is the same
//! wire format at any base URL (vLLM, Ollama, LocalAI), with the key optional and the
//! classic `max_tokens` field.

use reqwest::{StatusCode, multipart};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{Command, ErrorCode, Kind, ProviderConfig, ProviderType, Role};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter,
    answer::{Answer, AnswerImage},
    decode_b64, options,
    wire::{Api, Authorize, KeyIn, Refined, scrub_raw, str_at},
};

/// Type-specific options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OpenAiOptions {
    /// `OpenAI-Organization` header.
    organization: Option<String>,
    /// `OpenAI-Project` header.
    project: Option<String>,
    /// Model for text when `model` names an image model (and the other way round).
    text_model: Option<String>,
    /// Model for images.
    image_model: Option<String>,
}

/// The adapter of one OpenAI (or OpenAI-compatible) account.
#[derive(Debug)]
pub struct OpenAiAdapter {
    api: Api,
    compatible: bool,
    model: Option<String>,
    options: OpenAiOptions,
}

impl OpenAiAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options, or `openai_compatible` without a `base_url`.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        let provider = config.spec.provider;
        let compatible = provider == ProviderType::OpenaiCompatible;
        if compatible && config.spec.base_url.is_none() {
            return Err(AdapterBuildError {
                provider,
                reason: "base_url is required (the server's /v1 URL)".to_owned(),
            });
        }
        Ok(Self {
            api: Api::for_config(config, "https://api.openai.com/v1", refine),
            compatible,
            model: config.spec.model.clone(),
            options: options(config)?,
        })
    }

    fn image_model(&self) -> String {
        self.options
            .image_model
            .clone()
            .or_else(|| self.model.clone().filter(|m| is_image_model(m)))
            .unwrap_or_else(|| "dall-e-3".to_owned())
    }

    fn text_model(&self) -> Result<String, AttemptError> {
        self.options
            .text_model
            .clone()
            .or_else(|| self.model.clone().filter(|m| !is_image_model(m)))
            .or_else(|| (!self.compatible).then(|| "gpt-4o-mini".to_owned()))
            .ok_or_else(|| {
                self.api.error(
                    ErrorCode::ProviderError,
                    "no text model configured (set `model`)",
                )
            })
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        // An OpenAI-compatible server may need no key at all.
        let mut request = if self.compatible && !self.api.has_credentials() {
            request
        } else {
            request.auth(&self.api, KeyIn::Bearer)?
        };
        if let Some(org) = &self.options.organization {
            request = request.header("OpenAI-Organization", org);
        }
        if let Some(project) = &self.options.project {
            request = request.header("OpenAI-Project", project);
        }
        Ok(request)
    }
}

fn is_image_model(model: &str) -> bool {
    model.starts_with("dall-e") || model.contains("image")
}

fn is_dalle(model: &str) -> bool {
    model.starts_with("dall-e")
}

/// OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn refine(status: StatusCode, body: &Value) -> Refined {
    let message = str_at(body, "/error/message").map(str::to_owned);
    let code = str_at(body, "/error/code").unwrap_or_default();
    let kind = str_at(body, "/error/type").unwrap_or_default();
    let code = if code == "content_policy_violation"
        || code == "moderation_blocked"
        || kind == "image_generation_user_error" && code.contains("moderation")
    {
        Some(ErrorCode::ContentFiltered)
    } else if code == "insufficient_quota" || kind == "insufficient_quota" {
        // Billing: waiting does not help, another account may.
        Some(ErrorCode::Unauthorized)
    } else if status == StatusCode::BAD_REQUEST && kind == "image_generation_user_error" {
        Some(ErrorCode::InvalidRequest)
    } else {
        None
    };
    Refined {
        code,
        message,
        retry_after_ms: None,
    }
}

#[derive(Debug, Deserialize)]
struct ImagesResponse {
    #[serde(default)]
    data: Vec<ImageDatum>,
    usage: Option<ImageUsage>,
}

#[derive(Debug, Deserialize)]
struct ImageDatum {
    b64_json: Option<String>,
    url: Option<String>,
    revised_prompt: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImageUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<ChatChoice>,
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    message: Option<ChatMessage>,
    delta: Option<ChatMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl ProviderAdapter for OpenAiAdapter {
    fn provider_type(&self) -> ProviderType {
        self.api.provider
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let variation = request
            .params_for(self.api.provider)
            .get("variation")
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        let prepared = match request.command.kind {
            Kind::ImageGenerate => self.images_generate(&request),
            Kind::ImageEdit if variation => self.images_variation(&request),
            Kind::ImageEdit => self.images_edit(&request),
            Kind::TextGenerate => self.chat(&request),
        };
        let api = self.api.clone();
        Box::pin(async move {
            let (http, call) = prepared?;
            let response = api.send(http).await?;
            match call {
                Call::Images => {
                    read_images(&api, &api.body(response).await?)?
                        .fetch(&api)
                        .await
                }
                Call::Chat { stream: false } => {
                    read_chat(&api, &api.body(response).await?)?
                        .fetch(&api)
                        .await
                }
                Call::Chat { stream: true } => chat_stream(&api, response, &request).await,
            }
        })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        let request = self.authorize(api.client.get(api.url("/models")));
        Box::pin(async move {
            api.send(request?).await?;
            Ok(())
        })
    }
}

enum Call {
    Images,
    Chat { stream: bool },
}

type Prepared = Result<(reqwest::RequestBuilder, Call), AttemptError>;

impl OpenAiAdapter {
    fn images_generate(&self, request: &AdapterRequest) -> Prepared {
        let command = &request.command;
        let model = self.image_model();
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        common_image_fields(command, &mut body);
        if let Some(style) = &command.input.style
            && model == "dall-e-3"
        {
            body.insert("style".into(), json!(style));
        }
        if is_dalle(&model) {
            // One round trip: the bytes come back inline.
            body.insert("response_format".into(), json!("b64_json"));
        } else if let Some(format) = &command.input.output_format {
            body.insert("output_format".into(), json!(format));
        }
        body.extend(request.params_for(self.api.provider));
        let http = self.authorize(
            self.api
                .client
                .post(self.api.url("/images/generations"))
                .json(&body),
        )?;
        Ok((http, Call::Images))
    }

    fn images_edit(&self, request: &AdapterRequest) -> Prepared {
        let command = &request.command;
        let model = self.image_model();
        let images = &request.inputs.images;
        if images.is_empty() {
            return Err(AttemptError::new(
                ErrorCode::InvalidRequest,
                "image.edit needs at least one input image",
            ));
        }
        let mut fields = Map::new();
        common_image_fields(command, &mut fields);
        if model == "dall-e-2" {
            fields.insert("response_format".into(), json!("b64_json"));
        }
        fields.extend(request.params_for(self.api.provider));
        let mut form = multipart::Form::new().text("model", model);
        for (name, value) in fields {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            form = form.text(name, text);
        }
        let part_name = if images.len() == 1 {
            "image"
        } else {
            "image[]"
        };
        for (i, image) in images.iter().enumerate() {
            form = form.part(part_name, file_part(image, &format!("image{i}"))?);
        }
        if let Some(mask) = &request.inputs.mask {
            form = form.part("mask", file_part(mask, "mask")?);
        }
        let http = self.authorize(
            self.api
                .client
                .post(self.api.url("/images/edits"))
                .multipart(form),
        )?;
        Ok((http, Call::Images))
    }

    /// `params.variation = true` on `image.edit`: `/images/variations` (dall-e-2), the
    /// first input image varied; the prompt is not used.
    fn images_variation(&self, request: &AdapterRequest) -> Prepared {
        let command = &request.command;
        let image = request.inputs.images.first().ok_or_else(|| {
            AttemptError::new(
                ErrorCode::InvalidRequest,
                "a variation needs an input image",
            )
        })?;
        let mut form = multipart::Form::new()
            .text("model", "dall-e-2")
            .text("response_format", "b64_json")
            .part("image", file_part(image, "image")?);
        if let Some(n) = command.input.n {
            form = form.text("n", n.to_string());
        }
        if let Some(size) = &command.input.size {
            form = form.text("size", size.clone());
        }
        let http = self.authorize(
            self.api
                .client
                .post(self.api.url("/images/variations"))
                .multipart(form),
        )?;
        Ok((http, Call::Images))
    }

    fn chat(&self, request: &AdapterRequest) -> Prepared {
        let command = &request.command;
        let input = &command.input;
        let mut messages = Vec::new();
        if let Some(system) = &input.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in input.messages.as_deref().unwrap_or(&[]) {
            let role = match message.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(json!({"role": role, "content": crate::parts::openai_content(message)}));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.text_model()?));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(max) = input.max_tokens {
            let field = if self.compatible {
                "max_tokens"
            } else {
                "max_completion_tokens"
            };
            body.insert(field.into(), json!(max));
        }
        if let Some(t) = input.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = input.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(stop) = &input.stop {
            body.insert("stop".into(), json!(stop));
        }
        let stream = request.streaming();
        if stream {
            body.insert("stream".into(), json!(true));
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        if let Some(user) = &command.user {
            body.insert("user".into(), json!(user));
        }
        body.extend(request.params_for(self.api.provider));
        let http = self.authorize(
            self.api
                .client
                .post(self.api.url("/chat/completions"))
                .json(&body),
        )?;
        Ok((http, Call::Chat { stream }))
    }
}

fn common_image_fields(command: &Command, body: &mut Map<String, Value>) {
    let input = &command.input;
    body.insert(
        "prompt".into(),
        json!(input.prompt.as_deref().unwrap_or_default()),
    );
    if let Some(n) = input.n {
        body.insert("n".into(), json!(n));
    }
    if let Some(size) = &input.size {
        body.insert("size".into(), json!(size));
    }
    if let Some(quality) = &input.quality {
        body.insert("quality".into(), json!(quality));
    }
    if let Some(user) = &command.user {
        body.insert("user".into(), json!(user));
    }
}

fn file_part(image: &super::InputImage, stem: &str) -> Result<multipart::Part, AttemptError> {
    multipart::Part::bytes(image.bytes.clone())
        .file_name(image.file_name(stem))
        .mime_str(&image.mime)
        .map_err(|e| AttemptError::new(ErrorCode::InvalidRequest, format!("input image: {e}")))
}

/// Reads an images answer (generations, edits, variations).
pub(crate) fn read_images(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (ImagesResponse, Value) = api.parse(body)?;
    if parsed.data.is_empty() {
        return Err(api.malformed(&"no images in `data`"));
    }
    let mut images = Vec::with_capacity(parsed.data.len());
    for datum in parsed.data {
        let mut image = match (datum.b64_json, datum.url) {
            (Some(b64), _) => AnswerImage::inline(decode_b64(api, &b64)?),
            (None, Some(url)) => AnswerImage::url(url),
            (None, None) => return Err(api.malformed(&"an image has neither b64_json nor url")),
        };
        image.revised_prompt = datum.revised_prompt;
        images.push(image);
    }
    let usage = parsed.usage;
    Ok(Answer {
        images,
        text: None,
        input_tokens: usage.as_ref().map_or(0, |u| u.input_tokens),
        output_tokens: usage.as_ref().map_or(0, |u| u.output_tokens),
        raw: Some(scrub_raw(&raw)),
    })
}

/// Reads a chat completion answer (not streamed).
pub(crate) fn read_chat(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (ChatResponse, Value) = api.parse(body)?;
    let choice = parsed
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| api.malformed(&"no `choices`"))?;
    let message = choice
        .message
        .ok_or_else(|| api.malformed(&"a choice without `message`"))?;
    let text = message.content.unwrap_or_default();
    refusal_check(
        api,
        choice.finish_reason.as_deref(),
        message.refusal.as_deref(),
        &text,
    )?;
    let usage = parsed.usage;
    Ok(Answer {
        images: Vec::new(),
        text: Some(text),
        input_tokens: usage.as_ref().map_or(0, |u| u.prompt_tokens),
        output_tokens: usage.as_ref().map_or(0, |u| u.completion_tokens),
        raw: Some(scrub_raw(&raw)),
    })
}

fn refusal_check(
    api: &Api,
    finish_reason: Option<&str>,
    refusal: Option<&str>,
    text: &str,
) -> Result<(), AttemptError> {
    if let Some(refusal) = refusal.filter(|r| !r.is_empty()) {
        return Err(api.error(ErrorCode::ContentFiltered, format!("refused: {refusal}")));
    }
    if finish_reason == Some("content_filter") && text.is_empty() {
        return Err(api.error(
            ErrorCode::ContentFiltered,
            "the answer was withheld by the content filter",
        ));
    }
    Ok(())
}

/// Reads a streamed chat completion: `data:` chunks until `[DONE]`.
pub(crate) async fn chat_stream(
    api: &Api,
    response: reqwest::Response,
    request: &AdapterRequest,
) -> Result<AdapterOutput, AttemptError> {
    use futures_util::StreamExt as _;
    let mut events = api.events(response);
    let mut text = String::new();
    let mut usage = (0, 0);
    let mut finish_reason = None;
    let mut refusal = String::new();
    while let Some(event) = events.next().await {
        let event = event?;
        let data = event.data.trim();
        if data == "[DONE]" {
            refusal_check(api, finish_reason.as_deref(), Some(&refusal), &text)?;
            return Ok(AdapterOutput {
                images: Vec::new(),
                text: Some(text),
                input_tokens: usage.0,
                output_tokens: usage.1,
                raw: None,
            });
        }
        if data.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(data).map_err(|e| api.malformed(&e))?;
        if value.get("error").is_some() {
            let message = str_at(&value, "/error/message").unwrap_or("error in the stream");
            return Err(api.error(ErrorCode::ProviderUnavailable, message));
        }
        let chunk: ChatResponse = serde_json::from_value(value).map_err(|e| api.malformed(&e))?;
        if let Some(u) = chunk.usage {
            usage = (u.prompt_tokens, u.completion_tokens);
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                finish_reason = Some(reason);
            }
            if let Some(delta) = choice.delta {
                if let Some(r) = delta.refusal {
                    refusal.push_str(&r);
                }
                if let Some(content) = delta.content.filter(|c| !c.is_empty()) {
                    text.push_str(&content);
                    request.chunk(content);
                }
            }
        }
    }
    Err(api.stream_cut("no [DONE]"))
}
