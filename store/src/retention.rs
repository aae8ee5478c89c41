//! Retention (issue 17 §2): each tenant's own policy (how many days its finished
//! tasks, their images and its usage rows are kept), and the bounded deletes the
//! cleaner (`runtime/src/retention.rs`) runs with it.

mod sweep;

use chrono::Utc;

use crate::{QueryError, Store, on_pool};

pub use sweep::{Reference, RetentionField, Scope};

/// The longest a policy may keep anything, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// The fewest days usage rows may be kept (other than 0, for ever): a month's quota
/// counters and usage report read them.
pub const MIN_USAGE_DAYS: u32 = 32;

/// A retention policy in days (0: for ever). In a tenant's own policy, `None` is the
/// configured default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Days a finished task (its row, parameters and results) is kept after it ended.
    #[serde(default)]
    pub tasks_days: Option<u32>,
    /// Days a task's images are kept after they were made, and an upload after it
    /// came; an image still referenced by a kept task is never deleted.
    #[serde(default)]
    pub artifacts_days: Option<u32>,
    /// Days a usage row is kept.
    #[serde(default)]
    pub usage_days: Option<u32>,
}

impl RetentionPolicy {
    /// Each value of `self`, else of `defaults`.
    pub fn or(self, defaults: RetentionPolicy) -> RetentionPolicy {
        RetentionPolicy {
            tasks_days: self.tasks_days.or(defaults.tasks_days),
            artifacts_days: self.artifacts_days.or(defaults.artifacts_days),
            usage_days: self.usage_days.or(defaults.usage_days),
        }
    }

    /// The value of `field`.
    pub fn get(&self, field: RetentionField) -> Option<u32> {
        match field {
            RetentionField::Tasks => self.tasks_days,
            RetentionField::Artifacts => self.artifacts_days,
            RetentionField::Usage => self.usage_days,
        }
    }

    /// Checks what the store cannot; the message names the field.
    ///
    /// # Errors
    /// The first problem found.
    pub fn check(&self) -> Result<(), String> {
        for field in RetentionField::ALL {
            let Some(days) = self.get(field) else {
                continue;
            };
            if days > MAX_DAYS {
                return Err(format!("{}: at most {MAX_DAYS} days", field.column()));
            }
            if field == RetentionField::Usage && days != 0 && days < MIN_USAGE_DAYS {
                return Err(format!(
                    "usage_days: 0 (for ever) or at least {MIN_USAGE_DAYS}, so that a month's \
                     quotas and usage report stay whole"
                ));
            }
        }
        Ok(())
    }
}

type PolicyRow = (String, Option<i64>, Option<i64>, Option<i64>);

fn days(value: Option<i64>) -> Option<u32> {
    value.map(|v| u32::try_from(v.clamp(0, i64::from(MAX_DAYS))).unwrap_or(MAX_DAYS))
}

fn policy((_, tasks, artifacts, usage): &PolicyRow) -> RetentionPolicy {
    RetentionPolicy {
        tasks_days: days(*tasks),
        artifacts_days: days(*artifacts),
        usage_days: days(*usage),
    }
}

impl Store {
    /// A tenant's own retention policy, if it has one.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn tenant_retention(
        &self,
        tenant: &str,
    ) -> Result<Option<RetentionPolicy>, QueryError> {
        let row: Option<PolicyRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT tenant, tasks_days, artifacts_days, usage_days FROM tenant_retention \
             WHERE tenant = $1"
        )
        .bind(tenant)
        .fetch_optional(pool)
        .await)?;
        Ok(row.as_ref().map(policy))
    }

    /// Every tenant's own retention policy, by tenant.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn tenant_retentions(&self) -> Result<Vec<(String, RetentionPolicy)>, QueryError> {
        let rows: Vec<PolicyRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT tenant, tasks_days, artifacts_days, usage_days FROM tenant_retention \
             ORDER BY tenant"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows.iter().map(|r| (r.0.clone(), policy(r))).collect())
    }

    /// Creates or replaces a tenant's retention policy.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_tenant_retention(
        &self,
        tenant: &str,
        policy: &RetentionPolicy,
    ) -> Result<(), QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO tenant_retention (tenant, tasks_days, artifacts_days, usage_days, \
             updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant) DO UPDATE SET \
             tasks_days = excluded.tasks_days, artifacts_days = excluded.artifacts_days, \
             usage_days = excluded.usage_days, updated_at = excluded.updated_at"
        )
        .bind(tenant)
        .bind(policy.tasks_days.map(i64::from))
        .bind(policy.artifacts_days.map(i64::from))
        .bind(policy.usage_days.map(i64::from))
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Removes a tenant's own policy (the defaults apply again); false if it had none.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn delete_tenant_retention(&self, tenant: &str) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM tenant_retention WHERE tenant = $1"
        )
        .bind(tenant)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }
}
