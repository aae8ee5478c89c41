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
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{self, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt, stream};
use serde_json::{Value, json};
use switchyard_core::{Command, Event, RequestId, Tenant};

use super::{AdminState, Caller, error, store_error};
use switchyard_runtime::{
    bus::EventFilter,
    pipeline::{EnqueueError, Enqueued},
    store::{Task, TaskStatus},
};

/// How long `…/events` waits for a finished job's events to be replayed from the bus
/// before it sends the stored terminal event instead (the bus keeps events for a
/// limited time).
const REPLAY_GRACE: Duration = Duration::from_secs(2);

/// A request id for a job posted without one: 26 characters of `[0-9A-Za-z]`.
fn new_request_id() -> String {
    switchyard_runtime::secrets::random_alphanumeric(26)
}

/// The job's status name (PROTOCOL.md §4) for a task status.
fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Pending => "queued",
        TaskStatus::Processing => "processing",
        TaskStatus::Completed => "done",
        TaskStatus::Failed => "failed",
    }
}

/// A job as `GET /v1/jobs/{id}` shows it. `result` and `error` come from the stored
/// terminal event, so they read exactly as that event does.
pub(super) fn job_json(task: &Task) -> Value {
    let terminal = task.terminal_event.as_ref();
    let field = |name: &str| terminal.and_then(|t| t.get(name)).cloned();
    let result = (task.status == TaskStatus::Completed).then(|| {
        json!({
            "output": field("output"),
            "usage": field("usage"),
            "provider": field("provider"),
            "cached": field("cached").unwrap_or(Value::Bool(false)),
        })
    });
    let error = (task.status == TaskStatus::Failed).then(|| {
        field("error")
            .unwrap_or_else(|| json!({"code": task.error_code, "message": task.error_message}))
    });
    json!({
        "id": task.id,
        "request_id": task.request_id,
        "tenant": task.tenant,
        "kind": task.kind,
        "status": status_name(task.status),
        "result": result,
        "error": error,
        "attempts": task.attempts,
        "provider_config_id": task.provider_config_id.map(|c| c.0),
        "created_at": task.created_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
    })
}

/// Parses and validates a posted command, giving it a `request_id` if it has none.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn posted_command(body: &[u8], caller: &Caller) -> Result<Command, Response> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not a JSON command: {e}"),
        )
    })?;
    let Some(object) = value.as_object_mut() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object (a command, PROTOCOL.md §2)",
        ));
    };
    object
        .entry("request_id")
        .or_insert_with(|| Value::String(new_request_id()));
    if let Caller::Tenant(own) = caller {
        // A tenant key submits for its own tenant, which the body may leave out.
        let tenant = object
            .entry("tenant")
            .or_insert_with(|| Value::String(own.clone()));
        if tenant.as_str() != Some(own.as_str()) {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!("a key of tenant '{own}' submits only for that tenant"),
            ));
        }
    }
    let bytes = serde_json::to_vec(&value).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not a JSON command: {e}"),
        )
    })?;
    Command::parse_and_validate(&bytes, None)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("admin" = []), ("tenant" = [])), request_body(content = String, description = "a command (PROTOCOL.md §2); `request_id` may be left out and is then generated", content_type = "application/json"), responses((status = 202, description = "{id, status: \"queued\", request_id, tenant}: stored and queued (header Location: /v1/jobs/{id})"), (status = 200, description = "the tenant already used this request_id: that job, as GET /v1/jobs/{id} shows it"), (status = 403, description = "a tenant key submitting for another tenant"), (status = 400, description = "not a valid command (the message names each bad field)"), (status = 401, description = "missing or wrong admin token or tenant key"), (status = 503, description = "stored but the bus did not take it: POST it again")))]
pub(super) async fn submit_job(
    State(admin): State<AdminState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let command = match posted_command(&body, &caller) {
        Ok(command) => command,
        Err(response) => return response,
    };
    let Enqueued {
        task,
        created,
        queued,
    } = match admin.pipeline.enqueue(&command).await {
        Ok(enqueued) => enqueued,
        Err(EnqueueError::Bus { task_id, source }) => {
            tracing::warn!(error = %source, request_id = %command.request_id, tenant = %command.tenant,
                "job stored but not queued");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "job {task_id} is stored but the bus did not take it ({source}); POST it again"
                ),
            );
        }
        Err(EnqueueError::Store(e)) => return store_error(e),
        Err(e @ EnqueueError::Lifecycle(_)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    if !queued {
        return Json(job_json(&task)).into_response();
    }
    let body = json!({
        "id": task.id,
        "status": status_name(task.status),
        "request_id": task.request_id,
        "tenant": task.tenant,
    });
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::LOCATION, format!("/v1/jobs/{}", task.id))],
        Json(body),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = i64, Path, description = "the job id (its task id)")), responses((status = 200, description = "{id, request_id, tenant, kind, status: queued|processing|done|failed, result: {output, usage, provider, cached} | null, error: {code, message, retryable, provider} | null, attempts, provider_config_id, created_at, started_at, completed_at}"), (status = 404, description = "no such job"), (status = 401, description = "missing or wrong admin token or tenant key")))]
pub(super) async fn get_job(
    State(admin): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    match admin.store.get_task(id).await {
        Ok(Some(task)) if caller.sees(task.tenant.as_str()) => {
            Json(job_json(&task)).into_response()
        }
        // Another tenant's job is no job of this caller's.
        Ok(_) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = i64, Path, description = "the job id (its task id)")), responses((status = 200, description = "text/event-stream: every event of the job from its first (`event:` its type, `id:` its seq, `data:` the event JSON, PROTOCOL.md §3); the stream ends after the terminal event"), (status = 404, description = "no such job"), (status = 401, description = "missing or wrong admin token or tenant key")))]
pub(super) async fn job_events(
    State(admin): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let task = match admin.store.get_task(id).await {
        Ok(Some(task)) if caller.sees(task.tenant.as_str()) => task,
        Ok(_) => return error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => return store_error(e),
    };
    let (Ok(tenant), Ok(request_id)) = (
        Tenant::new(task.tenant.clone()),
        RequestId::new(task.request_id.clone()),
    ) else {
        // Only an unparseable command's row can have such keys, and it has no events.
        return error(StatusCode::NOT_FOUND, format!("job {id} has no events"));
    };
    let events = match admin
        .bus
        .events(EventFilter::Request(tenant, request_id))
        .await
    {
        Ok(events) => events,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the job's events: {e}"),
            );
        }
    };
    // Read after subscribing: a job that finished before is known to have, and its
    // stored terminal event stands in if the bus no longer has its events.
    let stored = match admin.store.get_task(id).await {
        Ok(Some(task)) if task.status.is_terminal() => task
            .terminal_event
            .and_then(|v| serde_json::from_value::<Event>(v).ok()),
        Ok(_) => None,
        Err(e) => return store_error(e),
    };
    Sse::new(
        until_terminal(events, stored)
            .map(|event| Ok::<_, std::convert::Infallible>(sse_event(&event))),
    )
    .keep_alive(KeepAlive::default())
    .into_response()
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
