//! The artifact store: images, keyed by the SHA-256 of their bytes, with mime type,
//! size and dimensions read from the image itself. Backed by the `object_store` crate:
//! local files (`file://DIR`, the default), S3 (`s3://bucket/prefix`), Google Cloud
//! Storage (`gs://bucket/prefix`), Azure Blob Storage (`az://container/prefix`) and
//! memory (`memory://`, for tests). Cloud credentials come from the environment
//! variables each SDK documents (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, …), never from the config file.
//!
//! Local writes go to a temporary file and are renamed into place, so a reader never
//! sees a half-written artifact; storing the same bytes twice is a no-op.

use std::{path::PathBuf, sync::Arc};

use object_store::{
    GetOptions, ObjectStore, PutOptions, PutPayload, aws::AmazonS3Builder,
    azure::MicrosoftAzureBuilder, gcp::GoogleCloudStorageBuilder, local::LocalFileSystem,
    memory::InMemory, path::Path as ObjectPath,
};

pub use switchyard_providers::image::{ArtifactMeta, NotAnImage, describe};

/// Why an artifact could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The bytes are not an image this store understands.
    #[error(transparent)]
    NotAnImage(#[from] NotAnImage),
    /// No artifact with this id.
    #[error("artifact {0} not found")]
    NotFound(String),
    /// The id is not a hex SHA-256.
    #[error("'{0}' is not an artifact id")]
    BadId(String),
    /// The artifacts URL is not usable.
    #[error("unsupported artifacts url '{0}': {1}")]
    BadUrl(String, String),
    /// The file system failed.
    #[error("artifact store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The object store failed.
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
}

/// The artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl ArtifactStore {
    /// A store for `file://DIR` (created if missing), `s3://`, `gs://`, `az://` or
    /// `memory://` URLs.
    ///
    /// # Errors
    /// [`ArtifactError::BadUrl`] or [`ArtifactError::Io`].
    pub fn open(url: &str) -> Result<Self, ArtifactError> {
        let bad =
            |why: &dyn std::fmt::Display| ArtifactError::BadUrl(url.to_owned(), why.to_string());
        let (store, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(dir) = url.strip_prefix("file://") {
                let root = PathBuf::from(dir);
                std::fs::create_dir_all(&root)?;
                (
                    Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(|e| bad(&e))?),
                    String::new(),
                )
            } else if url == "memory://" {
                (Arc::new(InMemory::new()), String::new())
            } else {
                let parsed = url::Url::parse(url).map_err(|e| bad(&e))?;
                // The cloud clients speak TLS through reqwest.
                switchyard_providers::wire::install_tls();
                let prefix = parsed.path().trim_matches('/').to_owned();
                let store: Arc<dyn ObjectStore> = match parsed.scheme() {
                    "s3" => Arc::new(
                        AmazonS3Builder::from_env()
                            .with_url(url)
                            .build()
                            .map_err(|e| bad(&e))?,
                    ),
                    "gs" => Arc::new(
                        GoogleCloudStorageBuilder::from_env()
                            .with_url(url)
                            .build()
                            .map_err(|e| bad(&e))?,
                    ),
                    "az" | "azure" | "abfs" | "abfss" => Arc::new(
                        MicrosoftAzureBuilder::from_env()
                            .with_url(url)
                            .build()
                            .map_err(|e| bad(&e))?,
                    ),
                    _ => return Err(bad(&"expected file://, s3://, gs://, az:// or memory://")),
                };
                (store, prefix)
            };
        Ok(Self {
            store,
            prefix,
            url: url.to_owned(),
        })
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path_of(&self, id: &str) -> Result<ObjectPath, ArtifactError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ArtifactError::BadId(id.to_owned()));
        }
        let key = format!("{}/{id}", &id[..2]);
        Ok(if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        })
    }

    /// Stores image bytes (once per content) and returns their metadata.
    ///
    /// # Errors
    /// [`ArtifactError::NotAnImage`] or a store failure.
    pub async fn put(&self, bytes: &[u8]) -> Result<ArtifactMeta, ArtifactError> {
        let meta = describe(bytes)?;
        let path = self.path_of(&meta.id)?;
        let head = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, head).await {
            Ok(_) => return Ok(meta),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store
            .put_opts(
                &path,
                PutPayload::from(bytes.to_vec()),
                PutOptions::default(),
            )
            .await?;
        Ok(meta)
    }

    /// The bytes and metadata of an artifact.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`], [`ArtifactError::BadId`] or a store failure.
    pub async fn get(&self, id: &str) -> Result<(Vec<u8>, ArtifactMeta), ArtifactError> {
        let path = self.path_of(id)?;
        let bytes = match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(result) => result.bytes().await?.to_vec(),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ArtifactError::NotFound(id.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let meta = describe(&bytes)?;
        Ok((bytes, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        switchyard_providers::mock::png_bytes(width, height, &[7; 32]).unwrap_or_default()
    }

    async fn round_trip(store: &ArtifactStore) {
        let bytes = png(3, 2);
        let meta = store.put(&bytes).await.unwrap();
        assert_eq!(
            (meta.mime.as_str(), meta.width, meta.height),
            ("image/png", 3, 2)
        );
        assert_eq!(meta.bytes, bytes.len() as u64);
        assert_eq!(store.put(&bytes).await.unwrap(), meta, "idempotent");
        let (read, again) = store.get(&meta.id).await.unwrap();
        assert_eq!((read, again), (bytes, meta));
        assert!(matches!(
            store.get(&"a".repeat(64)).await,
            Err(ArtifactError::NotFound(_))
        ));
        assert!(matches!(
            store.get("../etc").await,
            Err(ArtifactError::BadId(_))
        ));
        assert!(matches!(
            store.put(b"text, not an image").await,
            Err(ArtifactError::NotAnImage(_))
        ));
    }

    #[tokio::test]
    async fn local_and_memory_stores_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let local = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
        round_trip(&local).await;
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "one fan-out directory");
        round_trip(&ArtifactStore::open("memory://").unwrap()).await;
    }

    #[test]
    fn cloud_urls_build_stores_and_unknown_schemes_are_refused() {
        // Building a cloud store makes no network call.
        let s3 = ArtifactStore::open("s3://bucket/images").unwrap();
        assert_eq!(s3.prefix, "images");
        // Azure needs an account (AZURE_STORAGE_ACCOUNT_NAME): a clear start-up error.
        let error = ArtifactStore::open("az://container/x").unwrap_err();
        assert!(error.to_string().contains("az://container/x"), "{error}");
        let error = ArtifactStore::open("ftp://x/y").unwrap_err();
        assert!(error.to_string().contains("expected file://"), "{error}");
    }
}
