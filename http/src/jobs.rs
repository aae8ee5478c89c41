//! Jobs over HTTP (PROTOCOL.md §4): `POST /v1/jobs` takes a command body and queues
//! it, `GET /v1/jobs/{id}` answers its status and result, `GET /v1/jobs/{id}/events`
//! streams its events as server-sent events. The admin token reaches every tenant's
//! jobs; a tenant key only its own tenant's.
//!
//! A job is a task row and its id is the row id (the `task_id` of its `accepted`
//! event). `POST` validates the command and hands it to the pipeline, which stores the
//! row, publishes `accepted` and then the command on the bus like any upstream publisher, so the job is `queued` before
//! any runtime has pulled it; the runtime that pulls it finds the row and continues the
//! event sequence after `accepted`, as every redelivery does. A `POST` with a
//! `request_id` the tenant already used answers that job (the idempotency key), and
//! queues it again only while it is still `queued` (the bus drops the copy within its
//! duplicate window) — so a `POST` retried after a bus failure is not lost.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{self, KeepAlive, Sse},
    },
};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt, stream};
use serde::Serialize;
use serde_json::{Value, json};
use switchyard_core::{Command, Event};
use switchyard_runtime::facade::{
    EnqueueError, Enqueued, EventFilter, Gateway, Task, TaskStatus, TemplateError,
    random_alphanumeric,
};
use utoipa::ToSchema;

use crate::{
    caller::Caller,
    error::{ApiError, ErrorBody},
    state::AdminApi,
};

/// How long `…/events` waits for a finished job's events to be replayed from the bus
/// before it sends the stored terminal event instead (the bus keeps events for a
/// limited time).
const REPLAY_GRACE: Duration = Duration::from_secs(2);
/// The longest a job's event stream stays open (a job with a `deadline_ms` ends its
/// stream at the deadline, plus a grace for the terminal event): a client cannot hold
/// a connection without limit.
const SSE_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// A request id for a job posted without one: 26 characters of `[0-9A-Za-z]`.
fn new_request_id() -> String {
    random_alphanumeric(26)
}

/// A job's status (PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobStatus {
    /// Stored and on the bus; no runtime has pulled it yet.
    Queued,
    /// A runtime works on it.
    Processing,
    /// It completed.
    Done,
    /// It failed.
    Failed,
}

impl From<TaskStatus> for JobStatus {
    fn from(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Pending => Self::Queued,
            TaskStatus::Processing => Self::Processing,
            TaskStatus::Completed => Self::Done,
            TaskStatus::Failed => Self::Failed,
        }
    }
}

/// A job as `GET /v1/jobs/{id}` shows it. `result` and `error` come from the stored
/// terminal event, so they read exactly as that event does.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Job {
    /// The job id (its task id).
    id: i64,
    /// The idempotency key, with the tenant.
    request_id: String,
    /// The owner.
    tenant: String,
    /// The command's kind.
    kind: String,
    /// Where it is.
    status: JobStatus,
    /// What it made, once done.
    result: Option<JobResult>,
    /// Why it failed, once failed: `{code, message, retryable, provider}`.
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
    /// Attempts made so far.
    attempts: i64,
    /// The instance of the last attempt.
    provider_config_id: Option<i64>,
    /// Accepted at.
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// First attempt at.
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<DateTime<Utc>>,
    /// Finished at.
    #[schema(value_type = Option<String>, format = DateTime)]
    completed_at: Option<DateTime<Utc>>,
}

/// What a done job made, as its `completed` event says.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobResult {
    /// The output: `{images, text}`.
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    /// `{images, input_tokens, output_tokens, cost_usd}`.
    #[schema(value_type = Option<Object>)]
    usage: Option<Value>,
    /// The instance that answered.
    #[schema(value_type = Option<Object>)]
    provider: Option<Value>,
    /// Whether the answer came from the cache.
    #[schema(value_type = bool)]
    cached: Value,
    /// Present and true when every provider failed and the answer is an earlier one
    /// (`route.fallback_to_cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    stale: Option<Value>,
}

