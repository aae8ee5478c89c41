//! The error of the admin and jobs API: every handler returns `Result<_, ApiError>` and
//! uses `?`; the error answers its status with `{"error": "<message>"}`, plus `fields`
//! (each bad field) for a provider config that does not validate and `detail` (the
//! parser's words) for a body that is no provider config. A 401 also carries
//! `WWW-Authenticate: Bearer`. Storage failures are logged and shown only as
//! "storage error".

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use switchyard_core::{FieldError, ValidationError};
use switchyard_runtime::facade::{
    ArtifactError, ConfigReadError, ConfigWriteError, GroupCommitError, QueryError,
};
use utoipa::ToSchema;

/// An error of the admin or jobs API, as its response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No admin token (or tenant key), or a wrong one: 401.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Any other status, with its message.
    #[error("{message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// What went wrong, for the caller.
        message: String,
    },
    /// A provider config that does not validate: 400 naming each bad field.
    #[error("invalid provider config")]
    InvalidConfig(Vec<FieldError>),
    /// A body that is no provider config object: 400 with the parser's detail.
    #[error("body is not a provider config object")]
    NotAConfig(#[source] serde_json::Error),
    /// The store failed: 500, logged; the caller reads only "storage error".
    #[error("storage error")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a JSON body into `T`; a 400 names the field at fault (`what` when the body
/// as a whole is not one).
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => ApiError::bad_request(format!("not {what}: {}", e.inner())),
            path => ApiError::bad_request(format!("{path}: {}", e.inner())),
        }
    })
}

impl ApiError {
    /// An error with this status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 with a message the caller may read.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A storage failure (500 "storage error"; the cause is logged, not shown).
    pub(crate) fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Box::new(e))
    }

    /// 503.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// This error with `prefix` before its message (a status error's only: others
    /// keep theirs).
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::Status { status, message } => Self::Status {
                status,
                message: format!("{prefix}{message}"),
            },
            other => other,
        }
    }

    /// The status it answers.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Status { status, .. } => *status,
            Self::InvalidConfig(_) | Self::NotAConfig(_) => StatusCode::BAD_REQUEST,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body it answers.
    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            fields: match self {
                Self::InvalidConfig(fields) => Some(fields.iter().map(BadField::from).collect()),
                _ => None,
            },
            detail: match self {
                Self::NotAConfig(e) => Some(e.to_string()),
                _ => None,
            },
        }
    }
}

/// The body of every admin and jobs API error.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    error: String,
    /// Each bad field of a provider config that does not validate.
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<BadField>>,
    /// Why a body is no provider config object (the JSON parser's words).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// One bad field of a provider config.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BadField {
    /// Dotted path of the field, e.g. `rate_limit.rpm`.
    path: String,
    /// What is wrong with it.
    message: String,
}

impl From<&FieldError> for BadField {
    fn from(e: &FieldError) -> Self {
        Self {
            path: e.path.clone(),
            message: e.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Storage(e) = &self {
            tracing::error!(error = %e, "admin api storage error");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Self::Unauthorized(_) = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A provider config write: an invalid config is 400 with its fields, a taken name or
/// a lost race 409, an unknown id 404; the rest a storage error.
impl From<ConfigWriteError> for ApiError {
    fn from(e: ConfigWriteError) -> Self {
        match e {
            ConfigWriteError::Invalid(v) => Self::InvalidConfig(v.errors),
            ConfigWriteError::NameTaken(_) | ConfigWriteError::VersionConflict { .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string())
            }
            ConfigWriteError::NotFound(_) => Self::not_found(e.to_string()),
            other @ (ConfigWriteError::Secret { .. } | ConfigWriteError::Database(_)) => {
                Self::storage(other)
            }
        }
    }
}

/// A provider config read failed: a storage error.
impl From<ConfigReadError> for ApiError {
    fn from(e: ConfigReadError) -> Self {
        Self::storage(e)
    }
}

/// A query failed: a storage error.
impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        Self::storage(e)
    }
}

/// A group-commit write failed (or its writer stopped): a storage error.
impl From<GroupCommitError> for ApiError {
    fn from(e: GroupCommitError) -> Self {
        Self::storage(e)
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::InvalidConfig(e.errors)
    }
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::NotFound(_) | ArtifactError::BadId(_) => {
                Self::not_found("no such artifact")
            }
            e => {
                tracing::error!(error = %e, "artifact read failed");
                Self::internal("artifact store error")
            }
        }
    }
}

/// A response's status, `WWW-Authenticate` header and JSON body (for tests).
#[cfg(test)]
pub(crate) async fn read(response: Response) -> (u16, Option<String>, serde_json::Value) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (
        status,
        challenge,
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (u16, Option<String>, serde_json::Value) {
        read(e.into_response()).await
    }

    #[tokio::test]
    async fn store_errors_keep_their_statuses_and_bodies() {
        use serde_json::json;
        let invalid = ValidationError {
            errors: vec![FieldError::new("name", "is required")],
        };
        assert_eq!(
            answer(ConfigWriteError::Invalid(invalid).into()).await,
            (
                400,
                None,
                json!({"error": "invalid provider config", "fields": [{"path": "name", "message": "is required"}]})
            )
        );
        assert_eq!(
            answer(ConfigWriteError::NameTaken("a".into()).into()).await,
            (
                409,
                None,
                json!({"error": "a provider config named 'a' already exists"})
            )
        );
        assert_eq!(
            answer(ConfigWriteError::NotFound(switchyard_core::ConfigId(7)).into()).await,
            (404, None, json!({"error": "provider config 7 not found"}))
        );
        assert_eq!(
            answer(
                ConfigWriteError::VersionConflict {
                    id: switchyard_core::ConfigId(7),
                    expected: 1,
                    actual: 2
                }
                .into()
            )
            .await,
            (
                409,
                None,
                json!({"error": "provider config 7 is at version 2, not 1"})
            )
        );
        let corrupt = QueryError::Corrupt {
            table: "tasks",
            detail: "secret://x".into(),
        };
        assert_eq!(
            answer(corrupt.into()).await,
            (500, None, json!({"error": "storage error"}))
        );
        assert_eq!(
            answer(GroupCommitError::Stopped.into()).await,
            (500, None, json!({"error": "storage error"}))
        );
        assert_eq!(
            answer(ApiError::Unauthorized("missing or wrong admin token")).await,
            (
                401,
                Some("Bearer".into()),
                json!({"error": "missing or wrong admin token"})
            )
        );
        let not_json = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let detail = not_json.to_string();
        assert_eq!(
            answer(ApiError::NotAConfig(not_json)).await,
            (
                400,
                None,
                json!({"error": "body is not a provider config object", "detail": detail})
            )
        );
    }
}
