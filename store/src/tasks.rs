//! Tasks (one per `(tenant, request_id)`), their results and parameters.
//!
//! A task moves `pending → processing → completed | failed` and never leaves a
//! terminal status: [`Store::complete_task`] and [`Store::fail_task`] report whether
//! they made the transition, so a caller that lost a race publishes no second terminal
//! event.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde_json::{Value, value::RawValue};
use sqlx::types::Json;
use switchyard_core::{Command, ConfigId, ErrorCode};

use super::{Store, StoreError, on_pool};

/// Where a task is in its life (the seed's status values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Accepted, not started.
    Pending,
    /// An attempt is under way.
    Processing,
    /// Terminal: succeeded.
    Completed,
    /// Terminal: failed.
    Failed,
}

impl TaskStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    /// `completed` or `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(TaskStatus::Pending),
            "processing" => Ok(TaskStatus::Processing),
            "completed" => Ok(TaskStatus::Completed),
            "failed" => Ok(TaskStatus::Failed),
            other => Err(format!("unknown task status '{other}'")),
        }
    }
}

/// JSON as stored: written without building a `Value` tree, read back without parsing
/// one.
#[derive(Debug, Clone)]
pub struct StoredJson(Box<RawValue>);

impl StoredJson {
    /// Encodes a value.
    ///
    /// # Errors
    /// When serde cannot encode it (e.g. a map with non-string keys).
    pub fn encode(value: &(impl serde::Serialize + ?Sized)) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// Encodes a value whose type always encodes (derived `Serialize` of plain data),
    /// as `null` otherwise.
    pub fn of(value: &(impl serde::Serialize + ?Sized)) -> Self {
        Self::encode(value).unwrap_or_else(|_| Self(RawValue::NULL.to_owned()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for StoredJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl serde::Serialize for StoredJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What is stored when a command is accepted.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Idempotency key, with `tenant`.
    pub request_id: String,
    /// Owner.
    pub tenant: String,
    /// End user.
    pub user: Option<String>,
    /// Kind (as sent: an invalid command may name an unknown one).
    pub kind: String,
    /// Prompt (image kinds) or last user message (text).
    pub prompt: Option<String>,
    /// Input image references (`image.edit`).
    pub input_images: Option<Value>,
    /// Requested model.
    pub model: Option<String>,
    /// Requested size.
    pub size: Option<String>,
    /// The whole command, so any process can resume it.
    pub command: StoredJson,
    /// Named generation parameters (`task_parameters` rows): the input's settings and
    /// the command's `params`, as text.
    pub parameters: Vec<(String, String)>,
    /// The key of the generation input ([`cache_key`]), so a later `cache: true`
    /// command can find this one's result; only for a `cache: true` command.
    pub cache_key: Option<String>,
    /// `last_seq` to store: 1 for a valid command, whose `accepted` event is seq 1 (so
    /// a process that resumes it after a crash continues after it even when the crash
    /// came before the attempt start was recorded), 0 for an invalid one (its `failed`
    /// event is seq 1).
    pub last_seq: i64,
}

/// What makes two commands "identical requests" for `cache: true` (PROTOCOL.md §2):
/// the first half of the hex SHA-256 of the tenant, the kind, the whole input, the route's instance,
/// provider type and model, and the params — as canonical JSON (object keys sorted),
/// so the order a client wrote them in does not matter. The tenant is part of it:
/// one tenant's results never answer another's requests.
pub fn cache_key(command: &Command) -> String {
    use sha2::{Digest, Sha256};
    let key = serde_json::json!([
        command.tenant.as_str(),
        command.kind.as_str(),
        &command.input,
        &command.route.config_id,
        &command.route.provider,
        &command.route.model,
        &command.params,
    ]);
    let mut canonical = Vec::new();
    write_canonical(&key, &mut canonical);
    // 128 bits: index entries stay small, and a collision within one tenant is out
    // of reach (2^64 requests).
    hex::encode(&Sha256::digest(&canonical)[..16])
}

/// JSON with object keys sorted at every level.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(key.clone()), out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// The `task_parameters` rows of a command: every generation setting it gives.
fn parameters_of(command: &Command) -> Vec<(String, String)> {
    let input = &command.input;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push((name.to_owned(), value));
        }
    };
    put("n", input.n.map(|n| n.to_string()));
    put("size", input.size.clone());
    put("aspect_ratio", input.aspect_ratio.clone());
    put("quality", input.quality.clone());
    put("style", input.style.clone());
    put("seed", input.seed.map(|s| s.to_string()));
    put("output_format", input.output_format.clone());
    put("negative_prompt", input.negative_prompt.clone());
    put("max_tokens", input.max_tokens.map(|m| m.to_string()));
    put("temperature", input.temperature.map(|t| t.to_string()));
    put("top_p", input.top_p.map(|t| t.to_string()));
    put("stream", input.stream.map(|s| s.to_string()));
    put(
        "route.strategy",
        serde_json::to_value(command.route.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
    );
    for (key, value) in &command.params {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push((format!("params.{key}"), text));
    }
    out
}

impl NewTask {
    /// The task row for a command.
    pub fn from_command(command: &Command) -> Self {
        let input = &command.input;
        let prompt = input.prompt.clone().or_else(|| {
            input
                .messages
                .as_ref()
                .and_then(|m| m.iter().rev().find(|m| !m.content.is_empty()))
                .map(|m| m.content.clone())
        });
        Self {
            request_id: command.request_id.to_string(),
            tenant: command.tenant.to_string(),
            user: command.user.clone(),
            kind: command.kind.as_str().to_owned(),
            prompt,
            input_images: input
                .images
                .as_ref()
                .and_then(|images| serde_json::to_value(images).ok()),
            model: command.route.model.clone(),
            size: input.size.clone(),
            command: StoredJson::of(command),
            parameters: parameters_of(command),
            // Only requests that opt into the cache are entries of it: the others
            // pay neither the hash nor the index entry.
            cache_key: command.cache.then(|| cache_key(command)),
            last_seq: 1,
        }
    }
}

impl NewTask {
    /// The task row for a command that did not parse or validate: what the envelope
    /// and subject say, with the raw body kept as the command.
    pub fn invalid(request_id: &str, tenant: &str, kind: &str, body: &[u8]) -> Self {
        let command = std::str::from_utf8(body)
            .ok()
            .and_then(|text| RawValue::from_string(text.to_owned()).ok())
            .map(StoredJson)
            .unwrap_or_else(|| {
                StoredJson::of(&serde_json::json!({"raw": String::from_utf8_lossy(body)}))
            });
        Self {
            request_id: request_id.to_owned(),
            tenant: tenant.to_owned(),
            user: None,
            kind: kind.to_owned(),
            prompt: None,
            input_images: None,
            model: None,
            size: None,
            command,
            parameters: Vec::new(),
            cache_key: None,
            last_seq: 0,
        }
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Row id (`task_id` in events).
    pub id: i64,
    /// Idempotency key, with `tenant`.
    pub request_id: String,
    /// Owner.
    pub tenant: String,
    /// End user.
    pub user: Option<String>,
    /// Kind (as sent).
    pub kind: String,
    /// Prompt.
    pub prompt: Option<String>,
    /// Input image references.
    pub input_images: Option<Value>,
    /// Requested model.
    pub model: Option<String>,
    /// Requested size.
    pub size: Option<String>,
    /// Status.
    pub status: TaskStatus,
    /// The instance of the last attempt.
    pub provider_config_id: Option<ConfigId>,
    /// Attempts made so far.
    pub attempts: i64,
    /// The command as accepted.
    pub command: StoredJson,
    /// Final error code.
    pub error_code: Option<String>,
    /// Final error message.
    pub error_message: Option<String>,
    /// The provider's raw answer, secrets removed.
    pub raw_response: Option<Value>,
    /// The terminal event as published, for replies to duplicates.
    pub terminal_event: Option<Value>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// First attempt at.
    pub started_at: Option<DateTime<Utc>>,
    /// Terminal at.
    pub completed_at: Option<DateTime<Utc>>,
    /// Seq of the last event published for it.
    pub last_seq: i64,
}

/// What [`Store::create_task`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskInsert {
    /// A new task.
    Created(Task),
    /// The `(tenant, request_id)` existed: this is a duplicate.
    Existing(Task),
}

impl TaskInsert {
    /// The task either way.
    pub fn task(&self) -> &Task {
        match self {
            TaskInsert::Created(t) | TaskInsert::Existing(t) => t,
        }
    }
}

/// One output to store with a completed task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTaskResult {
    /// Artifact id (images).
    pub artifact_id: Option<String>,
    /// Fetch URL (images).
    pub url: Option<String>,
    /// Mime type.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub bytes: Option<i64>,
    /// Pixels.
    pub width: Option<i64>,
    /// Pixels.
    pub height: Option<i64>,
    /// Hex SHA-256.
    pub sha256: Option<String>,
    /// Model that made it.
    pub model: Option<String>,
    /// Seed used.
    pub seed: Option<i64>,
    /// Provider-rewritten prompt.
    pub revised_prompt: Option<String>,
    /// Text output.
    pub text: Option<String>,
}

/// A stored result.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    /// Row id.
    pub id: i64,
    /// Owning task.
    pub task_id: i64,
    /// The stored values.
    pub result: NewTaskResult,
}

