//! Per-tenant limits at intake (#16): requests per minute and requests at once, for
//! the tenant and for each of its users. A limit left out (`None`) falls back to the
//! configured default; enforcement is the runtime's (`runtime/src/limits.rs`).

use chrono::Utc;

use super::{QueryError, Store, on_pool};

/// A tenant's own limits (each `None`: the configured default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Requests per minute for the whole tenant.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Requests at once for the whole tenant.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Requests per minute for each user of the tenant.
    #[serde(default)]
    pub user_rpm: Option<u32>,
    /// Requests at once for each user of the tenant.
    #[serde(default)]
    pub user_concurrency: Option<u32>,
    /// How the tenant's own provider accounts (bring your own key) are used next to
    /// the shared ones.
    #[serde(default)]
    pub own_accounts: Option<switchyard_core::routing::OwnAccounts>,
}

impl TenantLimits {
    /// Each limit of `self`, else of `defaults`.
    pub fn or(self, defaults: TenantLimits) -> TenantLimits {
        TenantLimits {
            rpm: self.rpm.or(defaults.rpm),
            concurrency: self.concurrency.or(defaults.concurrency),
            user_rpm: self.user_rpm.or(defaults.user_rpm),
            user_concurrency: self.user_concurrency.or(defaults.user_concurrency),
            own_accounts: self.own_accounts.or(defaults.own_accounts),
        }
    }

    /// Checks what the store cannot: every limit set is at least 1 (0 would refuse
    /// everything; leave a limit out for the default). The message names the field.
    ///
    /// # Errors
    /// The first problem found.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("rpm", self.rpm),
            ("concurrency", self.concurrency),
            ("user_rpm", self.user_rpm),
            ("user_concurrency", self.user_concurrency),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "{name}: must be at least 1 (leave it out for the default)"
                ));
            }
        }
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct LimitsRow {
    rpm: Option<i64>,
    concurrency: Option<i64>,
    user_rpm: Option<i64>,
    user_concurrency: Option<i64>,
    own_accounts: Option<String>,
}

fn narrow(value: Option<i64>) -> Option<u32> {
    value.map(|v| u32::try_from(v.max(1)).unwrap_or(u32::MAX))
}

impl Store {
    /// A tenant's own limits, if it has any.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn tenant_limits(&self, tenant: &str) -> Result<Option<TenantLimits>, QueryError> {
        let row: Option<LimitsRow> = on_pool!(self, |pool| {
            sqlx::query_as(
            "SELECT rpm, concurrency, user_rpm, user_concurrency, own_accounts FROM tenant_limits \
             WHERE tenant = $1"
        )
        .bind(tenant)
        .fetch_optional(pool)
        .await
        })?;
        Ok(row.map(|r| TenantLimits {
            rpm: narrow(r.rpm),
            concurrency: narrow(r.concurrency),
            user_rpm: narrow(r.user_rpm),
            user_concurrency: narrow(r.user_concurrency),
            // The column's CHECK keeps it to the three names.
            own_accounts: r.own_accounts.and_then(|m| m.parse().ok()),
        }))
    }

    /// Creates or replaces a tenant's limits.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_tenant_limits(
        &self,
        tenant: &str,
        limits: &TenantLimits,
    ) -> Result<(), QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO tenant_limits (tenant, rpm, concurrency, user_rpm, user_concurrency, \
             own_accounts, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant) DO UPDATE SET \
             rpm = excluded.rpm, concurrency = excluded.concurrency, \
             user_rpm = excluded.user_rpm, user_concurrency = excluded.user_concurrency, \
             own_accounts = excluded.own_accounts, updated_at = excluded.updated_at"
        )
        .bind(tenant)
        .bind(limits.rpm.map(i64::from))
        .bind(limits.concurrency.map(i64::from))
        .bind(limits.user_rpm.map(i64::from))
        .bind(limits.user_concurrency.map(i64::from))
        .bind(limits.own_accounts.map(|m| m.as_str()))
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Removes a tenant's own limits (the defaults apply again); false if it had none.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn delete_tenant_limits(&self, tenant: &str) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM tenant_limits WHERE tenant = $1"
        )
        .bind(tenant)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }
}
