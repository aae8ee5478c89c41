//! Tenants' limits at intake over the gateway: read, set and removed, each write told
//! to the pipeline's limiter so that it applies in this process at once (and in the
//! others within their refresh).

use super::Gateway;
use crate::store::{QueryError, TenantLimits};

/// A tenant's limits as stored and as they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LimitsView {
    /// Its own limits (each `null`: the default).
    pub own: TenantLimits,
    /// What applies: its own, else the configured defaults (`null`: unlimited).
    pub effective: TenantLimits,
}

impl Gateway {
    /// `tenant`'s limits.
    ///
    /// # Errors
    /// The store's.
    pub async fn tenant_limits(&self, tenant: &str) -> Result<LimitsView, QueryError> {
        let own = self
            .parts
            .store
            .tenant_limits(tenant)
            .await?
            .unwrap_or_default();
        let limits = self.parts.pipeline.limits();
        limits.invalidate(tenant);
        let effective = limits.effective(tenant).await?;
        Ok(LimitsView { own, effective })
    }

    /// Sets `tenant`'s own limits (replacing any), applied at once in this process.
    ///
    /// # Errors
    /// The store's.
    pub async fn set_tenant_limits(
        &self,
        tenant: &str,
        limits: &TenantLimits,
    ) -> Result<LimitsView, QueryError> {
        self.parts.store.set_tenant_limits(tenant, limits).await?;
        self.tenant_limits(tenant).await
    }

    /// Removes `tenant`'s own limits (the defaults apply again); false if it had none.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_tenant_limits(&self, tenant: &str) -> Result<bool, QueryError> {
        let deleted = self.parts.store.delete_tenant_limits(tenant).await?;
        self.parts.pipeline.limits().invalidate(tenant);
        Ok(deleted)
    }
}
