//! `stability`: v2beta Stable Image (`core`, `ultra`, `sd3*` models; multipart, one
//! image per call) and v1 engines (`stable-diffusion-*` models; JSON text-to-image,
//! multipart image-to-image). Filtered images come back blurred with
//! `CONTENT_FILTERED`; they are dropped, and a request left with none is
//! `content_filtered`.

use reqwest::{StatusCode, multipart};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{ErrorCode, Kind, ProviderConfig, ProviderType};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, InputImage,
    ProviderAdapter,
    answer::{Answer, AnswerImage},
    decode_b64, options,
    wire::{Api, Authorize, KeyIn, Refined, scrub_raw, str_at},
};

/// Type-specific options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StabilityOptions {
    /// `style_preset` when the command gives no `style`.
    style_preset: Option<String>,
    /// Image-to-image strength (0–1) when `params.strength` is not given.
    strength: Option<f64>,
}

/// The adapter of one Stability account.
#[derive(Debug)]
pub struct StabilityAdapter {
    api: Api,
    model: String,
    options: StabilityOptions,
}

impl StabilityAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        let options: StabilityOptions = options(config)?;
        if options.strength.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
            return Err(AdapterBuildError {
                provider: ProviderType::Stability,
                reason: "options.strength must be 0–1".to_owned(),
            });
        }
        Ok(Self {
            options,
            api: Api::for_config(config, "https://api.stability.ai", refine),
            model: config
                .spec
                .model
                .clone()
                .unwrap_or_else(|| "core".to_owned()),
        })
    }

    fn is_v1(&self) -> bool {
        self.model.starts_with("stable-diffusion")
    }
}

