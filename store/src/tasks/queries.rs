//! The task queries: create (the idempotency check), read, start an attempt, and the
//! terminal transitions, which report whether they happened.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use switchyard_core::{ConfigId, ErrorCode};

use super::{
    NewTask, NewTaskResult, ResultRow, TASK_COLUMNS, Task, TaskInsert, TaskResult, TaskRow,
};
use crate::{Store, StoreError, on_pool};

impl Store {
    /// Stores a new task, or returns the existing one with the same
    /// `(tenant, request_id)`: the idempotency check.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn create_task(&self, task: &NewTask) -> Result<TaskInsert, StoreError> {
        // The batch writer's statement with a batch of one: one place for the insert
        // and its parameter rows.
        let outcome = self.write_batch(&[task], &[], &[], &[]).await?;
        outcome
            .created
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt {
                table: "tasks",
                detail: "the insert returned nothing".to_owned(),
            })
    }

    /// A task by id.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row: Option<TaskRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(Task::try_from).transpose()
    }

    /// The terminal event of the latest task of `tenant` that completed since `since`
    /// with this [`cache_key`]: an identical earlier request's result.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn cached_result(
        &self,
        tenant: &str,
        cache_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Value>, StoreError> {
        let row: Option<Json<Value>> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT terminal_event FROM tasks WHERE cache_key = $1 AND tenant = $2 \
             AND status = 'completed' AND completed_at >= $3 AND terminal_event IS NOT NULL \
             ORDER BY completed_at DESC LIMIT 1"
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
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn find_task(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<Task>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tenant = $1 AND request_id = $2");
        let row: Option<TaskRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(tenant)
        .bind(request_id)
        .fetch_optional(pool)
        .await)?;
        row.map(Task::try_from).transpose()
    }

    /// Marks an attempt as started. Returns false when the task is already terminal.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn start_attempt(
        &self,
        id: i64,
        config_id: ConfigId,
        attempt: i64,
        seq: i64,
    ) -> Result<bool, StoreError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE tasks SET status = 'processing', provider_config_id = $2, attempts = $3, \
             started_at = COALESCE(started_at, $4), last_seq = $5 \
             WHERE id = $1 AND status IN ('pending', 'processing')"
        )
        .bind(id)
        .bind(config_id.0)
        .bind(attempt)
        .bind(Utc::now())
        .bind(seq)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// Marks a task completed and stores its results, in one transaction. Returns false
    /// (and stores nothing) when the task was already terminal.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn complete_task(
        &self,
        id: i64,
        config_id: Option<ConfigId>,
        attempts: i64,
        raw_response: Option<&Value>,
        results: &[NewTaskResult],
        terminal_event: &(impl serde::Serialize + Sync + ?Sized),
    ) -> Result<bool, StoreError> {
        self.complete_task_with_usage(
            id,
            config_id,
            attempts,
            raw_response,
            results,
            terminal_event,
            None,
        )
        .await
    }

    /// [`Store::complete_task`], also appending the usage row in the same transaction
    /// (one commit per finished command instead of two).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    #[expect(
        clippy::too_many_arguments,
        reason = "the columns of one terminal write"
    )]
    pub async fn complete_task_with_usage(
        &self,
        id: i64,
        config_id: Option<ConfigId>,
        attempts: i64,
        raw_response: Option<&Value>,
        results: &[NewTaskResult],
        terminal_event: &(impl serde::Serialize + Sync + ?Sized),
        usage: Option<&crate::UsageRecord>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        if let crate::Pool::Postgres(pool) = &self.pool {
            return Ok(complete_in_one_statement(
                pool,
                id,
                config_id,
                attempts,
                raw_response,
                results,
                terminal_event,
                usage,
                now,
            )
            .await?);
        }
        let done: Result<bool, sqlx::Error> = on_pool!(self, |pool| {
            async {
            let mut tx = pool.begin().await?;
            let affected = sqlx::query(
                "UPDATE tasks SET status = 'completed', provider_config_id = $2, attempts = $3, \
                 raw_response = $4, terminal_event = $5, completed_at = $6, \
                 started_at = COALESCE(started_at, $6) \
                 WHERE id = $1 AND status IN ('pending', 'processing')",
            )
            .bind(id)
            .bind(config_id.map(|c| c.0))
            .bind(attempts)
            .bind(raw_response.map(Json))
            .bind(Json(terminal_event))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if affected == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            for r in results {
                bind_result(
                    sqlx::query(
                        "INSERT INTO task_results (task_id, artifact_id, url, content_type, \
                         bytes, width, height, sha256, model, seed, revised_prompt, text, \
                         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    ),
                    id,
                    r,
                    now,
                )
                .execute(&mut *tx)
                .await?;
            }
            if let Some(usage) = usage {
                crate::usage::bind_usage(sqlx::query(crate::usage::INSERT_USAGE), usage, now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
        });
        Ok(done?)
    }

    /// Marks a task failed. Returns false when it was already terminal.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn fail_task(
        &self,
        id: i64,
        config_id: Option<ConfigId>,
        attempts: i64,
        code: ErrorCode,
        message: &str,
        terminal_event: &(impl serde::Serialize + Sync + ?Sized),
    ) -> Result<bool, StoreError> {
        let affected = on_pool!(self, |pool| {
            sqlx::query(
            "UPDATE tasks SET status = 'failed', provider_config_id = COALESCE($2, provider_config_id), \
             attempts = $3, error_code = $4, error_message = $5, terminal_event = $6, \
             completed_at = $7 WHERE id = $1 AND status IN ('pending', 'processing')"
        )
        .bind(id)
        .bind(config_id.map(|c| c.0))
        .bind(attempts)
        .bind(code.as_str())
        .bind(message)
        .bind(Json(terminal_event))
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(affected > 0)
    }

    /// A task's results, in insertion order.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn task_results(&self, task_id: i64) -> Result<Vec<TaskResult>, StoreError> {
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
    /// [`StoreError::Database`].
    pub async fn set_task_parameters(
        &self,
        task_id: i64,
        parameters: &[(String, String)],
    ) -> Result<(), StoreError> {
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
    /// [`StoreError::Database`].
    pub async fn task_parameters(&self, task_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, value FROM task_parameters WHERE task_id = $1 ORDER BY name"
        )
        .bind(task_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }
}

/// PostgreSQL: the terminal transition, its results and its usage row in one statement
/// (data-modifying CTEs), so a finished command costs one round trip. The results and
/// usage are written only when the transition happened.
#[expect(
    clippy::too_many_arguments,
    reason = "the columns of one terminal write"
)]
async fn complete_in_one_statement(
    pool: &sqlx::PgPool,
    id: i64,
    config_id: Option<ConfigId>,
    attempts: i64,
    raw_response: Option<&Value>,
    results: &[NewTaskResult],
    terminal_event: &(impl serde::Serialize + Sync + ?Sized),
    usage: Option<&crate::UsageRecord>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let column =
        |f: fn(&NewTaskResult) -> Option<String>| results.iter().map(f).collect::<Vec<_>>();
    let number = |f: fn(&NewTaskResult) -> Option<i64>| results.iter().map(f).collect::<Vec<_>>();
    let done: i64 = sqlx::query_scalar(
        "WITH done AS ( \
           UPDATE tasks SET status = 'completed', provider_config_id = $2, attempts = $3, \
             raw_response = $4, terminal_event = $5, completed_at = $6, \
             started_at = COALESCE(started_at, $6) \
           WHERE id = $1 AND status IN ('pending', 'processing') RETURNING id \
         ), results AS ( \
           INSERT INTO task_results (task_id, artifact_id, url, content_type, bytes, width, \
             height, sha256, model, seed, revised_prompt, text, created_at) \
           SELECT done.id, r.artifact_id, r.url, r.content_type, r.bytes, r.width, r.height, \
             r.sha256, r.model, r.seed, r.revised_prompt, r.text, $6 \
           FROM done, UNNEST($7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], \
             $12::bigint[], $13::text[], $14::text[], $15::bigint[], $16::text[], $17::text[]) \
             WITH ORDINALITY AS r(artifact_id, url, content_type, bytes, width, height, sha256, \
             model, seed, revised_prompt, text, position) \
           ORDER BY r.position RETURNING 1 \
         ), usage AS ( \
           INSERT INTO usage_log (task_id, tenant, user_id, provider_config_id, provider, model, \
             kind, images, input_tokens, output_tokens, cost_usd, created_at) \
           SELECT done.id, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $6 FROM done WHERE $18 \
           RETURNING 1 \
         ) SELECT COUNT(*) FROM done",
    )
    .bind(id)
    .bind(config_id.map(|c| c.0))
    .bind(attempts)
    .bind(raw_response.map(Json))
    .bind(Json(terminal_event))
    .bind(now)
    .bind(column(|r| r.artifact_id.clone()))
    .bind(column(|r| r.url.clone()))
    .bind(column(|r| r.content_type.clone()))
    .bind(number(|r| r.bytes))
    .bind(number(|r| r.width))
    .bind(number(|r| r.height))
    .bind(column(|r| r.sha256.clone()))
    .bind(column(|r| r.model.clone()))
    .bind(number(|r| r.seed))
    .bind(column(|r| r.revised_prompt.clone()))
    .bind(column(|r| r.text.clone()))
    .bind(usage.is_some())
    .bind(usage.map(|u| u.tenant.clone()))
    .bind(usage.and_then(|u| u.user.clone()))
    .bind(usage.and_then(|u| u.config_id.map(|c| c.0)))
    .bind(usage.map(|u| u.provider.clone()))
    .bind(usage.and_then(|u| u.model.clone()))
    .bind(usage.map(|u| u.kind.as_str()))
    .bind(usage.map_or(0, |u| u.images))
    .bind(usage.map_or(0, |u| u.input_tokens))
    .bind(usage.map_or(0, |u| u.output_tokens))
    .bind(usage.map_or(0.0, |u| u.cost_usd))
    .fetch_one(pool)
    .await?;
    Ok(done > 0)
}

/// Binds the 13 columns of one `task_results` row (task id first, `created_at` last),
/// for either database.
pub(crate) fn bind_result<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    task_id: i64,
    r: &'q NewTaskResult,
    now: DateTime<Utc>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(task_id)
        .bind(&r.artifact_id)
        .bind(&r.url)
        .bind(&r.content_type)
        .bind(r.bytes)
        .bind(r.width)
        .bind(r.height)
        .bind(&r.sha256)
        .bind(&r.model)
        .bind(r.seed)
        .bind(&r.revised_prompt)
        .bind(&r.text)
        .bind(now)
}