#[derive(sqlx::FromRow)]
pub(super) struct TaskRow {
    id: i64,
    pub(super) request_id: String,
    pub(super) tenant: String,
    user_id: Option<String>,
    kind: String,
    prompt: Option<String>,
    input_images: Option<Json<Value>>,
    model: Option<String>,
    size: Option<String>,
    status: String,
    provider_config_id: Option<i64>,
    attempts: i64,
    command: Json<Box<RawValue>>,
    error_code: Option<String>,
    error_message: Option<String>,
    raw_response: Option<Json<Value>>,
    terminal_event: Option<Json<Value>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    last_seq: i64,
}

#[derive(sqlx::FromRow)]
struct ResultRow {
    id: i64,
    task_id: i64,
    artifact_id: Option<String>,
    url: Option<String>,
    content_type: Option<String>,
    bytes: Option<i64>,
    width: Option<i64>,
    height: Option<i64>,
    sha256: Option<String>,
    model: Option<String>,
    seed: Option<i64>,
    revised_prompt: Option<String>,
    text: Option<String>,
}

pub(super) const TASK_COLUMNS: &str = "id, request_id, tenant, user_id, kind, prompt, input_images, model, \
    size, status, provider_config_id, attempts, command, error_code, error_message, \
    raw_response, terminal_event, created_at, started_at, completed_at, last_seq";

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;
    fn try_from(row: TaskRow) -> Result<Self, Self::Error> {
        let corrupt = |detail: String| StoreError::Corrupt {
            table: "tasks",
            detail,
        };
        Ok(Task {
            id: row.id,
            kind: row.kind,
            status: row.status.parse().map_err(corrupt)?,
            request_id: row.request_id,
            tenant: row.tenant,
            user: row.user_id,
            prompt: row.prompt,
            input_images: row.input_images.map(|j| j.0),
            model: row.model,
            size: row.size,
            provider_config_id: row.provider_config_id.map(ConfigId),
            attempts: row.attempts,
            command: StoredJson(row.command.0),
            error_code: row.error_code,
            error_message: row.error_message,
            raw_response: row.raw_response.map(|j| j.0),
            terminal_event: row.terminal_event.map(|j| j.0),
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            last_seq: row.last_seq,
        })
    }
}

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
        usage: Option<&super::UsageRecord>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        if let super::Pool::Postgres(pool) = &self.pool {
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
                super::usage::bind_usage(sqlx::query(super::usage::INSERT_USAGE), usage, now)
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
    usage: Option<&super::UsageRecord>,
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
pub(super) fn bind_result<'q, DB: sqlx::Database>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn command(json: Value) -> Command {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn cache_keys_match_identical_requests_only() {
        let base = serde_json::json!({"request_id": "r1", "tenant": "acme", "kind": "image.generate",
            "input": {"prompt": "a fox", "seed": 7}, "params": {"a": 1, "b": {"x": 1, "y": 2}}});
        let key = cache_key(&command(base.clone()));
        // Another request id, user or reply_to, and another key order: the same request.
        let same: Value = serde_json::from_str(
            r#"{"params": {"b": {"y": 2, "x": 1}, "a": 1}, "tenant": "acme", "user": "u",
                "request_id": "r2", "reply_to": "_INBOX.x", "kind": "image.generate",
                "input": {"seed": 7, "prompt": "a fox"}}"#,
        )
        .unwrap();
        assert_eq!(cache_key(&command(same)), key);
        for (path, value) in [
            ("tenant", serde_json::json!("other")),
            ("input", serde_json::json!({"prompt": "a fox", "seed": 8})),
            ("route", serde_json::json!({"model": "sdxl"})),
            ("params", serde_json::json!({"a": 2})),
        ] {
            let mut other = base.clone();
            other[path] = value;
            assert_ne!(cache_key(&command(other)), key, "{path}");
        }
    }
}