/// v1 `{"id","name","message"}`, v2beta `{"id","name","errors":[…]}`.
pub(crate) fn refine(status: StatusCode, body: &Value) -> Refined {
    let name = str_at(body, "/name").unwrap_or_default();
    let message = str_at(body, "/message").map(str::to_owned).or_else(|| {
        body.get("errors").and_then(Value::as_array).map(|errors| {
            errors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
    });
    let code = match name {
        "content_moderation" | "invalid_prompts" => Some(ErrorCode::ContentFiltered),
        _ if status == StatusCode::FORBIDDEN && name.contains("moderation") => {
            Some(ErrorCode::ContentFiltered)
        }
        _ => None,
    };
    Refined {
        code,
        message,
        retry_after_ms: None,
    }
}

#[derive(Debug, Deserialize)]
struct V2Response {
    image: Option<String>,
    finish_reason: Option<String>,
    seed: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct V1Response {
    #[serde(default)]
    artifacts: Vec<V1Artifact>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1Artifact {
    base64: Option<String>,
    seed: Option<i64>,
    finish_reason: Option<String>,
}

impl ProviderAdapter for StabilityAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Stability
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let api = self.api.clone();
        let model = self.model.clone();
        let v1 = self.is_v1();
        let options = self.options.clone();
        Box::pin(async move {
            if request.command.kind == Kind::TextGenerate {
                return Err(AttemptError::new(
                    ErrorCode::InvalidRequest,
                    "stability makes images only",
                ));
            }
            if v1 {
                v1_generate(&api, &model, &options, &request).await
            } else {
                v2_generate(&api, &model, &options, &request).await
            }
        })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        Box::pin(async move {
            let request = api
                .client
                .get(api.url("/v1/user/account"))
                .auth(&api, KeyIn::Bearer)?;
            api.send(request).await?;
            Ok(())
        })
    }
}

fn text_field(form: multipart::Form, name: &str, value: impl ToString) -> multipart::Form {
    form.text(name.to_owned(), value.to_string())
}

fn image_part(image: &InputImage, stem: &str) -> Result<multipart::Part, AttemptError> {
    multipart::Part::bytes(image.bytes.clone())
        .file_name(image.file_name(stem))
        .mime_str(&image.mime)
        .map_err(|e| AttemptError::new(ErrorCode::InvalidRequest, format!("input image: {e}")))
}

fn param_text(params: &Map<String, Value>, form: multipart::Form) -> multipart::Form {
    params.iter().fold(form, |form, (k, v)| {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        form.text(k.clone(), text)
    })
}

async fn v2_generate(
    api: &Api,
    model: &str,
    options: &StabilityOptions,
    request: &AdapterRequest,
) -> Result<AdapterOutput, AttemptError> {
    let command = &request.command;
    let input = &command.input;
    let edit = command.kind == Kind::ImageEdit;
    let (path, sd3) = match model {
        "ultra" | "core" => (format!("/v2beta/stable-image/generate/{model}"), false),
        m if m.starts_with("sd3") => ("/v2beta/stable-image/generate/sd3".to_owned(), true),
        other => {
            return Err(api.error(
                ErrorCode::ProviderError,
                format!("unknown model '{other}' (use core, ultra, sd3.5-* or a v1 engine)"),
            ));
        }
    };
    if edit && model == "core" {
        return Err(AttemptError::new(
            ErrorCode::InvalidRequest,
            "stability core has no image-to-image; use ultra or sd3",
        ));
    }
    let mut params = request.params_for(ProviderType::Stability);
    let strength = params
        .remove("strength")
        .unwrap_or(json!(options.strength.unwrap_or(0.6)));
    let style = input.style.as_ref().or(options.style_preset.as_ref());
    let mut images = Vec::new();
    let mut filtered = 0;
    let mut raw = Vec::new();
    // v2beta makes one image per call.
    for i in 0..command.image_count() {
        let mut form = text_field(
            multipart::Form::new(),
            "prompt",
            input.prompt.as_deref().unwrap_or_default(),
        );
        if let Some(negative) = &input.negative_prompt {
            form = text_field(form, "negative_prompt", negative);
        }
        if let Some(ratio) = &input.aspect_ratio
            && !edit
        {
            form = text_field(form, "aspect_ratio", ratio);
        }
        if let Some(seed) = input.seed {
            form = text_field(form, "seed", seed + i64::from(i));
        }
        if let Some(format) = &input.output_format {
            form = text_field(form, "output_format", format);
        }
        if let Some(style) = style {
            form = text_field(form, "style_preset", style);
        }
        if sd3 {
            form = text_field(form, "model", model);
        }
        if edit {
            let first = request.inputs.images.first().ok_or_else(|| {
                AttemptError::new(ErrorCode::InvalidRequest, "image.edit needs an input image")
            })?;
            form = form.part("image", image_part(first, "image")?);
            form = text_field(form, "strength", strength.to_string());
            if sd3 {
                form = text_field(form, "mode", "image-to-image");
            }
        }
        form = param_text(&params, form);
        let http = api
            .client
            .post(api.url(&path))
            .auth(api, KeyIn::Bearer)?
            .header("accept", "application/json")
            .multipart(form);
        let response = api.send(http).await?;
        let (image, value) = read_v2(api, &api.body(response).await?)?;
        raw.push(value);
        match image {
            Some(image) => images.push(image),
            None => filtered += 1,
        }
    }
    finish(api, images, filtered, Value::Array(raw))?
        .fetch(api)
        .await
}

/// Reads one v2beta answer: its image, or none when it came back `CONTENT_FILTERED`;
/// and the answer, scrubbed.
pub(crate) fn read_v2(
    api: &Api,
    body: &[u8],
) -> Result<(Option<AnswerImage>, Value), AttemptError> {
    let (parsed, value): (V2Response, Value) = api.parse(body)?;
    let raw = scrub_raw(&value);
    if parsed.finish_reason.as_deref() == Some("CONTENT_FILTERED") {
        return Ok((None, raw));
    }
    let data = parsed
        .image
        .ok_or_else(|| api.malformed(&"no `image` in the answer"))?;
    let mut image = AnswerImage::inline(decode_b64(api, &data)?);
    image.seed = parsed.seed;
    Ok((Some(image), raw))
}

async fn v1_generate(
    api: &Api,
    engine: &str,
    options: &StabilityOptions,
    request: &AdapterRequest,
) -> Result<AdapterOutput, AttemptError> {
    let command = &request.command;
    let input = &command.input;
    let prompt = input.prompt.as_deref().unwrap_or_default();
    let mut params = request.params_for(ProviderType::Stability);
    let http = if command.kind == Kind::ImageEdit {
        let first = request.inputs.images.first().ok_or_else(|| {
            AttemptError::new(ErrorCode::InvalidRequest, "image.edit needs an input image")
        })?;
        let strength = params
            .remove("strength")
            .unwrap_or(json!(options.strength.unwrap_or(0.35)));
        let mut form = multipart::Form::new()
            .part("init_image", image_part(first, "init")?)
            .text("init_image_mode", "IMAGE_STRENGTH")
            .text("image_strength", strength.to_string())
            .text("text_prompts[0][text]", prompt.to_owned())
            .text("text_prompts[0][weight]", "1")
            .text("samples", command.image_count().to_string());
        if let Some(negative) = &input.negative_prompt {
            form = form
                .text("text_prompts[1][text]", negative.clone())
                .text("text_prompts[1][weight]", "-1");
        }
        if let Some(seed) = input.seed {
            form = form.text("seed", seed.to_string());
        }
        form = param_text(&params, form);
        api.client
            .post(api.url(&format!("/v1/generation/{engine}/image-to-image")))
            .multipart(form)
    } else {
        let mut prompts = vec![json!({"text": prompt, "weight": 1})];
        if let Some(negative) = &input.negative_prompt {
            prompts.push(json!({"text": negative, "weight": -1}));
        }
        let mut body = Map::new();
        body.insert("text_prompts".into(), Value::Array(prompts));
        body.insert("samples".into(), json!(command.image_count()));
        if let Some((w, h)) = input.size.as_deref().and_then(|s| s.split_once('x'))
            && let (Ok(w), Ok(h)) = (w.parse::<u32>(), h.parse::<u32>())
        {
            body.insert("width".into(), json!(w));
            body.insert("height".into(), json!(h));
        }
        if let Some(seed) = input.seed {
            body.insert("seed".into(), json!(seed));
        }
        if let Some(style) = input.style.as_ref().or(options.style_preset.as_ref()) {
            body.insert("style_preset".into(), json!(style));
        }
        body.extend(params);
        api.client
            .post(api.url(&format!("/v1/generation/{engine}/text-to-image")))
            .json(&body)
    };
    let http = http
        .auth(api, KeyIn::Bearer)?
        .header("accept", "application/json");
    let response = api.send(http).await?;
    read_v1(api, &api.body(response).await?)?.fetch(api).await
}

/// Reads a v1 answer: its artifacts, filtered ones dropped.
pub(crate) fn read_v1(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, value): (V1Response, Value) = api.parse(body)?;
    let mut images = Vec::new();
    let mut filtered = 0;
    for artifact in parsed.artifacts {
        match artifact.finish_reason.as_deref() {
            Some("CONTENT_FILTERED") => filtered += 1,
            Some("ERROR") => {}
            _ => {
                let data = artifact
                    .base64
                    .ok_or_else(|| api.malformed(&"an artifact without `base64`"))?;
                let mut image = AnswerImage::inline(decode_b64(api, &data)?);
                image.seed = artifact.seed;
                images.push(image);
            }
        }
    }
    finish(api, images, filtered, scrub_raw(&value))
}

/// The answer of a request's calls: their images, or why there is none.
pub(crate) fn finish(
    api: &Api,
    images: Vec<AnswerImage>,
    filtered: usize,
    raw: Value,
) -> Result<Answer, AttemptError> {
    if images.is_empty() {
        return Err(if filtered > 0 {
            api.error(
                ErrorCode::ContentFiltered,
                format!("{filtered} image(s) came back CONTENT_FILTERED"),
            )
        } else {
            api.malformed(&"no images in the answer")
        });
    }
    Ok(Answer {
        images,
        text: None,
        input_tokens: 0,
        output_tokens: 0,
        raw: Some(raw),
    })
}
