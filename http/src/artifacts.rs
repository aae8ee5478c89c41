//! `GET /v1/artifacts/{id}`: an image, for a signed link from an event (`?exp=…&sig=…`,
//! PROTOCOL.md §3), or for the admin token, or for a key of a tenant that owns it. A
//! tampered or expired link is 403; a tenant that does not own the artifact is told
//! there is none (404), exactly as for a missing one. Served `Cache-Control: private`.

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use switchyard_runtime::facade::Gateway;

use crate::{
    caller::{Authenticator, Caller, Scope},
    error::{ApiError, ErrorBody},
};

/// What the artifact endpoint needs.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactApi {
    /// The runtime: the artifacts, their owners, and the check of a link's signature.
    pub(crate) gateway: Gateway,
    /// Resolves a caller without a signed link.
    pub(crate) authenticator: Authenticator,
}

/// The query of a signed link.
#[derive(Debug, Deserialize)]
pub(crate) struct Link {
    exp: Option<u64>,
    sig: Option<String>,
}

#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "artifacts", security((), ("admin" = []), ("tenant" = [])), params(("id" = String, Path, description = "artifact id (hex SHA-256)"), ("exp" = Option<u64>, Query, description = "a signed link's expiry (Unix ms)"), ("sig" = Option<String>, Query, description = "a signed link's signature")), responses((status = 200, description = "the image bytes, with their content type", body = Vec<u8>, content_type = "image/*"), (status = 401, description = "no signed link and no admin token or tenant key", body = ErrorBody), (status = 403, description = "the link is tampered with, incomplete or expired", body = ErrorBody), (status = 404, description = "no such artifact (or not the caller's)", body = ErrorBody)))]
pub(crate) async fn artifact(
    State(api): State<ArtifactApi>,
    Path(id): Path<String>,
    Query(link): Query<Link>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let owners = api.gateway.artifact_owners(&id).await?;
    match (link.exp, link.sig) {
        (Some(exp), Some(sig)) => {
            api.gateway
                .verify_artifact_link(&id, &owners, exp, &sig)
                .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))?;
        }
        (None, None) => match api
            .authenticator
            .resolve(&headers, Scope::AdminOrTenant)
            .await
        {
            Ok(Caller::Admin) => {}
            Ok(Caller::Tenant(tenant)) => {
                if !owners.iter().any(|owner| owner == tenant.as_str()) {
                    return Err(ApiError::not_found("no such artifact"));
                }
            }
            Err(refusal) => return Ok(Scope::AdminOrTenant.refuse(refusal)),
        },
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the artifact link is incomplete (it needs exp and sig)",
            ));
        }
    }
    let (bytes, meta) = api.gateway.artifact(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, meta.mime),
            // Whoever may read it, it is one tenant's: no shared cache keeps it.
            (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
            (header::ETAG, format!("\"{}\"", meta.sha256)),
        ],
        bytes,
    )
        .into_response())
}
