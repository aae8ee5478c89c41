//! Batch jobs over HTTP (#18 §9): `POST /v1/batches` takes many commands at once and
//! answers one batch id; `GET /v1/batches/{id}` gives the counts by status and the
//! results page by page; `DELETE /v1/batches/{id}` cancels what has not started. The
//! admin token reaches every tenant's batches, a tenant key only its own.
//!
//! Each command of a batch is a job of its own (a task row, the usual events), run at
//! background priority under `[batches] concurrency` (see `runtime/src/batches.rs`).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::Tenant;
use switchyard_runtime::facade::{
    Batch, BatchCommand, BatchCounts, CancelBatchError, Gateway, SubmitBatchError, TemplateError,
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    caller::Caller,
    error::{ApiError, ErrorBody, json_body},
    jobs::{Job, posted_command},
    state::AdminApi,
};

/// The most results one page lists.
const MAX_PAGE: i64 = 500;

/// The body of `POST /v1/batches`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBatch {
    /// The commands (PROTOCOL.md §2), each for the batch's tenant; a command without
    /// `request_id` gets `{batch id}-{index}`. Their `priority` is set to 10
    /// (background).
    #[schema(value_type = Vec<Object>)]
    commands: Vec<Value>,
    /// The batch's tenant: a tenant key's own, else the commands' (which then must
    /// all name it).
    #[serde(default)]
    tenant: Option<String>,
    /// A key of the client's: a `POST` repeated with the same key answers the batch
    /// the first one made instead of making another (1–64 of `[A-Za-z0-9_-]`).
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// How many of a batch's commands are where.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Counts {
    /// Not started yet.
    queued: i64,
    /// Running.
    processing: i64,
    /// Done.
    done: i64,
    /// Failed (not counting the cancelled).
    failed: i64,
    /// Cancelled before they started.
    cancelled: i64,
}

impl From<BatchCounts> for Counts {
    fn from(c: BatchCounts) -> Self {
        Self {
            queued: c.queued,
            processing: c.processing,
            done: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
        }
    }
}

/// One command of a batch, as its job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchResult {
    /// Its index in the batch (0-based, the order posted).
    index: i64,
    /// Whether it was cancelled before it started.
    cancelled: bool,
    /// Its job, as `GET /v1/jobs/{id}` shows it.
    job: Job,
}

/// A batch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchView {
    /// The batch id.
    id: String,
    /// Its tenant.
    tenant: String,
    /// `submitting` (being stored), `open` (commands wait to be queued), `closed`
    /// (every command was queued), `cancelled`.
    state: String,
    /// Whether every command has ended.
    finished: bool,
    /// How many commands it holds.
    total: i64,
    /// Where they are.
    counts: Counts,
    /// Posted at.
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Closed or cancelled at.
    #[schema(value_type = Option<String>, format = DateTime)]
    ended_at: Option<DateTime<Utc>>,
    /// The results of this page, in index order (`GET` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<BatchResult>>,
    /// The `after` of the next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
    /// How many commands this `DELETE` cancelled (`DELETE` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_now: Option<usize>,
}

impl BatchView {
    fn of(batch: &Batch, counts: BatchCounts) -> Self {
        Self {
            id: batch.id.clone(),
            tenant: batch.tenant.to_string(),
            state: batch.state.as_str().to_owned(),
            finished: counts.queued == 0 && counts.processing == 0,
            total: batch.total,
            counts: counts.into(),
            created_at: batch.created_at,
            ended_at: batch.ended_at,
            results: None,
            next_after: None,
            cancelled_now: None,
        }
    }
}

/// The page of results `GET /v1/batches/{id}` lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// List results after this index (default: from the first).
    after: Option<i64>,
    /// How many (1–500, default 100; 0 lists none).
    limit: Option<i64>,
}

fn submit_error(e: SubmitBatchError) -> ApiError {
    match e {
        SubmitBatchError::Store(e) => e.into(),
        SubmitBatchError::Enqueue(e) => ApiError::unavailable(format!(
            "the batch is partly stored ({e}); POST it again with the same idempotency_key"
        )),
        e => ApiError::bad_request(e.to_string()),
    }
}

