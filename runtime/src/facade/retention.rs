//! Tenants' retention policies over the gateway: read, set and removed. The cluster's
//! cleaner reads them at the start of each run.

use super::Gateway;
use crate::store::{QueryError, RetentionPolicy};

/// A tenant's retention policy as stored and as it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetentionView {
    /// Its own policy (each `null`: the default).
    pub own: RetentionPolicy,
    /// What applies: its own, else `[retention]` (0: kept for ever).
    pub effective: RetentionPolicy,
}

impl Gateway {
    /// `tenant`'s retention policy.
    ///
    /// # Errors
    /// The store's.
    pub async fn tenant_retention(&self, tenant: &str) -> Result<RetentionView, QueryError> {
        let own = self
            .parts
            .store
            .tenant_retention(tenant)
            .await?
            .unwrap_or_default();
        Ok(RetentionView {
            own,
            effective: own.or(self.parts.retention),
        })
    }

    /// Sets `tenant`'s own retention policy (replacing any).
    ///
    /// # Errors
    /// The store's.
    pub async fn set_tenant_retention(
        &self,
        tenant: &str,
        policy: &RetentionPolicy,
    ) -> Result<RetentionView, QueryError> {
        self.parts
            .store
            .set_tenant_retention(tenant, policy)
            .await?;
        self.tenant_retention(tenant).await
    }

    /// Removes `tenant`'s own policy (the defaults apply again); false if it had none.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_tenant_retention(&self, tenant: &str) -> Result<bool, QueryError> {
        self.parts.store.delete_tenant_retention(tenant).await
    }
}
