//! Tenants over the gateway: their keys ([`TenantKeys`]: made, listed, revoked, and
//! resolved to the tenant that holds one), their usage, and their quotas (each write
//! told to the pipeline's quota checker).

use chrono::{DateTime, Utc};

use super::Gateway;
use crate::store::{
    CountedQuota, QueryError, Quota, QuotaPeriod, Store, TenantKey, UsageSummaryRow,
};

/// The tenant keys. Cheap to clone; holds no more than the store.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    store: Store,
}

impl TenantKeys {
    /// The tenant keys kept in this store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The tenant whose live key `secret` is, if it is one.
    ///
    /// # Errors
    /// The store's.
    pub async fn tenant_of(&self, secret: &str) -> Result<Option<String>, QueryError> {
        self.store.tenant_of_key(secret).await
    }

    /// Makes a key for `tenant` with this label: its row, and the key itself (shown
    /// once; only its SHA-256 is kept).
    ///
    /// # Errors
    /// The store's.
    pub async fn create(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(TenantKey, String), QueryError> {
        self.store.create_tenant_key(tenant, name).await
    }

    /// Every key of `tenant`, live or revoked (never the keys themselves).
    ///
    /// # Errors
    /// The store's.
    pub async fn list(&self, tenant: &str) -> Result<Vec<TenantKey>, QueryError> {
        self.store.tenant_keys(tenant).await
    }

    /// Revokes `tenant`'s live key `id`. Whether there was one.
    ///
    /// # Errors
    /// The store's.
    pub async fn revoke(&self, tenant: &str, id: i64) -> Result<bool, QueryError> {
        self.store.revoke_tenant_key(tenant, id).await
    }
}

impl Gateway {
    /// The tenant keys.
    pub fn tenant_keys(&self) -> TenantKeys {
        TenantKeys::new(self.parts.store.clone())
    }

    /// `tenant`'s finished requests that used a provider in `[from, to)`, grouped by
    /// provider type, model and kind.
    ///
    /// # Errors
    /// The store's.
    pub async fn usage(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageSummaryRow>, QueryError> {
        self.parts.store.usage_summary(tenant, from, to).await
    }

    /// The usage report of `scope` in `bucket`s (day, week or month), with failures.
    ///
    /// # Errors
    /// The store's.
    pub async fn usage_report(
        &self,
        scope: &crate::store::ReportScope<'_>,
        bucket: crate::usage_report::Bucket,
    ) -> Result<crate::usage_report::UsageReport, QueryError> {
        crate::usage_report::report(&self.parts.store, scope, bucket).await
    }

    /// `tenant`'s quotas, each with what it counted since the start of its period
    /// that `now` is in.
    ///
    /// # Errors
    /// The store's.
    pub async fn quotas(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<CountedQuota>, QueryError> {
        self.parts.store.counted_quotas(tenant, now).await
    }

    /// Creates or replaces a quota (already checked); it applies to requests admitted
    /// from now on.
    ///
    /// # Errors
    /// The store's; the quota checker is not told then.
    pub async fn set_quota(&self, quota: &Quota) -> Result<(), QueryError> {
        self.parts.store.set_quota(quota).await?;
        self.parts.quotas.invalidate(&quota.tenant);
        Ok(())
    }

    /// Removes `tenant`'s quota of `period` (for one `user`, or the tenant's own).
    /// Whether there was one.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_quota(
        &self,
        tenant: &str,
        user: Option<&str>,
        period: QuotaPeriod,
    ) -> Result<bool, QueryError> {
        let deleted = self.parts.store.delete_quota(tenant, user, period).await?;
        if deleted {
            self.parts.quotas.invalidate(tenant);
        }
        Ok(deleted)
    }

    /// Why `tenant` may not ask for `images` more images now (a quota it has reached),
    /// if so: checked before a call stores anything for the tenant (an edit's uploads).
    /// A tenant its own provider accounts may serve is not refused here: they are not
    /// charged (admission decides).
    ///
    /// # Errors
    /// [`QueryError`] when the quotas cannot be read.
    pub async fn quota_refusal(
        &self,
        tenant: &switchyard_core::Tenant,
        images: i64,
    ) -> Result<Option<String>, QueryError> {
        use switchyard_core::routing::OwnAccounts;
        let own = self
            .parts
            .pipeline
            .limits()
            .own_accounts(tenant.as_str())
            .await;
        let served_by_own = own == OwnAccounts::Only
            || (own == OwnAccounts::Prefer && self.parts.engine.has_own_accounts(tenant.as_str()));
        if served_by_own {
            return Ok(None);
        }
        self.parts.quotas.precheck(tenant.as_str(), images).await
    }
}
