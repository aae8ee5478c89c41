//! `gemini`: `generateContent` / `streamGenerateContent?alt=sse` for text and for images
//! (inline data out; input images in for `image.edit`), and Imagen `:predict` when the
//! image model is an `imagen-*` one. Safety outcomes arrive as HTTP 200 and are read
//! from `promptFeedback` and `finishReason`.

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{ErrorCode, Kind, ProviderConfig, ProviderType, Role};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter,
    answer::{Answer, AnswerImage},
    decode_b64, options,
    wire::{Api, Authorize, KeyIn, Refined, duration_ms, scrub_raw, str_at},
};

/// Type-specific options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GeminiOptions {
    /// Model for text when `model` is an image model.
    text_model: Option<String>,
    /// Model for images when `model` is a text model.
    image_model: Option<String>,
}

/// The adapter of one Gemini API key.
#[derive(Debug)]
pub struct GeminiAdapter {
    api: Api,
    model: Option<String>,
    options: GeminiOptions,
}

impl GeminiAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        Ok(Self {
            api: Api::for_config(
                config,
                "https://generativelanguage.googleapis.com/v1beta",
                refine,
            ),
            model: config.spec.model.clone(),
            options: options(config)?,
        })
    }

    fn model_for(&self, kind: Kind) -> String {
        let is_image = |m: &String| m.contains("image") || m.starts_with("imagen");
        match kind {
            Kind::TextGenerate => self
                .options
                .text_model
                .clone()
                .or_else(|| self.model.clone().filter(|m| !is_image(m)))
                .unwrap_or_else(|| "gemini-2.5-flash".to_owned()),
            Kind::ImageGenerate | Kind::ImageEdit => self
                .options
                .image_model
                .clone()
                .or_else(|| self.model.clone().filter(is_image))
                .unwrap_or_else(|| "gemini-2.5-flash-image".to_owned()),
        }
    }
}

/// `{"error": {"code", "message", "status", "details"}}`.
pub(crate) fn refine(_status: StatusCode, body: &Value) -> Refined {
    let details = body
        .pointer("/error/details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let reason = |want: &str| details.iter().any(|d| str_at(d, "/reason") == Some(want));
    let retry_after_ms = details
        .iter()
        .filter_map(|d| str_at(d, "/retryDelay"))
        .find_map(duration_ms);
    let code = if reason("API_KEY_INVALID") {
        // A bad key is a 400 here.
        Some(ErrorCode::Unauthorized)
    } else {
        None
    };
    Refined {
        code,
        message: str_at(body, "/error/message").map(str::to_owned),
        retry_after_ms,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    inline_data: Option<Blob>,
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Deserialize)]
struct Blob {
    data: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
}

#[derive(Debug, Deserialize)]
struct PredictResponse {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prediction {
    bytes_base64_encoded: Option<String>,
    rai_filtered_reason: Option<String>,
}

const SAFETY_REASONS: &[&str] = &[
    "SAFETY",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
    "IMAGE_RECITATION",
];

impl ProviderAdapter for GeminiAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Gemini
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let kind = request.command.kind;
        let model = self.model_for(kind);
        let api = self.api.clone();
        let imagen = model.starts_with("imagen");
        let built = if imagen {
            self.predict(&request, &model)
        } else {
            self.generate_content(&request, &model)
        };
        Box::pin(async move {
            let response = api.send(built?).await?;
            if imagen {
                return read_predict(&api, &api.body(response).await?)?
                    .fetch(&api)
                    .await;
            }
            if request.streaming() {
                return stream(&api, response, &request).await;
            }
            read_generate(&api, kind, &api.body(response).await?)?
                .fetch(&api)
                .await
        })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        let request = api
            .client
            .get(api.url("/models?pageSize=1"))
            .auth(&api, KeyIn::Header("x-goog-api-key"));
        Box::pin(async move {
            api.send(request?).await?;
            Ok(())
        })
    }
}

