//! `POST /v1/images/generations` and `POST /v1/images/edits` (OpenAI's multipart form;
//! the uploaded files are stored as artifacts and the command names them).

use axum::{Json, body::Bytes, extract::State};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use switchyard_core::{
    Command, CommandInput, ErrorCode, ErrorInfo, EventBody, ImageRef, Kind, Tenant,
};
use switchyard_runtime::facade::ArtifactError;
use utoipa::ToSchema;

use super::{
    command,
    edit_form::{read_edit_form, wants_b64},
    error::{OaiError, OpenAiErrorBody},
    key_tenant, new_request_id, parse_body, submit, terminal, unix_now,
};
use crate::{caller::Caller, state::OpenAiState};

/// OpenAI's image generation body (the fields Switchyard reads).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ImageGeneration {
    /// What to draw.
    prompt: String,
    /// An instance name, a provider type, a model, or `auto`.
    #[serde(default)]
    model: Option<String>,
    /// How many images.
    #[serde(default)]
    n: Option<i64>,
    /// e.g. `1024x1024`.
    #[serde(default)]
    size: Option<String>,
    /// e.g. `hd`.
    #[serde(default)]
    quality: Option<String>,
    /// e.g. `vivid`.
    #[serde(default)]
    style: Option<String>,
    /// `url` (the default) or `b64_json`.
    #[serde(default)]
    response_format: Option<String>,
    /// e.g. `png`.
    #[serde(default)]
    output_format: Option<String>,
    /// The end user.
    #[serde(default)]
    user: Option<String>,
}

/// The answer of an image generation or edit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImagesAnswer {
    /// Unix seconds.
    created: i64,
    /// The images.
    data: Vec<ImageDatum>,
}

/// One image: its URL, or (with `response_format: b64_json`) its bytes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImageDatum {
    /// The prompt as the provider rewrote it.
    revised_prompt: Option<String>,
    /// Where `GET` fetches the bytes (`response_format: url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The bytes in base64 (`response_format: b64_json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<String>,
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", security(("tenant" = [])), request_body(content = ImageGeneration, description = "OpenAI's image generation body", content_type = "application/json"), responses((status = 200, description = "the images", body = ImagesAnswer), (status = 400, description = "invalid request or content filtered", body = OpenAiErrorBody), (status = 401, description = "missing or unknown tenant key", body = OpenAiErrorBody), (status = 429, description = "quota exceeded or rate limited", body = OpenAiErrorBody), (status = 502, description = "the provider failed", body = OpenAiErrorBody), (status = 503, description = "no provider, or the bus is down", body = OpenAiErrorBody)))]
pub(crate) async fn image_generations(
    State(state): State<OpenAiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<ImagesAnswer>, OaiError> {
    let tenant = key_tenant(&caller)?;
    let ask: ImageGeneration = parse_body(&body)?;
    let b64 = wants_b64(ask.response_format.as_deref())?;
    let input = CommandInput {
        prompt: Some(ask.prompt),
        n: ask.n,
        size: ask.size,
        quality: ask.quality,
        style: ask.style,
        output_format: ask.output_format,
        ..CommandInput::default()
    };
    let command = command(
        &state,
        &new_request_id(),
        &tenant,
        ask.user,
        Kind::ImageGenerate,
        input,
        ask.model.as_deref(),
    )?;
    images_answer(&state, command, b64).await
}

/// Runs an image command and answers its images, or the failure.
async fn images_answer(
    state: &OpenAiState,
    command: Command,
    b64: bool,
) -> Result<Json<ImagesAnswer>, OaiError> {
    let mut events = submit(state, command).await?;
    let output = match terminal(&mut events).await?.body {
        EventBody::Completed { output, .. } => output,
        EventBody::Failed { error, .. } => return Err((&error).into()),
        _ => return Err(OaiError::internal("no terminal event")),
    };
    let mut data = Vec::with_capacity(output.images.len());
    for image in output.images {
        let (url, b64_json) = if b64 {
            let (bytes, _) = state
                .gateway
                .artifact(&image.artifact_id)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "artifact read failed");
                    OaiError::internal("a stored image could not be read")
                })?;
            (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            )
        } else {
            (Some(image.url), None)
        };
        data.push(ImageDatum {
            revised_prompt: image.revised_prompt,
            url,
            b64_json,
        });
    }
    Ok(Json(ImagesAnswer {
        created: unix_now(),
        data,
    }))
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "openai", security(("tenant" = [])), request_body(content = String, description = "multipart/form-data as OpenAI takes it: image (or image[], up to 10 files), mask (file), prompt, model, n, size, quality, response_format (url | b64_json), output_format, user", content_type = "multipart/form-data"), responses((status = 200, description = "the images", body = ImagesAnswer), (status = 400, description = "invalid request (a file that is not an image, no image, no prompt …)", body = OpenAiErrorBody), (status = 401, description = "missing or unknown tenant key", body = OpenAiErrorBody), (status = 429, description = "quota exceeded or rate limited", body = OpenAiErrorBody), (status = 502, description = "the provider failed", body = OpenAiErrorBody), (status = 503, description = "no provider, or the bus is down", body = OpenAiErrorBody)))]
pub(crate) async fn image_edits(
    State(state): State<OpenAiState>,
    caller: Caller,
    mut form: axum::extract::Multipart,
) -> Result<Json<ImagesAnswer>, OaiError> {
    let tenant = key_tenant(&caller)?;
    // A tenant over its quota stores nothing: refused before any upload is read.
    if let Some(message) = state.gateway.quota_refusal(&tenant, 1).await? {
        return Err(OaiError::from(&ErrorInfo::new(
            ErrorCode::QuotaExceeded,
            message,
        )));
    }
    let (state_ref, tenant_ref) = (&state, &tenant);
    let ask = read_edit_form(&mut form, move |name, bytes| {
        store_upload(state_ref, tenant_ref, name, bytes)
    })
    .await?
    .ask()?;
    let command = command(
        &state,
        &new_request_id(),
        &tenant,
        ask.user,
        Kind::ImageEdit,
        ask.input,
        ask.model.as_deref(),
    )?;
    images_answer(&state, command, ask.b64).await
}

/// Stores an uploaded file of field `name` as an artifact its uploader owns (its own
/// commands may name it, and it may read it back with its key).
async fn store_upload(
    state: &OpenAiState,
    tenant: &Tenant,
    name: String,
    bytes: Bytes,
) -> Result<ImageRef, OaiError> {
    let meta = state
        .gateway
        .store_artifact(&bytes)
        .await
        .map_err(|e| match e {
            ArtifactError::NotAnImage(why) => {
                OaiError::bad_request(format!("{name}: not an image ({why})"))
            }
            e => {
                tracing::error!(error = %e, "artifact write failed");
                OaiError::internal("the image could not be stored")
            }
        })?;
    state
        .gateway
        .record_artifact_upload(&meta.id, tenant.as_str())
        .await?;
    Ok(ImageRef {
        artifact_id: Some(meta.id),
        ..ImageRef::default()
    })
}