impl From<&Task> for Job {
    fn from(task: &Task) -> Self {
        let terminal = task.terminal_event.as_ref();
        let field = |name: &str| terminal.and_then(|t| t.get(name)).cloned();
        let result = (task.status == TaskStatus::Completed).then(|| JobResult {
            output: field("output"),
            usage: field("usage"),
            provider: field("provider"),
            cached: field("cached").unwrap_or(Value::Bool(false)),
            stale: field("stale"),
        });
        let error = (task.status == TaskStatus::Failed).then(|| {
            field("error")
                .unwrap_or_else(|| json!({"code": task.error_code, "message": task.error_message}))
        });
        Self {
            id: task.id,
            request_id: task.request_id.to_string(),
            tenant: task.tenant.to_string(),
            kind: task.kind.clone(),
            status: task.status.into(),
            result,
            error,
            attempts: task.attempts,
            provider_config_id: task.provider_config_id.map(|c| c.0),
            created_at: task.created_at,
            started_at: task.started_at,
            completed_at: task.completed_at,
        }
    }
}

/// The answer of a `POST /v1/jobs` that queued the job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobQueued {
    /// The job id (its task id).
    id: i64,
    /// Where it is: `queued`, or further along for a retried `POST`.
    status: JobStatus,
    /// The idempotency key, generated if the command had none.
    request_id: String,
    /// The owner.
    tenant: String,
}

/// The body of a posted command, its tenant checked against a tenant key and given a
/// `request_id` if it has none (parsed and validated by the caller).
pub(crate) fn posted_command(body: &[u8], caller: &Caller) -> Result<Vec<u8>, ApiError> {
    let not_a_command = |e: serde_json::Error| {
        ApiError::bad_request(format!("the body is not a JSON command: {e}"))
    };
    let mut value: Value = serde_json::from_slice(body).map_err(not_a_command)?;
    let object = value.as_object_mut().ok_or_else(|| {
        ApiError::bad_request("the body must be a JSON object (a command, PROTOCOL.md §2)")
    })?;
    object
        .entry("request_id")
        .or_insert_with(|| Value::String(new_request_id()));
    if let Some(own) = caller.tenant() {
        // A tenant key submits for its own tenant, which the body may leave out.
        let tenant = object
            .entry("tenant")
            .or_insert_with(|| Value::String(own.as_str().to_owned()));
        if tenant.as_str() != Some(own.as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a key of tenant '{own}' submits only for that tenant"),
            ));
        }
    }
    serde_json::to_vec(&value).map_err(not_a_command)
}

/// An enqueue failure as its answer.
fn enqueue_error(e: EnqueueError, command: &Command) -> ApiError {
    match e {
        EnqueueError::Bus { task_id, source } => {
            tracing::warn!(error = %source, request_id = %command.request_id, tenant = %command.tenant,
                "job stored but not queued");
            ApiError::unavailable(format!(
                "job {task_id} is stored but the bus did not take it ({source}); POST it again"
            ))
        }
        EnqueueError::Store(e) => e.into(),
        e @ EnqueueError::Lifecycle(_) => ApiError::internal(e.to_string()),
    }
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("admin" = []), ("tenant" = [])), request_body(content = ref("#/components/schemas/Command"), description = "a command (PROTOCOL.md §2); `request_id` may be left out and is then generated", content_type = "application/json"), responses((status = 202, description = "stored and queued (header Location: /v1/jobs/{id})", body = JobQueued), (status = 200, description = "the tenant already used this request_id: that job, as GET /v1/jobs/{id} shows it (or as 202 shows it, while it is still queued)", body = Job), (status = 403, description = "a tenant key submitting for another tenant", body = ErrorBody), (status = 400, description = "not a valid command (the message names each bad field)", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody), (status = 503, description = "stored but the bus did not take it: POST it again", body = ErrorBody)))]
pub(super) async fn submit_job(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let bytes = posted_command(&body, &caller)?;
    // A template it names is rendered before the job is stored, as at intake.
    let command = match gateway.parse_command(&bytes).await {
        Ok(command) => command,
        Err(TemplateError::Invalid(message)) => return Err(ApiError::bad_request(message)),
        Err(TemplateError::Database(e)) => return Err(e.into()),
    };
    if let Some(reply_to) = &command.reply_to {
        let policy = gateway.reply_to_policy();
        let checked = match caller.tenant() {
            Some(_) => policy.check_for_tenant_key(reply_to),
            None => policy.check(reply_to),
        };
        checked.map_err(|why| ApiError::bad_request(format!("reply_to: {why}")))?;
    }
    let Enqueued {
        task,
        created,
        queued,
    } = gateway
        .submit_job(&command)
        .await
        .map_err(|e| enqueue_error(e, &command))?;
    if !queued {
        return Ok(Json(Job::from(&task)).into_response());
    }
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/jobs/{}", task.id))],
        Json(JobQueued {
            id: task.id,
            status: task.status.into(),
            request_id: task.request_id.into(),
            tenant: task.tenant.into(),
        }),
    )
        .into_response())
}