impl GeminiAdapter {
    fn generate_content(
        &self,
        request: &AdapterRequest,
        model: &str,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let input = &request.command.input;
        let mut body = Map::new();
        let mut generation = Map::new();
        let mut system: Vec<String> = input.system.iter().cloned().collect();
        let mut contents = Vec::new();
        match request.command.kind {
            Kind::TextGenerate => {
                for message in input.messages.as_deref().unwrap_or(&[]) {
                    let role = match message.role {
                        Role::System => {
                            system.push(message.content.clone());
                            continue;
                        }
                        Role::User => "user",
                        Role::Assistant => "model",
                    };
                    contents
                        .push(json!({"role": role, "parts": crate::parts::gemini_parts(message)}));
                }
                if let Some(max) = input.max_tokens {
                    generation.insert("maxOutputTokens".into(), json!(max));
                }
                if let Some(t) = input.temperature {
                    generation.insert("temperature".into(), json!(t));
                }
                if let Some(p) = input.top_p {
                    generation.insert("topP".into(), json!(p));
                }
                if let Some(stop) = &input.stop {
                    generation.insert("stopSequences".into(), json!(stop));
                }
            }
            Kind::ImageGenerate | Kind::ImageEdit => {
                let mut parts = vec![json!({"text": input.prompt.as_deref().unwrap_or_default()})];
                for image in &request.inputs.images {
                    use base64::Engine as _;
                    parts.push(json!({"inlineData": {
                        "mimeType": image.mime,
                        "data": base64::engine::general_purpose::STANDARD.encode(&image.bytes),
                    }}));
                }
                contents.push(json!({"role": "user", "parts": parts}));
                generation.insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
                let mut image_config = Map::new();
                if let Some(ratio) = &input.aspect_ratio {
                    image_config.insert("aspectRatio".into(), json!(ratio));
                }
                if let Some(size) = input.size.as_deref().filter(|s| s.ends_with('K')) {
                    image_config.insert("imageSize".into(), json!(size));
                }
                if !image_config.is_empty() {
                    generation.insert("imageConfig".into(), Value::Object(image_config));
                }
                if let Some(seed) = input.seed {
                    generation.insert("seed".into(), json!(seed));
                }
            }
        }
        body.insert("contents".into(), Value::Array(contents));
        if !system.is_empty() {
            body.insert(
                "systemInstruction".into(),
                json!({"parts": [{"text": system.join("\n\n")}]}),
            );
        }
        if !generation.is_empty() {
            body.insert("generationConfig".into(), Value::Object(generation));
        }
        body.extend(request.params_for(ProviderType::Gemini));
        let path = if request.streaming() {
            format!("/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("/models/{model}:generateContent")
        };
        Ok(self
            .api
            .client
            .post(self.api.url(&path))
            .auth(&self.api, KeyIn::Header("x-goog-api-key"))?
            .json(&body))
    }

    fn predict(
        &self,
        request: &AdapterRequest,
        model: &str,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        if request.command.kind != Kind::ImageGenerate {
            return Err(AttemptError::new(
                ErrorCode::InvalidRequest,
                format!("{model} only generates images"),
            ));
        }
        let input = &request.command.input;
        let mut parameters = Map::new();
        parameters.insert("sampleCount".into(), json!(request.command.image_count()));
        if let Some(ratio) = &input.aspect_ratio {
            parameters.insert("aspectRatio".into(), json!(ratio));
        }
        if let Some(size) = input.size.as_deref().filter(|s| s.ends_with('K')) {
            parameters.insert("sampleImageSize".into(), json!(size));
        }
        parameters.insert("includeRaiReason".into(), json!(true));
        parameters.extend(request.params_for(ProviderType::Gemini));
        let body = json!({
            "instances": [{"prompt": input.prompt.as_deref().unwrap_or_default()}],
            "parameters": parameters,
        });
        Ok(self
            .api
            .client
            .post(self.api.url(&format!("/models/{model}:predict")))
            .auth(&self.api, KeyIn::Header("x-goog-api-key"))?
            .json(&body))
    }
}

/// Reads a `generateContent` answer for a command of `kind`: its text, or (for the
/// image kinds) at least one image.
pub(crate) fn read_generate(api: &Api, kind: Kind, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (GenerateResponse, Value) = api.parse(body)?;
    let usage = parsed.usage_metadata.unwrap_or_default();
    let (text, images) = collect(api, &parsed)?;
    let mut answer = Answer {
        images: Vec::new(),
        text: None,
        input_tokens: usage.prompt_token_count,
        output_tokens: usage.candidates_token_count,
        raw: Some(scrub_raw(&raw)),
    };
    if kind == Kind::TextGenerate {
        answer.text = Some(text);
    } else if images.is_empty() {
        return Err(api.error(
            ErrorCode::ProviderError,
            "the model answered without an image",
        ));
    } else {
        answer.images = images;
    }
    Ok(answer)
}

/// Text and images of an answer, or the safety outcome it reports.
fn collect(
    api: &Api,
    response: &GenerateResponse,
) -> Result<(String, Vec<AnswerImage>), AttemptError> {
    if let Some(reason) = response
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_deref())
    {
        return Err(api.error(
            ErrorCode::ContentFiltered,
            format!("the prompt was blocked ({reason})"),
        ));
    }
    let mut text = String::new();
    let mut images = Vec::new();
    for candidate in &response.candidates {
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            if part.thought {
                continue;
            }
            if let Some(t) = &part.text {
                text.push_str(t);
            }
            if let Some(blob) = &part.inline_data {
                images.push(AnswerImage::inline(decode_b64(api, &blob.data)?));
            }
        }
        if let Some(reason) = candidate.finish_reason.as_deref()
            && SAFETY_REASONS.contains(&reason)
            && images.is_empty()
        {
            return Err(api.error(
                ErrorCode::ContentFiltered,
                format!("the output was blocked (finishReason {reason})"),
            ));
        }
    }
    Ok((text, images))
}

