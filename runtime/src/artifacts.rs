//! The artifact store: images, keyed by the SHA-256 of their bytes, with mime type,
//! size and dimensions read from the image itself. Backed by the `object_store` crate:
//! local files (`file://DIR`, the default), S3 (`s3://bucket/prefix`), Google Cloud
//! Storage (`gs://bucket/prefix`), Azure Blob Storage (`az://container/prefix`) and
//! memory (`memory://`, for tests). Cloud credentials come from the environment
//! variables each SDK documents (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, …), never from the config file.
//!
//! Local writes go to a temporary file and are renamed into place, so a reader never
//! sees a half-written artifact; storing the same bytes twice is a no-op. Images larger
//! than [`MULTIPART_BYTES`] go up in parts. [`ArtifactStore::check`] proves at start-up
//! that the store is reachable with the credentials given (a missing bucket or a
//! refused key is a clear start-up error, not a failure of the first request).

use std::{path::PathBuf, sync::Arc, time::Duration};

use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart, aws::AmazonS3Builder, azure::MicrosoftAzureBuilder,
    gcp::GoogleCloudStorageBuilder, local::LocalFileSystem, memory::InMemory,
    path::Path as ObjectPath, signer::Signer,
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
    /// The store cannot be used as configured (found at start-up).
    #[error("the artifact store {url} cannot be used: {reason}")]
    Unusable {
        /// The store's URL.
        url: String,
        /// Why: a missing bucket, refused credentials, an unreachable endpoint.
        reason: String,
    },
}

/// What an object store's error says, in a line: the innermost causes name the bucket
/// or the refusal (`NoSuchBucket`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`).
fn describe_store_error(error: &object_store::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.chars().take(600).collect()
}

/// Images larger than this are uploaded in parts.
pub const MULTIPART_BYTES: usize = 8 * 1024 * 1024;
/// The size of each part (S3's minimum is 5 MiB).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// An image stored again that was last written longer ago than this is written anew,
/// so its time shows it is in use (the retention collector's grace must be longer).
pub const REFRESH_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Signs GET URLs of the store's own (S3); none for the other stores.
    signer: Option<Arc<dyn Signer>>,
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
        Self::open_with(url, &[])
    }

    /// [`ArtifactStore::open`], with object-store settings that take precedence over
    /// the environment's (`aws_endpoint`, `aws_access_key_id`, `aws_allow_http` …: the
    /// names `object_store` gives its config keys).
    ///
    /// # Errors
    /// [`ArtifactError::BadUrl`] (also for an unknown setting) or [`ArtifactError::Io`].
    pub fn open_with(url: &str, settings: &[(&str, &str)]) -> Result<Self, ArtifactError> {
        let bad =
            |why: &dyn std::fmt::Display| ArtifactError::BadUrl(url.to_owned(), why.to_string());
        let mut signer: Option<Arc<dyn Signer>> = None;
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
                    "s3" => {
                        let mut builder = AmazonS3Builder::from_env().with_url(url);
                        for (key, value) in settings {
                            let key = key
                                .parse::<object_store::aws::AmazonS3ConfigKey>()
                                .map_err(|e| bad(&e))?;
                            builder = builder.with_config(key, *value);
                        }
                        let s3 = Arc::new(builder.build().map_err(|e| bad(&e))?);
                        signer = Some(s3.clone());
                        s3
                    }
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
            signer,
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
            // Written again when old, so that its time shows it is in use: the
            // retention collector deletes only images untouched for its grace
            // (longer than this), after it found no reference.
            Ok(found) if chrono::Utc::now() - found.meta.last_modified < REFRESH_AFTER => {
                return Ok(meta);
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // The type goes with the object, for the store's own (presigned) links (local
        // files keep no attributes).
        let attributes = if self.signer.is_some() {
            Attributes::from_iter([(Attribute::ContentType, meta.mime.clone())])
        } else {
            Attributes::new()
        };
        if bytes.len() > MULTIPART_BYTES {
            let upload = self
                .store
                .put_multipart_opts(
                    &path,
                    PutMultipartOptions {
                        attributes,
                        ..PutMultipartOptions::default()
                    },
                )
                .await?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            parts.write(bytes);
            // A failed part aborts the upload (no half object is left visible).
            parts.finish().await?;
        } else {
            self.store
                .put_opts(
                    &path,
                    PutPayload::from(bytes.to_vec()),
                    PutOptions {
                        attributes,
                        ..PutOptions::default()
                    },
                )
                .await?;
        }
        Ok(meta)
    }

    /// Whether the store signs its own GET URLs (S3).
    pub fn can_presign(&self) -> bool {
        self.signer.is_some()
    }

    /// The store's own presigned GET URL of artifact `id`, valid for `ttl`; `None` for
    /// a store that does not sign URLs.
    ///
    /// # Errors
    /// [`ArtifactError::BadId`] or the signer's failure (its credentials).
    pub async fn presigned_url(
        &self,
        id: &str,
        ttl: Duration,
    ) -> Result<Option<String>, ArtifactError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let path = self.path_of(id)?;
        let url = signer
            .signed_url(object_store::signer::Method::GET, &path, ttl)
            .await?;
        Ok(Some(url.to_string()))
    }

    /// Proves the store can be used with the credentials given: a listing of its
    /// prefix (one request; empty is fine). A missing bucket, a refused key or an
    /// unreachable endpoint is the error. (A lookup of one object cannot tell a missing
    /// bucket from a missing object: both are 404 without a body.)
    ///
    /// # Errors
    /// [`ArtifactError::Unusable`], saying which.
    pub async fn check(&self) -> Result<(), ArtifactError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        match self.store.list_with_delimiter(prefix.as_ref()).await {
            Ok(_) => Ok(()),
            Err(e) => Err(ArtifactError::Unusable {
                url: self.url.clone(),
                reason: describe_store_error(&e),
            }),
        }
    }

    /// When artifact `id` was last written; `None` if there is none.
    ///
    /// # Errors
    /// [`ArtifactError::BadId`] or a store failure.
    pub async fn modified(
        &self,
        id: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ArtifactError> {
        let path = self.path_of(id)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes artifact `id` (gone already is fine).
    ///
    /// # Errors
    /// [`ArtifactError::BadId`] or a store failure.
    pub async fn delete(&self, id: &str) -> Result<(), ArtifactError> {
        let path = self.path_of(id)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
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
