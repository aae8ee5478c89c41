//! The cleaner's deletes, each one bounded batch in one transaction. An image that
//! loses a reference (a result released or deleted with its task, an upload expired)
//! is queued in `artifact_gc` in the same transaction, so a crash between the row
//! delete and the object delete never leaves it orphaned; the object goes only once
//! [`Store::artifact_referenced`] says nothing kept references it.

use chrono::{DateTime, Utc};

use crate::{QueryError, Store, on_pool};

/// One value of a retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionField {
    /// `tasks_days`.
    Tasks,
    /// `artifacts_days`.
    Artifacts,
    /// `usage_days`.
    Usage,
}

impl RetentionField {
    /// The three.
    pub const ALL: [RetentionField; 3] = [Self::Tasks, Self::Artifacts, Self::Usage];

    /// Its column in `tenant_retention` (and its key in config and the API).
    pub fn column(self) -> &'static str {
        match self {
            Self::Tasks => "tasks_days",
            Self::Artifacts => "artifacts_days",
            Self::Usage => "usage_days",
        }
    }
}

/// What references an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Nothing kept: it may go.
    None,
    /// A result not released, or an upload record: when that expires, the image is
    /// queued again.
    Kept,
    /// Only an unfinished task's input (an image or a mask of its command): nothing
    /// queues it again when that task ends, so it stays queued.
    Input,
}

/// Whose rows a delete touches.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One tenant's (it has its own value for the field).
    Tenant(&'a str),
    /// Every tenant without its own value for the field (the configured default).
    Rest,
}

impl Scope<'_> {
    /// The SQL condition on the tenant column `column`; a `Tenant` scope binds its
    /// tenant as `$2`.
    fn condition(self, column: &str, field: RetentionField) -> String {
        match self {
            Scope::Tenant(_) => format!("{column} = $2"),
            Scope::Rest => format!(
                "{column} NOT IN (SELECT tenant FROM tenant_retention WHERE {} IS NOT NULL)",
                field.column()
            ),
        }
    }

    fn tenant(self) -> Option<String> {
        match self {
            Scope::Tenant(t) => Some(t.to_owned()),
            Scope::Rest => None,
        }
    }
}