/// Reads an Imagen `:predict` answer.
pub(crate) fn read_predict(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (PredictResponse, Value) = api.parse(body)?;
    let mut images = Vec::new();
    let mut filtered = Vec::new();
    for prediction in parsed.predictions {
        match (
            prediction.bytes_base64_encoded,
            prediction.rai_filtered_reason,
        ) {
            (Some(data), _) => images.push(AnswerImage::inline(decode_b64(api, &data)?)),
            (None, Some(reason)) => filtered.push(reason),
            (None, None) => {}
        }
    }
    if images.is_empty() {
        let detail = filtered
            .first()
            .map_or("no image came back".to_owned(), Clone::clone);
        return Err(api.error(ErrorCode::ContentFiltered, detail));
    }
    Ok(Answer {
        images,
        text: None,
        input_tokens: 0,
        output_tokens: 0,
        raw: Some(scrub_raw(&raw)),
    })
}

/// Reads a streamed `streamGenerateContent?alt=sse` answer (text): chunks until one
/// carries `finishReason`.
pub(crate) async fn stream(
    api: &Api,
    response: reqwest::Response,
    request: &AdapterRequest,
) -> Result<AdapterOutput, AttemptError> {
    use futures_util::StreamExt as _;
    let mut events = api.events(response);
    let mut text = String::new();
    let mut usage = UsageMetadata::default();
    let mut finished = false;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.data.trim().is_empty() {
            continue;
        }
        let chunk: GenerateResponse =
            serde_json::from_str(&event.data).map_err(|e| api.malformed(&e))?;
        if let Some(u) = chunk.usage_metadata {
            usage = u;
        }
        finished |= chunk.candidates.iter().any(|c| c.finish_reason.is_some());
        let (delta, _) = collect(api, &chunk)?;
        if !delta.is_empty() {
            text.push_str(&delta);
            request.chunk(delta);
        }
    }
    // No terminator here: a finished stream's last chunk carries `finishReason`.
    if !finished {
        return Err(api.stream_cut("no finishReason before the end"));
    }
    Ok(AdapterOutput {
        images: Vec::new(),
        text: Some(text),
        input_tokens: usage.prompt_token_count,
        output_tokens: usage.candidates_token_count,
        raw: None,
    })
}
