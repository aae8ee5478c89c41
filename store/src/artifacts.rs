//! Who owns an artifact: the tenants whose requests produced it (its `task_results`
//! rows) and the tenants who uploaded it (`artifact_uploads`).

use crate::{QueryError, Store, on_pool};

impl Store {
    /// The tenants that own artifact `id`, sorted (none: only the admin may read it).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn artifact_owners(&self, id: &str) -> Result<Vec<String>, QueryError> {
        let owners: Vec<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT t.tenant FROM task_results r JOIN tasks t ON t.id = r.task_id \
             WHERE r.artifact_id = $1 AND r.released_at IS NULL \
             UNION SELECT tenant FROM artifact_uploads WHERE artifact_id = $2 ORDER BY 1"
        )
        .bind(id)
        .bind(id)
        .fetch_all(pool)
        .await)?;
        Ok(owners)
    }

    /// Records that `tenant` uploaded artifact `id` (a second upload renews the record,
    /// so retention counts from the latest).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn record_artifact_upload(&self, id: &str, tenant: &str) -> Result<(), QueryError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO artifact_uploads (artifact_id, tenant, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (artifact_id, tenant) DO UPDATE SET created_at = excluded.created_at"
        )
        .bind(id)
        .bind(tenant)
        .bind(chrono::Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