/// The batch's tenant: the caller's own for a tenant key, else the body's or the
/// commands' (all one).
fn batch_tenant(body: &NewBatch, caller: &Caller) -> Result<Tenant, ApiError> {
    if let Some(own) = caller.tenant() {
        if body.tenant.as_deref().is_some_and(|t| t != own.as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a key of tenant '{own}' submits only for that tenant"),
            ));
        }
        return Ok(own.clone());
    }
    let named = body.tenant.clone().or_else(|| {
        body.commands
            .first()
            .and_then(|c| c.get("tenant"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let named = named.ok_or_else(|| {
        ApiError::bad_request("tenant: give the batch's tenant (or name it in the commands)")
    })?;
    Tenant::new(named).map_err(|e| ApiError::bad_request(format!("tenant: {e}")))
}

#[utoipa::path(post, path = "/v1/batches", tag = "jobs", security(("admin" = []), ("tenant" = [])), request_body = NewBatch, responses((status = 202, description = "stored; its commands run at background priority (header Location: /v1/batches/{id})", body = BatchView), (status = 200, description = "the tenant posted a batch with this idempotency_key before: that batch", body = BatchView), (status = 400, description = "not a valid batch: the message names the command (`commands[i]`) and what is wrong", body = ErrorBody), (status = 403, description = "a tenant key submitting for another tenant", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody), (status = 503, description = "partly stored: POST it again with the same idempotency_key", body = ErrorBody)))]
pub(super) async fn submit_batch(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: NewBatch = json_body(&body, "a batch ({\"commands\": [...]})")?;
    if let Some(key) = &body.idempotency_key {
        switchyard_core::ids::check_subject_token(key)
            .map_err(|e| ApiError::bad_request(format!("idempotency_key: {e}")))?;
    }
    if body.commands.is_empty() {
        return Err(submit_error(SubmitBatchError::Empty));
    }
    let tenant = batch_tenant(&body, &caller)?;
    let max = gateway.batches().settings().max_commands as usize;
    if body.commands.len() > max {
        return Err(submit_error(SubmitBatchError::TooMany {
            max: max as u32,
            got: body.commands.len(),
        }));
    }
    // Every command is checked as a job's would be, before anything is stored.
    let as_tenant = Caller::Tenant(tenant.clone());
    let policy = gateway.reply_to_policy();
    let mut commands = Vec::with_capacity(body.commands.len());
    for (index, value) in body.commands.iter().enumerate() {
        let at = |e: ApiError| e.prefixed(&format!("commands[{index}]: "));
        let generated_id = value.get("request_id").is_none();
        if let Some(named) = value.get("tenant")
            && named.as_str() != Some(tenant.as_str())
        {
            return Err(submit_error(SubmitBatchError::OtherTenant {
                index,
                tenant: tenant.to_string(),
            }));
        }
        let bytes = serde_json::to_vec(value)
            .map_err(|e| ApiError::bad_request(format!("commands[{index}]: {e}")))?;
        let bytes = posted_command(&bytes, &as_tenant).map_err(at)?;
        let command = match gateway.parse_command(&bytes).await {
            Ok(command) => command,
            Err(TemplateError::Invalid(message)) => {
                return Err(ApiError::bad_request(format!(
                    "commands[{index}]: {message}"
                )));
            }
            Err(TemplateError::Database(e)) => return Err(e.into()),
        };
        if let Some(reply_to) = &command.reply_to {
            let checked = match caller.tenant() {
                Some(_) => policy.check_for_tenant_key(reply_to),
                None => policy.check(reply_to),
            };
            checked.map_err(|why| {
                ApiError::bad_request(format!("commands[{index}]: reply_to: {why}"))
            })?;
        }
        commands.push(BatchCommand {
            command,
            generated_id,
        });
    }
    let submitted = gateway
        .batches()
        .submit(&tenant, body.idempotency_key.as_deref(), commands)
        .await
        .map_err(submit_error)?;
    let counts = gateway.batches().counts(&submitted.batch.id).await?;
    let view = BatchView::of(&submitted.batch, counts);
    let status = if submitted.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/batches/{}", view.id))],
        Json(view),
    )
        .into_response())
}

/// The batch `id`, if this caller may see it.
async fn visible_batch(gateway: &Gateway, caller: &Caller, id: &str) -> Result<Batch, ApiError> {
    match gateway.batches().get(id).await? {
        Some(batch) if caller.sees(batch.tenant.as_str()) => Ok(batch),
        _ => Err(ApiError::not_found(format!("no batch {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/batches/{id}", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = String, Path, description = "the batch id"), Page), responses((status = 200, description = "the batch: its counts by status, and one page of its results", body = BatchView), (status = 400, description = "a bad page", body = ErrorBody), (status = 404, description = "no such batch", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn get_batch(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<BatchView>, ApiError> {
    let limit = page.limit.unwrap_or(100);
    if !(0..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: must be 0..={MAX_PAGE}"
        )));
    }
    let after = page.after.unwrap_or(-1);
    let batch = visible_batch(&gateway, &caller, &id).await?;
    let counts = gateway.batches().counts(&batch.id).await?;
    let items = if limit == 0 {
        Vec::new()
    } else {
        gateway.batches().items(&batch.id, after, limit).await?
    };
    let mut view = BatchView::of(&batch, counts);
    view.next_after = (items.len() as i64 == limit && limit > 0)
        .then(|| items.last().map(|i| i.index))
        .flatten();
    view.results = Some(
        items
            .iter()
            .map(|item| BatchResult {
                index: item.index,
                cancelled: item.cancelled,
                job: Job::from(&item.task),
            })
            .collect(),
    );
    Ok(Json(view))
}

#[utoipa::path(delete, path = "/v1/batches/{id}", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = String, Path, description = "the batch id")), responses((status = 200, description = "cancelled: what had not been queued ends `failed` (`cancelled_now` says how many); what had runs to its end", body = BatchView), (status = 404, description = "no such batch", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody), (status = 503, description = "not every cancelled command was ended yet; the gateway ends the rest", body = ErrorBody)))]
pub(super) async fn cancel_batch(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    let batch = visible_batch(&gateway, &caller, &id).await?;
    let cancelled = match gateway.batches().cancel(&batch.id).await {
        Ok(n) => n,
        Err(CancelBatchError::Store(e)) => return Err(e.into()),
        Err(e @ CancelBatchError::Step(_)) => {
            tracing::warn!(error = %e, batch = %batch.id, "cancelled batch tasks not all ended");
            return Err(ApiError::unavailable(
                "cancelled, but not every command was ended yet; the gateway ends the rest",
            ));
        }
    };
    let batch = gateway.batches().get(&batch.id).await?.unwrap_or(batch);
    let counts = gateway.batches().counts(&batch.id).await?;
    let mut view = BatchView::of(&batch, counts);
    view.cancelled_now = Some(cancelled);
    Ok(Json(view))
}
