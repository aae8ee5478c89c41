//! `POST /v1/images/generations` and `POST /v1/images/edits` (OpenAI's multipart form;
//! the uploaded files are stored as artifacts and the command names them).

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use switchyard_core::{Command, CommandInput, EventBody, ImageRef, Kind};

use super::{
    Follow, KeyTenant, OpenAiState, bad_request, command, failure_response, new_request_id,
    oai_error, parse_body, submit, terminal, unix_now,
};

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
pub(crate) async fn image_generations(
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
    let input = CommandInput {
        prompt: Some(ask.prompt),
        n: ask.n,
        size: ask.size,
        quality: ask.quality,
        style: ask.style,
        output_format: ask.output_format,
        ..CommandInput::default()
    };
    match command(
        &state,
        &new_request_id(),
        &tenant,
        ask.user,
        Kind::ImageGenerate,
        input,
        ask.model.as_deref(),
    ) {
        Ok(command) => images_answer(&state, command, b64).await,
        Err(response) => response,
    }
}

/// Runs an image command and answers `{created, data: [{url | b64_json,
/// revised_prompt}]}`, or the failure.
async fn images_answer(state: &OpenAiState, command: Command, b64: bool) -> Response {
    let mut events = match submit(state, command, Follow::Terminal).await {
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

#[utoipa::path(post, path = "/v1/images/edits", tag = "openai", security(("tenant" = [])), request_body(content = String, description = "multipart/form-data as OpenAI takes it: image (or image[], up to 10 files), mask (file), prompt, model, n, size, quality, response_format (url | b64_json), output_format, user", content_type = "multipart/form-data"), responses((status = 200, description = "{created, data: [{url | b64_json, revised_prompt}]}"), (status = 400, description = "invalid request (a file that is not an image, no image, no prompt …)"), (status = 401, description = "missing or unknown tenant key"), (status = 429, description = "quota exceeded or rate limited"), (status = 502, description = "the provider failed"), (status = 503, description = "no provider, or the bus is down")))]
pub(crate) async fn image_edits(
    State(state): State<OpenAiState>,
    Extension(KeyTenant(tenant)): Extension<KeyTenant>,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut images = Vec::new();
    let mut mask = None;
    let mut fields: std::collections::HashMap<String, String> = std::collections::HashMap::new();
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
                let reference = ImageRef {
                    artifact_id: Some(meta.id),
                    ..ImageRef::default()
                };
                if name == "mask" {
                    mask = Some(reference);
                } else {
                    images.push(reference);
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                fields.insert(name, text);
            }
        }
    }
    let text = |name: &str| fields.get(name).cloned();
    let b64 = match wants_b64(text("response_format").as_deref()) {
        Ok(b64) => b64,
        Err(response) => return response,
    };
    if images.is_empty() {
        return bad_request("image: at least one image file is required");
    }
    let n = match text("n").map(|n| n.parse::<i64>().map_err(|_| n)) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(n)) => return bad_request(format!("n: '{n}' is not a number")),
    };
    let input = CommandInput {
        prompt: Some(text("prompt").unwrap_or_default()),
        images: Some(images),
        mask,
        n,
        size: text("size"),
        quality: text("quality"),
        output_format: text("output_format"),
        ..CommandInput::default()
    };
    match command(
        &state,
        &new_request_id(),
        &tenant,
        text("user"),
        Kind::ImageEdit,
        input,
        text("model").as_deref(),
    ) {
        Ok(command) => images_answer(&state, command, b64).await,
        Err(response) => response,
    }
}