/// The job `id`, if this caller may see it: another tenant's job is no job of
/// this caller's.
pub(crate) async fn visible_job(
    gateway: &Gateway,
    caller: &Caller,
    id: i64,
) -> Result<Task, ApiError> {
    match gateway.job(id).await? {
        Some(task) if caller.sees(task.tenant.as_str()) => Ok(task),
        _ => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = i64, Path, description = "the job id (its task id)")), responses((status = 200, description = "the job: its status, and its result or error once it ended", body = Job), (status = 404, description = "no such job", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn get_job(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Job>, ApiError> {
    let task = visible_job(&gateway, &caller, id).await?;
    Ok(Json(Job::from(&task)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = i64, Path, description = "the job id (its task id)")), responses((status = 200, description = "text/event-stream: every event of the job from its first (`event:` its type, `id:` its seq, `data:` the event JSON, PROTOCOL.md §3); the stream ends after the terminal event", body = String, content_type = "text/event-stream"), (status = 404, description = "no such job", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn job_events(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let task = visible_job(&gateway, &caller, id).await?;
    let (tenant, request_id) = (task.tenant.clone(), task.request_id.clone());
    let events = gateway
        .events(EventFilter::Request(tenant, request_id))
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the job's events: {e}")))?;
    // Read after subscribing: a job that finished before is known to have, and its
    // stored terminal event stands in if the bus no longer has its events.
    let stored = gateway
        .job(id)
        .await?
        .filter(|task| task.status.is_terminal())
        .and_then(|task| task.terminal_event)
        .and_then(|v| serde_json::from_value::<Event>(v).ok());
    let deadline = serde_json::from_str::<Value>(task.command.get())
        .ok()
        .and_then(|command| command["deadline_ms"].as_u64())
        .map(|ms| Duration::from_millis(ms) + REPLAY_GRACE * 5);
    let max_age = deadline.map_or(SSE_MAX_AGE, |d| d.min(SSE_MAX_AGE));
    Ok(Sse::new(
        until_terminal(events, stored)
            .take_until(tokio::time::sleep(max_age))
            .map(|event| Ok::<_, std::convert::Infallible>(sse_event(&event))),
    )
    .keep_alive(KeepAlive::default()))
}

fn sse_event(event: &Event) -> sse::Event {
    let data = serde_json::to_string(event).unwrap_or_default();
    sse::Event::default()
        .event(event.event_type().as_str())
        .id(event.seq.to_string())
        .data(data)
}

/// The job's events up to and including its terminal one. With `stored` (the job had
/// finished), events are replayed while they keep coming within [`REPLAY_GRACE`];
/// if the terminal one is not among them, `stored` ends the stream.
fn until_terminal(
    events: impl Stream<Item = Event> + Send + Unpin + 'static,
    stored: Option<Event>,
) -> impl Stream<Item = Event> + Send {
    stream::unfold(
        (events, stored, false),
        |(mut events, stored, done)| async move {
            if done {
                return None;
            }
            let next = match &stored {
                None => events.next().await,
                Some(_) => tokio::time::timeout(REPLAY_GRACE, events.next())
                    .await
                    .ok()
                    .flatten(),
            };
            match next {
                Some(event) => {
                    let done = event.is_terminal();
                    Some((event, (events, stored, done)))
                }
                None => stored.map(|event| (event, (events, None, true))),
            }
        },
    )
}
