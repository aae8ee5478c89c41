//! Named plans (#16 §4): a plan is a tenant-wide quota over a period (requests,
//! images, tokens, spend). A tenant assigned a plan gets it as a row of `quotas`
//! marked with the plan's name, so admission reserves from it and `GET /v1/quotas`
//! counts it like any quota; a quota of the tenant's own for the same period wins
//! (the plan's row is not made, or is replaced when the tenant's own is set, and comes
//! back when that is removed). Editing a plan edits every tenant's row of it.

use chrono::Utc;

use super::{QueryError, Quota, QuotaPeriod, Store, on_pool};

/// A named plan: a tenant-wide quota over a period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Its name.
    pub name: String,
    /// Counting period.
    pub period: QuotaPeriod,
    /// Requests at most.
    pub max_requests: Option<i64>,
    /// Images at most.
    pub max_images: Option<i64>,
    /// Input plus output tokens at most.
    pub max_tokens: Option<i64>,
    /// Spend at most.
    pub max_cost_usd: Option<f64>,
}

impl Plan {
    /// Checks what the store cannot: a name of letters, digits, `-`, `_` and `.` (at
    /// most 64), and the limits a quota needs (at least one, none negative).
    ///
    /// # Errors
    /// The first problem found, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err("name: 1–64 letters, digits, '-', '_' or '.'".to_owned());
        }
        Quota {
            max_requests: self.max_requests,
            max_images: self.max_images,
            max_tokens: self.max_tokens,
            max_cost_usd: self.max_cost_usd,
            ..Quota::new("plan", self.period)
        }
        .check()
    }
}

