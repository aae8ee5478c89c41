//! Feedback on a job's result (issue 18 §7): `POST /v1/jobs/{id}/feedback` with
//! `{rating?, favorite?, comment?}`, by the job's own tenant (its key) or the admin.
//! A second post replaces the first. Reported per config in the statistics.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_runtime::facade::{Feedback, TaskStatus};
use utoipa::ToSchema;

use crate::{
    caller::Caller,
    error::{ApiError, ErrorBody, json_body},
    jobs::visible_job,
    state::AdminApi,
};

/// Stored feedback.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FeedbackBody {
    /// The job.
    job_id: i64,
    /// `{rating, favorite, comment}`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    feedback: Feedback,
    /// When it was stored.
    #[schema(value_type = String, format = DateTime)]
    updated_at: DateTime<Utc>,
}

#[utoipa::path(post, path = "/v1/jobs/{id}/feedback", tag = "jobs", security(("admin" = []), ("tenant" = [])), params(("id" = i64, Path, description = "the job id")), request_body(content = Object, description = "`{rating?: 1–5, favorite?: bool, comment?: string (≤ 2000)}`, at least one", content_type = "application/json"), responses((status = 200, description = "stored (replacing earlier feedback)", body = FeedbackBody), (status = 400, description = "a bad field, named", body = ErrorBody), (status = 404, description = "no such job of this tenant", body = ErrorBody), (status = 409, description = "the job has not completed", body = ErrorBody), (status = 401, description = "missing or wrong admin token or tenant key", body = ErrorBody)))]
pub(super) async fn post_feedback(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<FeedbackBody>, ApiError> {
    let task = visible_job(&gateway, &caller, id).await?;
    let feedback: Feedback = json_body(&body, "feedback")?;
    feedback.check().map_err(ApiError::bad_request)?;
    if task.status != TaskStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "only a completed job's result takes feedback",
        ));
    }
    let updated_at = gateway.set_feedback(&task, &feedback).await?;
    Ok(Json(FeedbackBody {
        job_id: id,
        feedback,
        updated_at,
    }))
}
