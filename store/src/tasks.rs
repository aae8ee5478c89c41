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
use switchyard_core::{ConfigId, RequestId, Tenant};

mod new_task;
mod queries;

pub use new_task::{NewTask, cache_key};

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
pub struct StoredJson(pub(crate) Box<RawValue>);

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

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Row id (`task_id` in events).
    pub id: i64,
    /// Idempotency key, with `tenant`.
    pub request_id: RequestId,
    /// Owner.
    pub tenant: Tenant,
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
    /// Admission restricted it to its tenant's own accounts (recorded at its start).
    pub own_accounts_only: bool,
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
pub(super) struct ResultRow {
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

pub(crate) const TASK_COLUMNS: &str = "id, request_id, tenant, user_id, kind, prompt, input_images, model, \
    size, status, provider_config_id, attempts, command, error_code, error_message, \
    raw_response, terminal_event, created_at, started_at, completed_at, last_seq, \
    own_accounts_only";

/// A `tasks` row read back: the one place its columns are decoded (the columns are
/// [`TASK_COLUMNS`]; writes bind [`NewTask`] and the transition types).
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for Task
where
    &'r str: sqlx::ColumnIndex<R>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Json<Value>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Json<Box<RawValue>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<DateTime<Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        fn corrupt(column: &str, detail: impl fmt::Display) -> sqlx::Error {
            sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: format!("tasks.{column}: {detail}").into(),
            }
        }
        let json = |column: &'r str| -> Result<Option<Value>, sqlx::Error> {
            Ok(row.try_get::<Option<Json<Value>>, _>(column)?.map(|j| j.0))
        };
        let status: String = row.try_get("status")?;
        let request_id: String = row.try_get("request_id")?;
        let tenant: String = row.try_get("tenant")?;
        let command: Json<Box<RawValue>> = row.try_get("command")?;
        Ok(Task {
            id: row.try_get("id")?,
            request_id: RequestId::new(request_id).map_err(|e| corrupt("request_id", e))?,
            tenant: Tenant::new(tenant).map_err(|e| corrupt("tenant", e))?,
            user: row.try_get("user_id")?,
            kind: row.try_get("kind")?,
            prompt: row.try_get("prompt")?,
            input_images: json("input_images")?,
            model: row.try_get("model")?,
            size: row.try_get("size")?,
            status: status.parse().map_err(|e| corrupt("status", e))?,
            provider_config_id: row
                .try_get::<Option<i64>, _>("provider_config_id")?
                .map(ConfigId),
            attempts: row.try_get("attempts")?,
            command: StoredJson(command.0),
            error_code: row.try_get("error_code")?,
            error_message: row.try_get("error_message")?,
            raw_response: json("raw_response")?,
            terminal_event: json("terminal_event")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
            last_seq: row.try_get("last_seq")?,
            own_accounts_only: row.try_get("own_accounts_only")?,
        })
    }
}