/// Why a plan could not be removed or assigned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No plan of that name.
    #[error("no plan named '{0}'")]
    NotFound(String),
    /// Tenants are still assigned it.
    #[error("plan '{name}' is assigned to {tenants} tenant(s); assign them another first")]
    InUse {
        /// The plan.
        name: String,
        /// How many tenants have it.
        tenants: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<sqlx::Error> for PlanError {
    fn from(e: sqlx::Error) -> Self {
        Self::Query(QueryError::Database(e))
    }
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    name: String,
    period: String,
    max_requests: Option<i64>,
    max_images: Option<i64>,
    max_tokens: Option<i64>,
    max_cost_usd: Option<f64>,
}

impl PlanRow {
    fn into_plan(self) -> Result<Plan, QueryError> {
        let period = QuotaPeriod::parse(&self.period).map_err(|detail| QueryError::Corrupt {
            table: "plans",
            detail,
        })?;
        Ok(Plan {
            name: self.name,
            period,
            max_requests: self.max_requests,
            max_images: self.max_images,
            max_tokens: self.max_tokens,
            max_cost_usd: self.max_cost_usd,
        })
    }
}

/// Makes the plan row of every tenant assigned plan `$1` (or, with `$2` not NULL,
/// of that one tenant) that has no quota of its own for the plan's period.
const MATERIALIZE: &str = "INSERT INTO quotas (tenant, user_id, period, max_requests, \
    max_images, max_tokens, max_cost_usd, plan, created_at, updated_at) \
    SELECT tp.tenant, '', p.period, p.max_requests, p.max_images, p.max_tokens, \
    p.max_cost_usd, p.name, $3, $3 FROM tenant_plans tp JOIN plans p ON p.name = tp.plan \
    WHERE ($1 IS NULL OR p.name = $1) AND ($2 IS NULL OR tp.tenant = $2) \
    ON CONFLICT (tenant, user_id, period) DO NOTHING";

impl Store {
    /// Every plan, by name.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn plans(&self) -> Result<Vec<Plan>, QueryError> {
        let rows: Vec<PlanRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, period, max_requests, max_images, max_tokens, max_cost_usd \
             FROM plans ORDER BY name"
        )
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(PlanRow::into_plan).collect()
    }

    /// Creates or replaces a plan, and applies it to every tenant assigned it: their
    /// rows of it take the new limits (keeping what they counted), or, if the period
    /// changed, are made anew for it. Returns the tenants assigned it.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn set_plan(&self, plan: &Plan) -> Result<Vec<String>, QueryError> {
        let now = Utc::now();
        let tenants = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO plans (name, period, max_requests, max_images, max_tokens, \
                     max_cost_usd, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (name) DO UPDATE SET period = excluded.period, \
                     max_requests = excluded.max_requests, max_images = excluded.max_images, \
                     max_tokens = excluded.max_tokens, max_cost_usd = excluded.max_cost_usd, \
                     updated_at = excluded.updated_at",
                )
                .bind(&plan.name)
                .bind(plan.period.as_str())
                .bind(plan.max_requests)
                .bind(plan.max_images)
                .bind(plan.max_tokens)
                .bind(plan.max_cost_usd)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE quotas SET max_requests = $2, max_images = $3, max_tokens = $4, \
                     max_cost_usd = $5, updated_at = $6 WHERE plan = $1 AND period = $7",
                )
                .bind(&plan.name)
                .bind(plan.max_requests)
                .bind(plan.max_images)
                .bind(plan.max_tokens)
                .bind(plan.max_cost_usd)
                .bind(now)
                .bind(plan.period.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM quotas WHERE plan = $1 AND period <> $2")
                    .bind(&plan.name)
                    .bind(plan.period.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(MATERIALIZE)
                    .bind(Some(plan.name.as_str()))
                    .bind(None::<&str>)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let tenants: Vec<String> = sqlx::query_scalar(
                    "SELECT tenant FROM tenant_plans WHERE plan = $1 ORDER BY tenant",
                )
                .bind(&plan.name)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(tenants)
            }
            .await
        })?;
        Ok(tenants)
    }

    /// Removes a plan no tenant is assigned.
    ///
    /// # Errors
    /// [`PlanError::NotFound`], [`PlanError::InUse`], or the database's.
    pub async fn delete_plan(&self, name: &str) -> Result<(), PlanError> {
        let assigned: i64 = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM tenant_plans WHERE plan = $1"
        )
        .bind(name)
        .fetch_one(pool)
        .await)?;
        if assigned > 0 {
            return Err(PlanError::InUse {
                name: name.to_owned(),
                tenants: assigned,
            });
        }
        let deleted = match on_pool!(self, |pool| sqlx::query(
            "DELETE FROM plans WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        {
            // A tenant was assigned it between the count and the delete.
            Err(e) if foreign_key_violation(&e) => {
                return Err(PlanError::InUse {
                    name: name.to_owned(),
                    tenants: 1,
                });
            }
            other => other?,
        };
        if deleted == 0 {
            return Err(PlanError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// The plan `tenant` is assigned, if any.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn tenant_plan(&self, tenant: &str) -> Result<Option<String>, QueryError> {
        let plan = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT plan FROM tenant_plans WHERE tenant = $1"
        )
        .bind(tenant)
        .fetch_optional(pool)
        .await)?;
        Ok(plan)
    }

    /// Assigns `tenant` the plan `plan` (replacing any): its rows of the old plan go,
    /// the new plan's row is made unless the tenant has its own quota for that period.
    ///
    /// # Errors
    /// [`PlanError::NotFound`] or the database's.
    pub async fn assign_plan(&self, tenant: &str, plan: &str) -> Result<(), PlanError> {
        let now = Utc::now();
        let found = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                // A write first, so that on SQLite the transaction takes the write lock
                // at once (waiting its turn) rather than reading and then failing to
                // upgrade when another connection wrote meanwhile. A plan that does not
                // exist fails the insert's foreign key: not found, as below.
                sqlx::query(
                    "INSERT INTO tenant_plans (tenant, plan, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant) DO UPDATE SET plan = excluded.plan, \
                     updated_at = excluded.updated_at",
                )
                .bind(tenant)
                .bind(plan)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM quotas WHERE tenant = $1 AND plan IS NOT NULL AND plan <> $2",
                )
                .bind(tenant)
                .bind(plan)
                .execute(&mut *tx)
                .await?;
                sqlx::query(MATERIALIZE)
                    .bind(Some(plan))
                    .bind(Some(tenant))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(true)
            }
            .await
        });
        match found {
            Ok(true) => Ok(()),
            Ok(false) => Err(PlanError::NotFound(plan.to_owned())),
            Err(e) if foreign_key_violation(&e) => Err(PlanError::NotFound(plan.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes `tenant`'s plan away (and its rows of it); false if it had none.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn unassign_plan(&self, tenant: &str) -> Result<bool, QueryError> {
        let removed = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM quotas WHERE tenant = $1 AND plan IS NOT NULL")
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?;
                let removed = sqlx::query("DELETE FROM tenant_plans WHERE tenant = $1")
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok::<_, sqlx::Error>(removed > 0)
            }
            .await
        })?;
        Ok(removed)
    }

    /// Makes `tenant`'s plan row again where nothing of its own stands in its way (after
    /// one of its own quotas was removed).
    ///
    /// # Errors
    /// [`QueryError`].
    pub(crate) async fn restore_plan_quota(&self, tenant: &str) -> Result<(), QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| sqlx::query(MATERIALIZE)
            .bind(None::<&str>)
            .bind(Some(tenant))
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}

/// A write refused by a foreign key (a row it names is gone, or a row still names it).
fn foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
}
