//! The artifact store: images, keyed by the SHA-256 of their bytes, with mime type,
//! size and dimensions read from the image itself. Local files under `artifacts.url`
//! (`file://DIR`); object stores come with the providers issue.
//!
//! Writes go to a temporary file and are renamed into place, so a reader never sees
//! a half-written artifact, and storing the same bytes twice is a no-op.

use std::path::{Path, PathBuf};

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

/// Why an artifact could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The bytes are not an image this store understands.
    #[error("not a recognisable image: {0}")]
    NotAnImage(String),
    /// No artifact with this id.
    #[error("artifact {0} not found")]
    NotFound(String),
    /// The id is not a hex SHA-256.
    #[error("'{0}' is not an artifact id")]
    BadId(String),
    /// The artifacts URL is not usable.
    #[error("unsupported artifacts url '{0}' (expected file://DIR)")]
    BadUrl(String),
    /// The file system failed.
    #[error("artifact store i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Local-file artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// A store for `file://DIR` (created if missing).
    ///
    /// # Errors
    /// [`ArtifactError::BadUrl`] or [`ArtifactError::Io`].
    pub fn open(url: &str) -> Result<Self, ArtifactError> {
        let dir = url
            .strip_prefix("file://")
            .ok_or_else(|| ArtifactError::BadUrl(url.to_owned()))?;
        let root = PathBuf::from(dir);
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// Where the store keeps its files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, id: &str) -> Result<PathBuf, ArtifactError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ArtifactError::BadId(id.to_owned()));
        }
        Ok(self.root.join(&id[..2]).join(id))
    }

    /// Stores image bytes (once per content) and returns their metadata.
    ///
    /// # Errors
    /// [`ArtifactError::NotAnImage`] or [`ArtifactError::Io`].
    pub async fn put(&self, bytes: &[u8]) -> Result<ArtifactMeta, ArtifactError> {
        let meta = describe(bytes)?;
        let path = self.path_of(&meta.id)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(meta);
        }
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(meta)
    }

    /// The bytes and metadata of an artifact.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`], [`ArtifactError::BadId`] or [`ArtifactError::Io`].
    pub async fn get(&self, id: &str) -> Result<(Vec<u8>, ArtifactMeta), ArtifactError> {
        let path = self.path_of(id)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(id.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let meta = describe(&bytes)?;
        Ok((bytes, meta))
    }
}

/// Hash, mime type and dimensions of image bytes.
///
/// # Errors
/// [`ArtifactError::NotAnImage`] when the format or size cannot be read.
pub fn describe(bytes: &[u8]) -> Result<ArtifactMeta, ArtifactError> {
    let mime =
        sniff_mime(bytes).ok_or_else(|| ArtifactError::NotAnImage("unknown format".into()))?;
    let size = imagesize::blob_size(bytes).map_err(|e| ArtifactError::NotAnImage(e.to_string()))?;
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