/// Row ids as an SQL list (integers only, so nothing a tenant wrote is spliced in).
fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SELECT {what}` or `SELECT COUNT(*)` (with `limit` 0) over `from_where`.
fn select(what: &str, from_where: &str, limit: u32) -> String {
    if limit == 0 {
        format!("SELECT COUNT(*) FROM {from_where}")
    } else {
        format!("SELECT {what} FROM {from_where} LIMIT {limit}")
    }
}

/// What a delete's selection gave: a count (a dry run) or the ids of a batch.
enum Picked {
    Count(u64),
    Ids(Vec<i64>),
}

impl Store {
    /// With `limit` 0, counts the rows of `from_where`; else the `column` (their id)
    /// of at most `limit` of them.
    async fn pick(
        &self,
        column: &str,
        from_where: &str,
        cutoff: DateTime<Utc>,
        scope: Scope<'_>,
        limit: u32,
    ) -> Result<Picked, QueryError> {
        if limit == 0 {
            let count = self
                .count_for(&select("", from_where, 0), cutoff, scope)
                .await?;
            return Ok(Picked::Count(count));
        }
        let ids = self
            .ids_for(&select(column, from_where, limit), cutoff, scope)
            .await?;
        Ok(Picked::Ids(ids))
    }

    /// Runs `sql` (with the cutoff as `$1` and the scope's tenant as `$2`) for ids.
    async fn ids_for(
        &self,
        sql: &str,
        cutoff: DateTime<Utc>,
        scope: Scope<'_>,
    ) -> Result<Vec<i64>, QueryError> {
        let tenant = scope.tenant();
        let ids = on_pool!(self, |pool| {
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .persistent(false)
                .bind(cutoff);
            if let Some(tenant) = &tenant {
                query = query.bind(tenant.as_str());
            }
            query.fetch_all(pool).await
        })?;
        Ok(ids)
    }

    /// Counts with `sql` (the cutoff as `$1`, the scope's tenant as `$2`).
    async fn count_for(
        &self,
        sql: &str,
        cutoff: DateTime<Utc>,
        scope: Scope<'_>,
    ) -> Result<u64, QueryError> {
        let tenant = scope.tenant();
        let count: i64 = on_pool!(self, |pool| {
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .persistent(false)
                .bind(cutoff);
            if let Some(tenant) = &tenant {
                query = query.bind(tenant.as_str());
            }
            query.fetch_one(pool).await
        })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Queues the images of `results_where` (a condition on `task_results`) for the
    /// collector and runs `then` (with the time as `$1` if `then_at`), in one
    /// transaction. Returns `then`'s row count.
    async fn queue_and(
        &self,
        results_where: &str,
        then: &str,
        then_at: bool,
    ) -> Result<u64, QueryError> {
        let queue = format!(
            "INSERT INTO artifact_gc (artifact_id, queued_at) SELECT DISTINCT artifact_id, $1 \
             FROM task_results WHERE {results_where} AND artifact_id IS NOT NULL \
             AND released_at IS NULL ON CONFLICT (artifact_id) DO NOTHING"
        );
        let now = Utc::now();
        let affected = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(queue.clone()))
                .persistent(false)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let mut then = sqlx::query(sqlx::AssertSqlSafe(then.to_owned())).persistent(false);
            if then_at {
                then = then.bind(now);
            }
            let done = then.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(done.rows_affected())
        })?;
        Ok(affected)
    }

    /// Deletes (at most `limit`; with `limit` 0 only counts) the finished tasks in
    /// `scope` that ended before `cutoff`, with their parameters and results; their
    /// images are queued for the collector. Returns how many.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn expire_tasks(
        &self,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        let from_where = format!(
            "tasks WHERE status IN ('completed', 'failed') AND completed_at < $1 AND {}",
            scope.condition("tenant", RetentionField::Tasks)
        );
        let ids = match self.pick("id", &from_where, cutoff, scope, limit).await? {
            Picked::Count(count) => return Ok(count),
            Picked::Ids(ids) if ids.is_empty() => return Ok(0),
            Picked::Ids(ids) => ids,
        };
        let ids = id_list(&ids);
        self.queue_and(
            &format!("task_id IN ({ids})"),
            &format!("DELETE FROM tasks WHERE id IN ({ids})"),
            false,
        )
        .await
    }

    /// Releases (at most `limit`; with `limit` 0 only counts) the images of results in
    /// `scope` made before `cutoff`: the result row stays, its image is queued for the
    /// collector. Returns how many.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn release_results(
        &self,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        let from_where = format!(
            "task_results r JOIN tasks t ON t.id = r.task_id WHERE r.released_at IS NULL \
             AND r.artifact_id IS NOT NULL AND r.created_at < $1 AND {}",
            scope.condition("t.tenant", RetentionField::Artifacts)
        );
        let ids = match self.pick("r.id", &from_where, cutoff, scope, limit).await? {
            Picked::Count(count) => return Ok(count),
            Picked::Ids(ids) if ids.is_empty() => return Ok(0),
            Picked::Ids(ids) => ids,
        };
        let ids = id_list(&ids);
        self.queue_and(
            &format!("id IN ({ids})"),
            &format!("UPDATE task_results SET released_at = $1 WHERE id IN ({ids})"),
            true,
        )
        .await
    }

    /// Deletes (at most `limit`; with `limit` 0 only counts) the upload records in
    /// `scope` older than `cutoff`, queueing their images. Returns how many.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn expire_uploads(
        &self,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        let from_where = format!(
            "artifact_uploads WHERE created_at < $1 AND {}",
            scope.condition("tenant", RetentionField::Artifacts)
        );
        if limit == 0 {
            return self
                .count_for(&select("", &from_where, 0), cutoff, scope)
                .await;
        }
        let sql = select("artifact_id, tenant", &from_where, limit);
        let tenant = scope.tenant();
        let rows: Vec<(String, String)> = on_pool!(self, |pool| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .persistent(false)
                .bind(cutoff);
            if let Some(tenant) = &tenant {
                query = query.bind(tenant.as_str());
            }
            query.fetch_all(pool).await
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let deleted = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut deleted = 0;
            for (artifact, tenant) in &rows {
                sqlx::query(
                    "INSERT INTO artifact_gc (artifact_id, queued_at) VALUES ($1, $2) \
                     ON CONFLICT (artifact_id) DO NOTHING",
                )
                .bind(artifact)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Not if it was uploaded again meanwhile (its record renewed).
                deleted += sqlx::query(
                    "DELETE FROM artifact_uploads WHERE artifact_id = $1 AND tenant = $2 \
                     AND created_at < $3",
                )
                .bind(artifact)
                .bind(tenant)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })?;
        Ok(deleted)
    }

    /// Deletes (at most `limit`; with `limit` 0 only counts) the usage rows in `scope`
    /// older than `cutoff`. Returns how many.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn expire_usage(
        &self,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        self.expire_rows(
            "usage_log WHERE",
            RetentionField::Usage,
            scope,
            cutoff,
            limit,
        )
        .await
    }

    /// Deletes (at most `limit`; with `limit` 0 only counts) the attempt rows (the
    /// statistics) in `scope` older than `cutoff`: they last as long as usage rows.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn expire_attempts(
        &self,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        self.expire_rows(
            "attempt_log WHERE",
            RetentionField::Usage,
            scope,
            cutoff,
            limit,
        )
        .await
    }

    /// Deletes (at most `limit`; with `limit` 0 only counts) the finished webhook
    /// deliveries (delivered or given up) in `scope` queued before `cutoff`: the
    /// delivery log lasts as long as the tasks. Returns how many.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn expire_deliveries(
        &self,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        let rows = "webhook_deliveries WHERE status <> 'pending' AND";
        self.expire_rows(rows, RetentionField::Tasks, scope, cutoff, limit)
            .await
    }

    /// The rows of a log with `tenant` and `created_at` (`table_where`: the table,
    /// `WHERE` and any condition of its own, ending in `AND`) under `field`.
    async fn expire_rows(
        &self,
        table_where: &str,
        field: RetentionField,
        scope: Scope<'_>,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        let from_where = format!(
            "{table_where} created_at < $1 AND {}",
            scope.condition("tenant", field)
        );
        let ids = match self.pick("id", &from_where, cutoff, scope, limit).await? {
            Picked::Count(count) => return Ok(count),
            Picked::Ids(ids) if ids.is_empty() => return Ok(0),
            Picked::Ids(ids) => ids,
        };
        let table = table_where.split_whitespace().next().unwrap_or_default();
        let sql = format!("DELETE FROM {table} WHERE id IN ({})", id_list(&ids));
        let affected = on_pool!(self, |pool| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .persistent(false)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(affected)
    }

    /// Up to `limit` queued images after `after` (by id), for the collector.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn queued_artifacts(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, QueryError> {
        let ids = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT artifact_id FROM artifact_gc WHERE artifact_id > $1 \
             ORDER BY artifact_id LIMIT $2"
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        Ok(ids)
    }

    /// How many images are queued for the collector.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn count_queued_artifacts(&self) -> Result<u64, QueryError> {
        let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM artifact_gc"
        )
        .fetch_one(pool)
        .await)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// What still references image `id` (by content hash), if anything.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn artifact_reference(&self, id: &str) -> Result<Reference, QueryError> {
        let (kept, input): (bool, bool) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM task_results WHERE artifact_id = $1 \
             AND released_at IS NULL) \
             OR EXISTS (SELECT 1 FROM artifact_uploads WHERE artifact_id = $1), \
             EXISTS (SELECT 1 FROM tasks WHERE status IN ('pending', 'processing') \
             AND CAST(command AS TEXT) LIKE $2)"
        )
        .bind(id)
        .bind(format!("%{id}%"))
        .fetch_one(pool)
        .await)?;
        Ok(if kept {
            Reference::Kept
        } else if input {
            Reference::Input
        } else {
            Reference::None
        })
    }

    /// Takes image `id` off the collector's queue.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn unqueue_artifact(&self, id: &str) -> Result<(), QueryError> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM artifact_gc WHERE artifact_id = $1"
        )
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
