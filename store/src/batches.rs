//! Batches (issue 18 §9): many commands posted at once, each a task row of its own
//! tagged with its batch. The task rows are created by the group-commit writer like
//! every other (with [`crate::NewTask::in_batch`]); this module keeps the batch row and
//! the dispatcher's bookkeeping on the tasks: which wait, which were queued on the
//! bus, which were cancelled before that.
//!
//! A task's `batch_state` moves `waiting → dispatched` or `waiting → cancelled`, each by
//! one conditional update, so a task is queued or cancelled, never both.

use chrono::{DateTime, Utc};
use switchyard_core::{RequestId, Tenant};

use crate::{QueryError, Store, StoredJson, Task, on_pool, tasks::TASK_COLUMNS};

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Its `POST` is still storing it (or died doing so: posting it again with the same
    /// idempotency key finishes it).
    Submitting,
    /// Tasks wait to be queued.
    Open,
    /// Every task was queued.
    Closed,
    /// The tasks that still waited were cancelled.
    Cancelled,
}

impl BatchState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitting => "submitting",
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(stored: &str) -> Result<Self, QueryError> {
        Ok(match stored {
            "submitting" => Self::Submitting,
            "open" => Self::Open,
            "closed" => Self::Closed,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(QueryError::Corrupt {
                    table: "batches",
                    detail: format!("unknown state '{other}'"),
                });
            }
        })
    }
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Its id.
    pub id: String,
    /// Owner of every command in it.
    pub tenant: Tenant,
    /// The client's key for a retried `POST`.
    pub idempotency_key: Option<String>,
    /// Where it is.
    pub state: BatchState,
    /// How many commands it holds.
    pub total: i64,
    /// Posted at.
    pub created_at: DateTime<Utc>,
    /// Closed or cancelled at.
    pub ended_at: Option<DateTime<Utc>>,
}

/// What [`Store::insert_batch`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchInsert {
    /// A new batch (state `submitting`).
    Created(Batch),
    /// The tenant had posted a batch with this idempotency key.
    Existing(Batch),
}

/// How many of a batch's tasks are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Not started (waiting for the dispatcher, or queued on the bus).
    pub queued: i64,
    /// Running.
    pub processing: i64,
    /// Completed.
    pub completed: i64,
    /// Failed (not counting the cancelled).
    pub failed: i64,
    /// Cancelled before they were queued.
    pub cancelled: i64,
}

/// A task the dispatcher took: queued (or to be queued) on the bus.
#[derive(Debug, Clone)]
pub struct DispatchedTask {
    /// Task id.
    pub id: i64,
    /// The command as stored.
    pub command: StoredJson,
}

/// A task of a batch whose cancellation took it before it was queued: it still needs
/// its terminal event and row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledTask {
    /// Task id.
    pub id: i64,
    /// Its idempotency key.
    pub request_id: RequestId,
    /// Its tenant.
    pub tenant: Tenant,
    /// Seq of the last event published for it.
    pub last_seq: i64,
}

/// A task of a batch as its results list shows it.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// Its index in the batch.
    pub index: i64,
    /// Whether it was cancelled before it was queued.
    pub cancelled: bool,
    /// The task.
    pub task: Task,
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: String,
    tenant: String,
    idempotency_key: Option<String>,
    state: String,
    total: i64,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

impl TryFrom<BatchRow> for Batch {
    type Error = QueryError;

    fn try_from(row: BatchRow) -> Result<Self, QueryError> {
        Ok(Self {
            id: row.id,
            tenant: Tenant::new(row.tenant).map_err(|e| QueryError::Corrupt {
                table: "batches",
                detail: e.to_string(),
            })?,
            idempotency_key: row.idempotency_key,
            state: BatchState::parse(&row.state)?,
            total: row.total,
            created_at: row.created_at,
            ended_at: row.ended_at,
        })
    }
}

const BATCH_COLUMNS: &str = "id, tenant, idempotency_key, state, total, created_at, ended_at";

