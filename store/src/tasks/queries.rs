//! The task queries: create (the idempotency check), read, start an attempt, and the
//! terminal transitions, which report whether they happened.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use switchyard_core::{RequestId, Tenant};

use super::{NewTask, NewTaskResult, ResultRow, TASK_COLUMNS, Task, TaskInsert, TaskResult};
use crate::{Claim, Completion, Failure, QueryError, Start, Store, on_pool};

impl Store {
    /// Stores a new task, or returns the existing one with the same
    /// `(tenant, request_id)`: the idempotency check.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn create_task(&self, task: &NewTask) -> Result<TaskInsert, QueryError> {
        // The batch writer's statement with a batch of one: one place for the insert
        // and its parameter rows.
        let outcome = self.write_batch(&[task], &[], &[], &[], &[]).await?;
        outcome
            .created
            .into_iter()
            .next()
            .ok_or_else(|| QueryError::Corrupt {
                table: "tasks",
                detail: "the insert returned nothing".to_owned(),
            })
    }

    /// A task by id.
    ///
    /// # Errors
    /// [`QueryError::Database`] or [`QueryError::Corrupt`].
    pub async fn get_task(&self, id: i64) -> Result<Option<Task>, QueryError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row: Option<Task> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(row)
    }

    /// The terminal event of the latest task of `tenant` that completed since `since`
    /// with this [`cache_key`]: an identical earlier request's result.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn cached_result(
        &self,
        tenant: &str,
        cache_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Value>, QueryError> {
        // Only answers a provider gave: a request answered from the cache (or, stale,
        // as a fallback) completed later than the answer it repeats, and would make
        // that answer look younger than it is.
        let fresh = match self.backend() {
            crate::Backend::Postgres => "(terminal_event->>'cached') = 'false'",
            crate::Backend::Sqlite => "json_extract(terminal_event, '$.cached') = 0",
        };
        let sql = format!(
            "SELECT terminal_event FROM tasks WHERE cache_key = $1 AND tenant = $2 \
             AND status = 'completed' AND completed_at >= $3 AND terminal_event IS NOT NULL \
             AND {fresh} ORDER BY completed_at DESC LIMIT 1"
        );
        let row: Option<Json<Value>> = on_pool!(self, |pool| sqlx::query_scalar(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(cache_key)
        .bind(tenant)
        .bind(since)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|j| j.0))
    }

    /// A task by its idempotency key.
    ///
    /// # Errors
    /// [`QueryError::Database`] or [`QueryError::Corrupt`].
    pub async fn find_task(
        &self,
        tenant: &Tenant,
        request_id: &RequestId,
    ) -> Result<Option<Task>, QueryError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tenant = $1 AND request_id = $2");
        let row: Option<Task> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(tenant.as_str())
        .bind(request_id.as_str())
        .fetch_optional(pool)
        .await)?;
        Ok(row)
    }

    /// Marks an attempt as started. Returns false when the task is already terminal.
    /// The batch writer's statement with a batch of one, like every transition here.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn start_attempt(&self, start: Start) -> Result<bool, QueryError> {
        let outcome = self.write_batch(&[], &[start], &[], &[], &[]).await?;
        Ok(outcome.started.first().copied().unwrap_or(false))
    }

    /// Marks a task completed and stores its results and usage row, in one transaction.
    /// Returns false (and stores nothing) when the task was already terminal.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn complete_task(&self, completion: &Completion) -> Result<bool, QueryError> {
        let outcome = self.write_batch(&[], &[], &[completion], &[], &[]).await?;
        Ok(outcome.completed.first().copied().unwrap_or(false))
    }

    /// Claims a task for `claim.owner` until `claim.until_ms`: true when it was free,
    /// already this owner's, or its lease had lapsed; false while another owner's
    /// lease is live, or once the task is terminal.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn claim_task(&self, claim: &Claim) -> Result<bool, QueryError> {
        let outcome = self.write_batch(&[], &[], &[], &[], &[claim]).await?;
        Ok(outcome.claimed.first().copied().unwrap_or(false))
    }

    /// Marks a task failed. Returns false when it was already terminal.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn fail_task(&self, failure: &Failure) -> Result<bool, QueryError> {
        let outcome = self.write_batch(&[], &[], &[], &[failure], &[]).await?;
        Ok(outcome.failed.first().copied().unwrap_or(false))
    }

    /// A task's results, in insertion order.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn task_results(&self, task_id: i64) -> Result<Vec<TaskResult>, QueryError> {
        let rows: Vec<ResultRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, task_id, artifact_id, url, content_type, bytes, width, height, sha256, \
             model, seed, revised_prompt, text FROM task_results WHERE task_id = $1 ORDER BY id"
        )
        .bind(task_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| TaskResult {
                id: r.id,
                task_id: r.task_id,
                result: NewTaskResult {
                    artifact_id: r.artifact_id,
                    url: r.url,
                    content_type: r.content_type,
                    bytes: r.bytes,
                    width: r.width,
                    height: r.height,
                    sha256: r.sha256,
                    model: r.model,
                    seed: r.seed,
                    revised_prompt: r.revised_prompt,
                    text: r.text,
                },
            })
            .collect())
    }

    /// Sets named parameters of a task; a name set twice keeps the last value.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_task_parameters(
        &self,
        task_id: i64,
        parameters: &[(String, String)],
    ) -> Result<(), QueryError> {
        let done: Result<(), sqlx::Error> = on_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            for (name, value) in parameters {
                sqlx::query(
                    "INSERT INTO task_parameters (task_id, name, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (task_id, name) DO UPDATE SET value = excluded.value",
                )
                .bind(task_id)
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await);
        Ok(done?)
    }

    /// A task's parameters, by name.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn task_parameters(&self, task_id: i64) -> Result<Vec<(String, String)>, QueryError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, value FROM task_parameters WHERE task_id = $1 ORDER BY name"
        )
        .bind(task_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }
}
