//! `seedream`: Volcengine Ark images generations (Doubao Seedream 4.0). Input images
//! for image-to-image travel inside the JSON body as data URIs; sizes are `WxH` or the
//! tokens `1K`/`2K`/`4K`; `n > 1` asks for a sequential set. Results are 24-hour TOS
//! URLs, downloaded at once. Ark rejects unknown fields, so only documented ones are
//! sent (plus the command's `params`).

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::{ErrorCode, Kind, ProviderConfig, ProviderType};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter,
    answer::{Answer, AnswerImage},
    decode_b64, options,
    wire::{Api, Authorize, KeyIn, Refined, scrub_raw, str_at},
};

/// Type-specific options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SeedreamOptions {
    /// Add the "AI生成" mark (the API's default is true).
    watermark: Option<bool>,
    /// `url` (default) or `b64_json`.
    response_format: String,
}

impl Default for SeedreamOptions {
    fn default() -> Self {
        Self {
            watermark: None,
            response_format: "url".to_owned(),
        }
    }
}

/// The adapter of one Ark account.
#[derive(Debug)]
pub struct SeedreamAdapter {
    api: Api,
    model: String,
    options: SeedreamOptions,
}

impl SeedreamAdapter {
    /// An adapter for a config.
    ///
    /// # Errors
    /// Bad options.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        let options: SeedreamOptions = options(config)?;
        if !matches!(options.response_format.as_str(), "url" | "b64_json") {
            return Err(AdapterBuildError {
                provider: ProviderType::Seedream,
                reason: "options.response_format must be 'url' or 'b64_json'".to_owned(),
            });
        }
        Ok(Self {
            api: Api::for_config(config, "https://ark.cn-beijing.volces.com/api/v3", refine),
            model: config
                .spec
                .model
                .clone()
                .unwrap_or_else(|| "doubao-seedream-4-0-250828".to_owned()),
            options,
        })
    }
}

/// `{"error": {"code": "InvalidParameter", "message", "param", "type"}}`.
pub(crate) fn refine(_status: StatusCode, body: &Value) -> Refined {
    let code = str_at(body, "/error/code").unwrap_or_default();
    Refined {
        code: classify_code(code),
        message: str_at(body, "/error/message").map(str::to_owned),
        retry_after_ms: None,
    }
}

fn classify_code(code: &str) -> Option<ErrorCode> {
    if code.contains("SensitiveContentDetected") {
        Some(ErrorCode::ContentFiltered)
    } else if matches!(
        code,
        "QuotaExceeded" | "SetLimitExceeded" | "AccountOverdueError"
    ) {
        // Waiting does not fix these; another account may.
        Some(ErrorCode::Unauthorized)
    } else if code == "ServerOverloaded" {
        Some(ErrorCode::ProviderUnavailable)
    } else {
        None
    }
}

#[derive(Debug, Deserialize)]
struct GenerateResponse {
    #[serde(default)]
    data: Vec<Datum>,
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Datum {
    url: Option<String>,
    b64_json: Option<String>,
    error: Option<DatumError>,
}

#[derive(Debug, Deserialize)]
struct DatumError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    output_tokens: u64,
}

/// Reads a generations answer: its images (inline or URLs), or the first item's error
/// when none came.
pub(crate) fn read_generate(api: &Api, body: &[u8]) -> Result<Answer, AttemptError> {
    let (parsed, raw): (GenerateResponse, Value) = api.parse(body)?;
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for datum in parsed.data {
        images.push(match (datum.b64_json, datum.url, datum.error) {
            (Some(b64), _, _) => AnswerImage::inline(decode_b64(api, &b64)?),
            (None, Some(url), _) => AnswerImage::url(url),
            (None, None, Some(error)) => {
                failures.push(error);
                continue;
            }
            (None, None, None) => return Err(api.malformed(&"an item without url")),
        });
    }
    if images.is_empty() {
        return Err(match failures.first() {
            Some(first) => api.error(
                classify_code(&first.code).unwrap_or(ErrorCode::ProviderError),
                format!("{}: {}", first.code, first.message),
            ),
            None => api.malformed(&"no images in `data`"),
        });
    }
    Ok(Answer {
        images,
        text: None,
        input_tokens: 0,
        output_tokens: parsed.usage.map_or(0, |u| u.output_tokens),
        raw: Some(scrub_raw(&raw)),
    })
}

impl ProviderAdapter for SeedreamAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Seedream
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let body = self.body(&request);
        let api = self.api.clone();
        Box::pin(async move {
            let http = api
                .client
                .post(api.url("/images/generations"))
                .auth(&api, KeyIn::Bearer)?
                .json(&body?);
            let response = api.send(http).await?;
            read_generate(&api, &api.body(response).await?)?
                .fetch(&api)
                .await
        })
    }

    /// Ark has no free read endpoint for images: an empty generation request is
    /// refused with 400 `MissingParameter` when the key is good.
    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let api = self.api.clone();
        Box::pin(async move {
            let http = api
                .client
                .post(api.url("/images/generations"))
                .auth(&api, KeyIn::Bearer)?
                .json(&json!({}));
            api.probe(http).await
        })
    }
}

impl SeedreamAdapter {
    fn body(&self, request: &AdapterRequest) -> Result<Map<String, Value>, AttemptError> {
        let command = &request.command;
        let input = &command.input;
        if command.kind == Kind::TextGenerate {
            return Err(AttemptError::new(
                ErrorCode::InvalidRequest,
                "seedream makes images only",
            ));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "prompt".into(),
            json!(input.prompt.as_deref().unwrap_or_default()),
        );
        if let Some(size) = &input.size {
            body.insert("size".into(), json!(size));
        }
        let images: Vec<String> = request.inputs.images.iter().map(|i| i.data_uri()).collect();
        match images.len() {
            0 if command.kind == Kind::ImageEdit => {
                return Err(AttemptError::new(
                    ErrorCode::InvalidRequest,
                    "image.edit needs an input image",
                ));
            }
            0 => {}
            1 => {
                body.insert("image".into(), json!(images[0]));
            }
            _ => {
                body.insert("image".into(), json!(images));
            }
        }
        let n = command.image_count();
        if n > 1 {
            body.insert("sequential_image_generation".into(), json!("auto"));
            body.insert(
                "sequential_image_generation_options".into(),
                json!({"max_images": n}),
            );
        }
        if let Some(seed) = input.seed {
            body.insert("seed".into(), json!(seed));
        }
        body.insert(
            "response_format".into(),
            json!(self.options.response_format),
        );
        if let Some(watermark) = self.options.watermark {
            body.insert("watermark".into(), json!(watermark));
        }
        body.extend(request.params_for(ProviderType::Seedream));
        Ok(body)
    }
}
