//! Plans over the gateway (#16 §4): listed, set, removed, and assigned to tenants;
//! each write forgets the cached quotas of the tenants it touches, so it applies in
//! this process at once (in the others within their 2 s refresh).

use super::Gateway;
use crate::store::{Plan, PlanError, QueryError};

impl Gateway {
    /// Every plan.
    ///
    /// # Errors
    /// The store's.
    pub async fn plans(&self) -> Result<Vec<Plan>, QueryError> {
        self.parts.store.plans().await
    }

    /// Creates or replaces a plan; every tenant assigned it gets the new limits.
    ///
    /// # Errors
    /// The store's.
    pub async fn set_plan(&self, plan: &Plan) -> Result<(), QueryError> {
        for tenant in self.parts.store.set_plan(plan).await? {
            self.parts.quotas.invalidate(&tenant);
        }
        Ok(())
    }

    /// Removes a plan that no tenant is assigned.
    ///
    /// # Errors
    /// [`PlanError`].
    pub async fn delete_plan(&self, name: &str) -> Result<(), PlanError> {
        self.parts.store.delete_plan(name).await
    }

    /// The plan `tenant` is assigned, if any.
    ///
    /// # Errors
    /// The store's.
    pub async fn tenant_plan(&self, tenant: &str) -> Result<Option<String>, QueryError> {
        self.parts.store.tenant_plan(tenant).await
    }

    /// Assigns `tenant` a plan (replacing any).
    ///
    /// # Errors
    /// [`PlanError`].
    pub async fn assign_plan(&self, tenant: &str, plan: &str) -> Result<(), PlanError> {
        self.parts.store.assign_plan(tenant, plan).await?;
        self.parts.quotas.invalidate(tenant);
        Ok(())
    }

    /// Takes `tenant`'s plan away; false if it had none.
    ///
    /// # Errors
    /// The store's.
    pub async fn unassign_plan(&self, tenant: &str) -> Result<bool, QueryError> {
        let removed = self.parts.store.unassign_plan(tenant).await?;
        self.parts.quotas.invalidate(tenant);
        Ok(removed)
    }
}
