//! Input images of `image.edit`, resolved to bytes once per request before any
//! attempt: a URL is fetched through the outbound guard (http/https only, never an
//! internal address unless the operator allows it, bounded in time, in bytes per image
//! and per command, and in fetches at once), an artifact id is read
//! from the artifact store, base64 (raw or a `data:` URI) is decoded. Whatever the
//! source, the bytes must be an image (format read from the bytes, not trusted from
//! `mime`). A bad input fails the request with `invalid_request` and calls no provider.

use base64::Engine as _;
use switchyard_core::{Command, ErrorCode, ErrorInfo, ImageRef};

use crate::{
    artifacts::{ArtifactError, ArtifactStore, describe},
    guard::{Budget, Guard},
    providers::{InputImage, InputImages},
};

/// Resolves `input.images` and `input.mask`.
///
/// # Errors
/// `invalid_request` naming the field that could not be read.
pub async fn resolve(
    command: &Command,
    artifacts: &ArtifactStore,
    guard: &Guard,
) -> Result<InputImages, ErrorInfo> {
    let mut resolved = InputImages::default();
    let mut budget = guard.budget();
    let mut sources = Sources {
        artifacts,
        guard,
        budget: &mut budget,
    };
    for (i, image) in command.input.images.iter().flatten().enumerate() {
        resolved
            .images
            .push(sources.one(image, &format!("input.images[{i}]")).await?);
    }
    if let Some(mask) = &command.input.mask {
        resolved.mask = Some(sources.one(mask, "input.mask").await?);
    }
    Ok(resolved)
}

/// Where input bytes come from, and what the command may still fetch.
struct Sources<'a> {
    artifacts: &'a ArtifactStore,
    guard: &'a Guard,
    budget: &'a mut Budget,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::InvalidRequest, format!("{field}: {message}"))
}

impl Sources<'_> {
    async fn one(&mut self, image: &ImageRef, field: &str) -> Result<InputImage, ErrorInfo> {
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
            match self.artifacts.get(id).await {
                Ok((bytes, _)) => bytes,
                Err(ArtifactError::NotFound(_) | ArtifactError::BadId(_)) => {
                    return Err(invalid(field, format!("no artifact '{id}'")));
                }
                Err(e) => return Err(ErrorInfo::new(ErrorCode::Internal, format!("{field}: {e}"))),
            }
        } else if let Some(url) = &image.url {
            self.guard
                .get(url, self.budget)
                .await
                .map_err(|e| invalid(field, e))?
                .bytes
        } else {
            return Err(invalid(field, "needs one of url, artifact_id or b64"));
        };
        let meta = describe(&bytes).map_err(|e| invalid(field, e))?;
        Ok(InputImage {
            bytes,
            mime: meta.mime,
        })
    }
}
