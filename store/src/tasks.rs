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
use switchyard_core::ConfigId;

use super::StoreError;

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