/// Integers as an SQL list (ids read from the database, never input).
fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Stores a new batch in state `submitting`, unless the tenant posted one with the
    /// same idempotency key: that one is answered.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn insert_batch(
        &self,
        id: &str,
        tenant: &Tenant,
        idempotency_key: Option<&str>,
        total: i64,
    ) -> Result<BatchInsert, QueryError> {
        let sql = format!(
            "INSERT INTO batches (id, tenant, idempotency_key, state, total, created_at) \
             VALUES ($1, $2, $3, 'submitting', $4, $5) \
             ON CONFLICT (tenant, idempotency_key) DO NOTHING RETURNING {BATCH_COLUMNS}"
        );
        let created: Option<BatchRow> = on_pool!(self, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(id)
        .bind(tenant.as_str())
        .bind(idempotency_key)
        .bind(total)
        .bind(Utc::now())
        .fetch_optional(pool)
        .await)?;
        if let Some(row) = created {
            return Ok(BatchInsert::Created(row.try_into()?));
        }
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = $1 AND idempotency_key = $2"
        );
        let existing: Option<BatchRow> = on_pool!(self, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(tenant.as_str())
        .bind(idempotency_key)
        .fetch_optional(pool)
        .await)?;
        match existing {
            Some(row) => Ok(BatchInsert::Existing(row.try_into()?)),
            None => Err(QueryError::Corrupt {
                table: "batches",
                detail: "a conflicting batch vanished".to_owned(),
            }),
        }
    }

    /// The batch with this id.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn get_batch(&self, id: &str) -> Result<Option<Batch>, QueryError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1");
        let row: Option<BatchRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(Batch::try_from).transpose()
    }

    /// Moves a batch to `to` if it is in one of `from`; whether it did. `closed` and
    /// `cancelled` record the end.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_batch_state(
        &self,
        id: &str,
        from: &[BatchState],
        to: BatchState,
    ) -> Result<bool, QueryError> {
        let from = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let ended = matches!(to, BatchState::Closed | BatchState::Cancelled);
        let sql = format!(
            "UPDATE batches SET state = $1, ended_at = CASE WHEN $2 THEN $3 ELSE ended_at END \
             WHERE id = $4 AND state IN ({from})"
        );
        let affected = on_pool!(self, |pool| sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(to.as_str())
            .bind(ended)
            .bind(Utc::now())
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// The ids of the open batches, oldest first (at most `limit`).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn open_batches(&self, limit: i64) -> Result<Vec<String>, QueryError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM batches WHERE state = 'open' ORDER BY created_at, id LIMIT $1"
        )
        .bind(limit)
        .fetch_all(pool)
        .await)?)
    }

    /// How many batch tasks are queued on the bus or running, in the whole cluster.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn batch_tasks_in_flight(&self) -> Result<i64, QueryError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE batch_state = 'dispatched' \
             AND status IN ('pending', 'processing')"
        )
        .fetch_one(pool)
        .await)?)
    }

    /// Takes up to `limit` waiting tasks of batch `batch_id`, in index order, for the
    /// bus: marks them dispatched at `now_ms` and answers their commands. An empty
    /// answer with a positive `limit` means no task of the batch waits.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn dispatch_batch_tasks(
        &self,
        batch_id: &str,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<DispatchedTask>, QueryError> {
        let ids: Vec<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM tasks WHERE batch_id = $1 AND batch_state = 'waiting' \
             ORDER BY batch_index LIMIT $2"
        )
        .bind(batch_id)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The state in the condition: a task a cancellation took in between is not
        // dispatched as well.
        let sql = format!(
            "UPDATE tasks SET batch_state = 'dispatched', dispatched_ms = $1 \
             WHERE id IN ({}) AND batch_state = 'waiting' RETURNING id, command",
            id_list(&ids)
        );
        self.dispatched(&sql, now_ms).await
    }

    /// Tasks dispatched before `before_ms` that no runtime has started: their command
    /// may never have reached the bus (a crash between the two). Marked dispatched
    /// again at `now_ms` and answered, to be queued again (at most `limit`).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn redispatch_stale_batch_tasks(
        &self,
        before_ms: i64,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DispatchedTask>, QueryError> {
        let ids: Vec<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM tasks WHERE batch_state = 'dispatched' AND status = 'pending' \
             AND dispatched_ms < $1 ORDER BY dispatched_ms LIMIT $2"
        )
        .bind(before_ms)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE tasks SET dispatched_ms = $1 WHERE id IN ({}) \
             AND batch_state = 'dispatched' AND status = 'pending' RETURNING id, command",
            id_list(&ids)
        );
        self.dispatched(&sql, now_ms).await
    }

    async fn dispatched(&self, sql: &str, now_ms: i64) -> Result<Vec<DispatchedTask>, QueryError> {
        let rows: Vec<(i64, sqlx::types::Json<Box<serde_json::value::RawValue>>)> =
            on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now_ms)
                .fetch_all(pool)
                .await)?;
        let mut tasks: Vec<DispatchedTask> = rows
            .into_iter()
            .map(|(id, command)| DispatchedTask {
                id,
                command: StoredJson(command.0),
            })
            .collect();
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
    }

    /// Cancels the tasks of batch `batch_id` that wait (not queued yet): they are
    /// answered, to be failed with their terminal event.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn cancel_batch_tasks(
        &self,
        batch_id: &str,
    ) -> Result<Vec<CancelledTask>, QueryError> {
        self.cancelled(
            "UPDATE tasks SET batch_state = 'cancelled' WHERE batch_id = $1 \
             AND batch_state = 'waiting' RETURNING id, request_id, tenant, last_seq",
            Some(batch_id),
        )
        .await
    }

    /// Cancelled tasks whose failure was never written (a crash right after the
    /// cancellation), at most 500.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn cancelled_batch_tasks_unfailed(&self) -> Result<Vec<CancelledTask>, QueryError> {
        self.cancelled(
            "SELECT id, request_id, tenant, last_seq FROM tasks WHERE batch_state = 'cancelled' \
             AND status = 'pending' ORDER BY id LIMIT 500",
            None,
        )
        .await
    }

    async fn cancelled(
        &self,
        sql: &'static str,
        batch_id: Option<&str>,
    ) -> Result<Vec<CancelledTask>, QueryError> {
        let rows: Vec<(i64, String, String, i64)> = on_pool!(self, |pool| {
            let query = sqlx::query_as(sql);
            let query = match batch_id {
                Some(id) => query.bind(id),
                None => query,
            };
            query.fetch_all(pool).await
        })?;
        let corrupt = |e: switchyard_core::IdError| QueryError::Corrupt {
            table: "tasks",
            detail: e.to_string(),
        };
        let mut tasks = rows
            .into_iter()
            .map(|(id, request_id, tenant, last_seq)| {
                Ok(CancelledTask {
                    id,
                    request_id: RequestId::new(request_id).map_err(corrupt)?,
                    tenant: Tenant::new(tenant).map_err(corrupt)?,
                    last_seq,
                })
            })
            .collect::<Result<Vec<_>, QueryError>>()?;
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
    }

    /// Whether any task of batch `batch_id` still waits to be queued.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn batch_has_waiting(&self, batch_id: &str) -> Result<bool, QueryError> {
        let waiting: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM tasks WHERE batch_id = $1 AND batch_state = 'waiting' LIMIT 1"
        )
        .bind(batch_id)
        .fetch_optional(pool)
        .await)?;
        Ok(waiting.is_some())
    }

    /// How many of batch `batch_id`'s tasks are where.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn batch_counts(&self, batch_id: &str) -> Result<BatchCounts, QueryError> {
        let rows: Vec<(String, Option<String>, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT status, batch_state, COUNT(*) FROM tasks WHERE batch_id = $1 \
             GROUP BY status, batch_state"
        )
        .bind(batch_id)
        .fetch_all(pool)
        .await)?;
        let mut counts = BatchCounts::default();
        for (status, state, count) in rows {
            let slot = match (status.as_str(), state.as_deref()) {
                (_, Some("cancelled")) => &mut counts.cancelled,
                ("pending", _) => &mut counts.queued,
                ("processing", _) => &mut counts.processing,
                ("completed", _) => &mut counts.completed,
                _ => &mut counts.failed,
            };
            *slot += count;
        }
        Ok(counts)
    }

    /// Batch `batch_id`'s tasks after index `after`, in index order (at most `limit`).
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn batch_items(
        &self,
        batch_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<BatchItem>, QueryError> {
        use sqlx::{FromRow, Row};
        let sql = format!(
            "SELECT batch_index, batch_state, {TASK_COLUMNS} FROM tasks \
             WHERE batch_id = $1 AND batch_index > $2 ORDER BY batch_index LIMIT $3"
        );
        let items = on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(batch_id)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let state: Option<String> = row.try_get("batch_state")?;
                    Ok(BatchItem {
                        index: row.try_get("batch_index")?,
                        cancelled: state.as_deref() == Some("cancelled"),
                        task: Task::from_row(row)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(items)
    }
}

impl Store {
    /// Deletes (at most `limit`; with `limit` 0 only counts) the batches that ended
    /// before `before` and have no task left (retention deleted them): shells that
    /// report nothing. Returns how many.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn expire_empty_batches(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueryError> {
        const EMPTY: &str = "state IN ('closed', 'cancelled') AND ended_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.batch_id = batches.id)";
        if limit == 0 {
            let sql = format!("SELECT COUNT(*) FROM batches WHERE {EMPTY}");
            let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(sqlx::AssertSqlSafe(
                sql.as_str()
            ))
            .bind(before)
            .fetch_one(pool)
            .await)?;
            return Ok(u64::try_from(count).unwrap_or(0));
        }
        let sql = format!(
            "DELETE FROM batches WHERE id IN (SELECT id FROM batches WHERE {EMPTY} LIMIT $2)"
        );
        Ok(on_pool!(self, |pool| sqlx::query(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(before)
        .bind(i64::from(limit))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?)
    }
}
