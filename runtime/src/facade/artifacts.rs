//! Stored images over the gateway (content-addressed: the id is the hex SHA-256): their
//! bytes, their owners (the tenants of the requests that made them and of those that
//! uploaded them) and the check of a signed link to one.

use super::Gateway;
use crate::{
    artifact_urls::SignatureError,
    artifacts::{ArtifactError, ArtifactMeta},
    store::QueryError,
};

impl Gateway {
    /// The bytes of artifact `id`, and what is known of them.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`], [`ArtifactError::BadId`], or the object store's.
    pub async fn artifact(&self, id: &str) -> Result<(Vec<u8>, ArtifactMeta), ArtifactError> {
        self.parts.artifacts.get(id).await
    }

    /// Stores an image: what is known of it (its id among them).
    ///
    /// # Errors
    /// [`ArtifactError::NotAnImage`], or the object store's.
    pub async fn store_artifact(&self, bytes: &[u8]) -> Result<ArtifactMeta, ArtifactError> {
        self.parts.artifacts.put(bytes).await
    }

    /// Records that `tenant` uploaded artifact `id`, which makes it one of its owners.
    ///
    /// # Errors
    /// The store's.
    pub async fn record_artifact_upload(&self, id: &str, tenant: &str) -> Result<(), QueryError> {
        self.parts.store.record_artifact_upload(id, tenant).await
    }

    /// The tenants that own artifact `id` (none for an unknown one).
    ///
    /// # Errors
    /// The store's.
    pub async fn artifact_owners(&self, id: &str) -> Result<Vec<String>, QueryError> {
        self.parts.store.artifact_owners(id).await
    }

    /// Checks a signed link's `exp` and `sig` for artifact `id` against its `owners`,
    /// at the runtime clock's now.
    ///
    /// # Errors
    /// [`SignatureError::Expired`] or [`SignatureError::Invalid`].
    pub fn verify_artifact_link(
        &self,
        id: &str,
        owners: &[String],
        exp: u64,
        sig: &str,
    ) -> Result<(), SignatureError> {
        let now = self.parts.engine.clock().now_ms();
        self.parts
            .engine
            .artifact_urls()
            .verify(id, owners, exp, sig, now)
    }
}
