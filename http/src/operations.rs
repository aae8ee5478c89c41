//! The endpoints without a token: `/healthz`, `/readyz` and `/metrics`.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};

use crate::{
    HttpState,
    error::{ApiError, ErrorBody},
};

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text: switchyard_requests_total, switchyard_provider_calls_total, switchyard_provider_latency_seconds, switchyard_provider_in_flight, switchyard_provider_breaker_state, switchyard_provider_limiter_waits_total, switchyard_actor_restarts_total, …", body = String, content_type = "text/plain"), (status = 404, description = "metrics are not recorded in this process", body = ErrorBody)))]
pub(crate) async fn metrics_text(
    State(state): State<HttpState>,
) -> Result<impl IntoResponse, ApiError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::not_found("metrics are not recorded in this process"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "actors run and the command consumer is live", body = String, content_type = "text/plain"), (status = 503, description = "still starting", body = String, content_type = "text/plain")))]
pub(crate) async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.readiness.reason() {
        None => (StatusCode::OK, "ready"),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
