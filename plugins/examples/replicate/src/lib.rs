//! Replicate (https://replicate.com) as a Switchyard plugin: image generation through
//! the predictions API, which is asynchronous. The plugin creates a prediction, polls
//! it until it ends (reporting progress), then downloads the output images — all
//! through the host's HTTP import, so the host's allowlist, caps and deadline apply.
//!
//! Config: `model` is `owner/name` (an official model: `POST /v1/models/{model}/predictions`)
//! or `owner/name:version` (`POST /v1/predictions`); `base_url` defaults to
//! `https://api.replicate.com`; `options.allowed_hosts` must list the API host and the
//! output host (`api.replicate.com`, `replicate.delivery`, `*.replicate.delivery`);
//! `options.poll_interval_ms` (default 1000).

wit_bindgen::generate!({ path: "../../wit", world: "provider" });

use serde_json::{Value, json};
use switchyard::provider::{
    host::{self, HttpRequest, HttpResponse},
    types::{ErrorCode, Image, Kind},
};

struct Replicate;

fn error(code: ErrorCode, message: impl Into<String>) -> ProviderError {
    ProviderError {
        code,
        message: message.into(),
        retry_after_ms: None,
    }
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn send(method: &str, url: &str, body: Option<&Value>) -> Result<HttpResponse, ProviderError> {
    let mut headers = vec![(
        "authorization".to_string(),
        "Bearer {{api_key}}".to_string(),
    )];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let request = HttpRequest {
        method: method.into(),
        url: url.into(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    };
    let response = host::http_send(&request)
        .map_err(|e| error(ErrorCode::ProviderUnavailable, format!("replicate: {e}")))?;
    if (200..300).contains(&response.status) {
        return Ok(response);
    }
    // {"title": "...", "detail": "...", "status": 422}
    let parsed: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let detail = parsed["detail"]
        .as_str()
        .or(parsed["title"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect()
        });
    let code = match response.status {
        400 | 404 | 409 | 413 | 422 => ErrorCode::InvalidRequest,
        401 | 402 | 403 => ErrorCode::Unauthorized,
        429 => ErrorCode::RateLimited,
        500..=599 => ErrorCode::ProviderUnavailable,
        _ => ErrorCode::ProviderError,
    };
    let retry_after_ms = header(&response, "retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64);
    Err(ProviderError {
        code,
        message: format!("replicate answered {}: {detail}", response.status),
        retry_after_ms: if code == ErrorCode::RateLimited {
            retry_after_ms
        } else {
            None
        },
    })
}

fn json_of(response: &HttpResponse) -> Result<Value, ProviderError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        error(
            ErrorCode::ProviderError,
            format!("replicate sent a malformed answer: {e}"),
        )
    })
}

impl Guest for Replicate {
    fn describe() -> Descriptor {
        Descriptor {
            name: "replicate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kinds: vec![Kind::ImageGenerate],
            options_schema: json!({
                "type": "object",
                "properties": {
                    "allowed_hosts": {"type": "array", "items": {"type": "string"}},
                    "poll_interval_ms": {"type": "integer", "minimum": 1}
                }
            })
            .to_string(),
        }
    }

    fn generate(request: Request) -> Result<Response, ProviderError> {
        if request.kind != Kind::ImageGenerate {
            return Err(error(
                ErrorCode::InvalidRequest,
                "the replicate plugin only generates images",
            ));
        }
        let options: Value = serde_json::from_str(&request.options_json).unwrap_or(Value::Null);
        let params: Value = serde_json::from_str(&request.params_json).unwrap_or(Value::Null);
        let poll_ms = options["poll_interval_ms"].as_u64().unwrap_or(1000).max(1);
        let base = request
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.replicate.com".into());
        let base = base.trim_end_matches('/');
        let model = request.model.clone().ok_or_else(|| {
            error(
                ErrorCode::ProviderError,
                "the config needs a model (owner/name)",
            )
        })?;
        let mut input = json!({"prompt": request.prompt.clone().unwrap_or_default(), "num_outputs": request.n.max(1)});
        if let Some(ratio) = &request.aspect_ratio {
            input["aspect_ratio"] = json!(ratio);
        }
        if let Some(seed) = request.seed {
            input["seed"] = json!(seed);
        }
        if let Some(extra) = params.as_object() {
            for (k, v) in extra {
                input[k.as_str()] = v.clone();
            }
        }
        let (url, body) = match model.split_once(':') {
            Some((_, version)) => (
                format!("{base}/v1/predictions"),
                json!({"version": version, "input": input}),
            ),
            None => (
                format!("{base}/v1/models/{model}/predictions"),
                json!({"input": input}),
            ),
        };
        let mut prediction = json_of(&send("POST", &url, Some(&body))?)?;
        host::progress(0.0);
        let mut polls = 0u32;
        loop {
            match prediction["status"].as_str().unwrap_or("") {
                "succeeded" => break,
                "failed" | "canceled" => {
                    let message = prediction["error"]
                        .as_str()
                        .unwrap_or("the prediction failed")
                        .to_string();
                    let code = if message.to_ascii_lowercase().contains("nsfw") {
                        ErrorCode::ContentFiltered
                    } else {
                        ErrorCode::ProviderError
                    };
                    return Err(error(code, format!("replicate: {message}")));
                }
                "starting" | "processing" => {
                    if prediction["status"] == "processing" {
                        host::progress(0.5);
                    }
                    host::sleep_ms(poll_ms);
                    polls += 1;
                    let get = prediction["urls"]["get"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| {
                            format!(
                                "{base}/v1/predictions/{}",
                                prediction["id"].as_str().unwrap_or_default()
                            )
                        });
                    prediction = json_of(&send("GET", &get, None)?)?;
                }
                other => {
                    return Err(error(
                        ErrorCode::ProviderError,
                        format!("replicate: unknown status '{other}'"),
                    ));
                }
            }
        }
        host::log("debug", &format!("prediction done after {polls} polls"));
        let urls: Vec<String> = match &prediction["output"] {
            Value::String(url) => vec![url.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if urls.is_empty() {
            return Err(error(
                ErrorCode::ProviderError,
                "replicate: the prediction has no output",
            ));
        }
        let mut images = Vec::with_capacity(urls.len());
        for url in urls {
            let response = host::http_send(&HttpRequest {
                method: "GET".into(),
                url: url.clone(),
                headers: Vec::new(),
                body: Vec::new(),
            })
            .map_err(|e| {
                error(
                    ErrorCode::ProviderUnavailable,
                    format!("replicate output: {e}"),
                )
            })?;
            if response.status != 200 {
                return Err(error(
                    ErrorCode::ProviderError,
                    format!(
                        "replicate output could not be downloaded: HTTP {}",
                        response.status
                    ),
                ));
            }
            images.push(Image {
                bytes: response.body,
                seed: request.seed,
                revised_prompt: None,
            });
        }
        Ok(Response {
            images,
            text: None,
            input_tokens: 0,
            output_tokens: 0,
        })
    }

    fn health_check() -> Result<(), ProviderError> {
        // The cheapest authenticated call: who am I. Uses the public host; a config
        // with another base_url is checked by its first request instead.
        send("GET", "https://api.replicate.com/v1/account", None).map(|_| ())
    }
}

export!(Replicate);
