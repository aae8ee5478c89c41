//! The HTTP face of `serve` (axum): health, readiness and artifacts for now; the
//! admin and jobs APIs join it in later issues.

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    artifacts::{ArtifactError, ArtifactStore},
    ingress::Readiness,
};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Where images live.
    pub artifacts: ArtifactStore,
    /// Whether the command consumer is live.
    pub readiness: Readiness,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/v1/artifacts/{id}", get(artifact))
        .with_state(state)
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the command consumer is not live",
        )
            .into_response()
    }
}

async fn artifact(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match state.artifacts.get(&id).await {
        Ok((bytes, meta)) => (
            [
                (header::CONTENT_TYPE, meta.mime),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::ETAG, format!("\"{}\"", meta.sha256)),
            ],
            bytes,
        )
            .into_response(),
        Err(ArtifactError::NotFound(_) | ArtifactError::BadId(_)) => {
            (StatusCode::NOT_FOUND, "no such artifact").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "artifact read failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "artifact store error").into_response()
        }
    }
}
