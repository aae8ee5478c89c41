//! Input images of `image.edit`, resolved to bytes once per request before any
//! attempt: a URL is downloaded (http/https only, size-capped), an artifact id is read
//! from the artifact store, base64 (raw or a `data:` URI) is decoded. Whatever the
//! source, the bytes must be an image (format read from the bytes, not trusted from
//! `mime`). A bad input fails the request with `invalid_request` and calls no provider.

use base64::Engine as _;
use switchyard_core::{Command, ErrorCode, ErrorInfo, ImageRef};

use crate::{
    artifacts::{ArtifactError, ArtifactStore, describe},
    providers::{InputImage, InputImages, wire},
};

/// Largest input image accepted from a URL.
pub const MAX_INPUT_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// Resolves `input.images` and `input.mask`.
///
/// # Errors
/// `invalid_request` naming the field that could not be read.
pub async fn resolve(
    command: &Command,
    artifacts: &ArtifactStore,
) -> Result<InputImages, ErrorInfo> {
    let mut resolved = InputImages::default();
    for (i, image) in command.input.images.iter().flatten().enumerate() {
        resolved
            .images
            .push(one(image, artifacts, &format!("input.images[{i}]")).await?);
    }
    if let Some(mask) = &command.input.mask {
        resolved.mask = Some(one(mask, artifacts, "input.mask").await?);
    }
    Ok(resolved)
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::InvalidRequest, format!("{field}: {message}"))
}

async fn one(
    image: &ImageRef,
    artifacts: &ArtifactStore,
    field: &str,
) -> Result<InputImage, ErrorInfo> {
    let bytes = if let Some(b64) = &image.b64 {
        let data = match b64.strip_prefix("data:") {
            Some(uri) => uri
                .split_once(";base64,")
                .map(|(_, data)| data)
                .ok_or_else(|| invalid(field, "a data: URI must be base64"))?,
            None => b64.as_str(),
        };
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| invalid(field, format!("b64 is not base64 ({e})")))?
    } else if let Some(id) = &image.artifact_id {
        match artifacts.get(id).await {
            Ok((bytes, _)) => bytes,
            Err(ArtifactError::NotFound(_) | ArtifactError::BadId(_)) => {
                return Err(invalid(field, format!("no artifact '{id}'")));
            }
            Err(e) => return Err(ErrorInfo::new(ErrorCode::Internal, format!("{field}: {e}"))),
        }
    } else if let Some(url) = &image.url {
        download(url, field).await?
    } else {
        return Err(invalid(field, "needs one of url, artifact_id or b64"));
    };
    let meta = describe(&bytes).map_err(|e| invalid(field, e))?;
    Ok(InputImage {
        bytes,
        mime: meta.mime,
    })
}

async fn download(url: &str, field: &str) -> Result<Vec<u8>, ErrorInfo> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(field, format!("bad url ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(field, "only http and https URLs are fetched"));
    }
    let response = wire::client().get(parsed).send().await.map_err(|e| {
        invalid(
            field,
            format!("cannot fetch {}: {}", wire::scrub_url(url), e.without_url()),
        )
    })?;
    if !response.status().is_success() {
        return Err(invalid(
            field,
            format!(
                "fetching {} answered HTTP {}",
                wire::scrub_url(url),
                response.status().as_u16()
            ),
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_INPUT_IMAGE_BYTES as u64)
    {
        return Err(invalid(field, "the image is larger than 20 MiB"));
    }
    let bytes = wire::read_limited(response, MAX_INPUT_IMAGE_BYTES + 1)
        .await
        .map_err(|e| invalid(field, format!("reading the image failed: {e}")))?;
    if bytes.len() > MAX_INPUT_IMAGE_BYTES {
        return Err(invalid(field, "the image is larger than 20 MiB"));
    }
    Ok(bytes)
}
