//! What image bytes are: hash, mime type and dimensions, read from the bytes
//! themselves (never from a caller's claim).

use sha2::{Digest, Sha256};

/// What the store knows about one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactMeta {
    /// The id: hex SHA-256 of the bytes.
    pub id: String,
    /// Hex SHA-256 (same as the id).
    pub sha256: String,
    /// e.g. `image/png`.
    pub mime: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

/// The bytes are not an image this gateway understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a recognisable image: {0}")]
pub struct NotAnImage(pub String);

/// Hash, mime type and dimensions of image bytes.
///
/// # Errors
/// [`NotAnImage`] when the format or size cannot be read.
pub fn describe(bytes: &[u8]) -> Result<ArtifactMeta, NotAnImage> {
    let mime = sniff_mime(bytes).ok_or_else(|| NotAnImage("unknown format".into()))?;
    let size = imagesize::blob_size(bytes).map_err(|e| NotAnImage(e.to_string()))?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    Ok(ArtifactMeta {
        id: sha256.clone(),
        sha256,
        mime: mime.to_owned(),
        bytes: bytes.len() as u64,
        width: u32::try_from(size.width).unwrap_or(u32::MAX),
        height: u32::try_from(size.height).unwrap_or(u32::MAX),
    })
}

fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else {
        None
    }
}
