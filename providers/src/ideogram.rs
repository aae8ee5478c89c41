//! `ideogram`: v3 generate (multipart, `Api-Key` header). Results are short-lived URLs,
//! downloaded at once; an item with `is_image_safe: false` is a moderation outcome.
//! Errors are classified by status (their bodies are not documented): 422 is the
//! safety check.

use reqwest::{StatusCode, multipart};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::{ErrorCode, Kind, ProviderConfig, ProviderType};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter,
    answer::{Answer, AnswerImage},
    options,
    wire::{Api, Authorize, KeyIn, Refined, scrub_raw, str_at},
};

/// Type-specific options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct IdeogramOptions {
    /// `TURBO`, `DEFAULT` or `QUALITY`.
    rendering_speed: Option<String>,
    /// `AUTO`, `ON` or `OFF`.
    magic_prompt: Option<String>,
}

/// The adapter of one Ideogram account.
#[derive(Debug)]
pub struct IdeogramAdapter {
    api: Api,
    options: IdeogramOptions,
}

impl IdeogramAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        Ok(Self {
            options: options(config)?,
            api: Api::for_config(config, "https://api.ideogram.ai", refine),
        })
    }
}

/// `{"error"}`, `{"detail"}` or `{"message"}`; 422 is the safety check.
pub(crate) fn refine(status: StatusCode, body: &Value) -> Refined {
    let message = str_at(body, "/error")
        .or_else(|| str_at(body, "/detail"))
        .or_else(|| str_at(body, "/message"))
        .map(str::to_owned);
    Refined {
        code: (status == StatusCode::UNPROCESSABLE_ENTITY).then_some(ErrorCode::ContentFiltered),
        message,
        retry_after_ms: None,
    }
}

#[derive(Debug, Deserialize)]
struct GenerateResponse {
    #[serde(default)]
    data: Vec<Datum>,
}

#[derive(Debug, Deserialize)]
struct Datum {
    url: Option<String>,
    #[serde(default = "yes")]
    is_image_safe: bool,
    seed: Option<i64>,
    prompt: Option<String>,
}

fn yes() -> bool {
    true
}

/// Reads a generate answer: the safe images' URLs (an unsafe one is a moderation
/// outcome, not an image).
pub(crate) fn read_generate(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (GenerateResponse, Value) = api.parse(body)?;
    let mut images = Vec::new();
    let mut unsafe_items = 0;
    for datum in parsed.data {
        match datum.url.filter(|u| !u.is_empty()) {
            Some(url) if datum.is_image_safe => {
                let mut image = AnswerImage::url(url);
                image.seed = datum.seed;
                image.revised_prompt = datum.prompt;
                images.push(image);
            }
            _ => unsafe_items += 1,
        }
    }
    if images.is_empty() {
        return Err(if unsafe_items > 0 {
            api.error(
                ErrorCode::ContentFiltered,
                format!("{unsafe_items} image(s) failed the safety check"),
            )
        } else {
            api.malformed(&"no images in `data`")
        });
    }
    Ok(Answer {
        images,
        text: None,
        input_tokens: 0,
        output_tokens: 0,
        raw: Some(scrub_raw(&raw)),
    })
}

impl ProviderAdapter for IdeogramAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Ideogram
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let api = self.api.clone();
        let options = self.options.clone();
        Box::pin(async move {
            if request.command.kind != Kind::ImageGenerate {
                return Err(AttemptError::new(
                    ErrorCode::InvalidRequest,
                    "ideogram only generates images",
                ));
            }
            let input = &request.command.input;
            let mut form = multipart::Form::new()
                .text("prompt", input.prompt.clone().unwrap_or_default())
                .text("num_images", request.command.image_count().to_string());
            if let Some(size) = &input.size {
                form = form.text("resolution", size.clone());
            } else if let Some(ratio) = &input.aspect_ratio {
                // Ideogram writes ratios with an x: 16x9.
                form = form.text("aspect_ratio", ratio.replace(':', "x"));
            }
            if let Some(seed) = input.seed {
                form = form.text("seed", seed.to_string());
            }
            if let Some(negative) = &input.negative_prompt {
                form = form.text("negative_prompt", negative.clone());
            }
            if let Some(style) = &input.style {
                form = form.text("style_type", style.to_uppercase());
            }
            let params = request.params_for(ProviderType::Ideogram);
            for (name, value) in [
                ("rendering_speed", &options.rendering_speed),
                ("magic_prompt", &options.magic_prompt),
            ] {
                if let Some(value) = value
                    && !params.contains_key(name)
                {
                    form = form.text(name, value.clone());
                }
            }
            for (key, value) in params {
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                form = form.text(key, text);
            }
            let http = api
                .client
                .post(api.url("/v1/ideogram-v3/generate"))
                .auth(&api, KeyIn::Header("Api-Key"))?
                .multipart(form);
            let response = api.send(http).await?;
            read_generate(&api, &api.body(response).await?)?
                .fetch(&api)
                .await
        })
    }

    /// Ideogram has no free read endpoint: an empty generate request is refused with
    /// 400 (free) when the key is good, and with 401/403 when it is not.
    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        Box::pin(async move {
            let http = api
                .client
                .post(api.url("/v1/ideogram-v3/generate"))
                .auth(&api, KeyIn::Header("Api-Key"))?
                .multipart(multipart::Form::new());
            api.probe(http).await
        })
    }
}
