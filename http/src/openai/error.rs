//! The error of the OpenAI-compatible endpoints, in OpenAI's shape:
//! `{"error": {"message", "type", "code", "param": null}}`. Every handler returns
//! `Result<_, OaiError>` and uses `?`; a 401 also carries `WWW-Authenticate: Bearer`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use switchyard_core::{ErrorCode, ErrorInfo};
use switchyard_runtime::facade::{BusError, CallError, QueryError};
use utoipa::ToSchema;

/// An error of the OpenAI-compatible API, as its response.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct OaiError {
    /// The status.
    status: StatusCode,
    /// OpenAI's error type: `invalid_request_error`, `rate_limit_error`, `server_error`.
    kind: &'static str,
    /// The error code (a Switchyard error code, or `invalid_api_key` …).
    code: &'static str,
    /// What went wrong, for the caller.
    message: String,
    /// When to try again (`Retry-After`), for a 429 over a limit.
    retry_after: Option<std::time::Duration>,
}

impl OaiError {
    /// An error with this status, type, code and message.
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    /// 401 `invalid_api_key`: no tenant key, or one that is not live.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or unknown API key (a tenant key, sy_…)",
        )
    }

    /// 500 `internal`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal",
            message,
        )
    }

    /// 503 `bus_unavailable`.
    pub(crate) fn bus_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "bus_unavailable",
            message,
        )
    }
}

/// The body of every OpenAI-compatible error.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    /// The error.
    error: OpenAiErrorDetail,
}

/// An OpenAI-compatible error.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorDetail {
    /// What went wrong.
    message: String,
    /// `invalid_request_error`, `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    kind: String,
    /// The error code, e.g. `invalid_api_key`, `quota_exceeded`, `provider_error`.
    code: String,
    /// Always null (kept for OpenAI's clients).
    param: Option<String>,
}

impl IntoResponse for OaiError {
    fn into_response(self) -> Response {
        let body = OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.message,
                kind: self.kind.to_owned(),
                code: self.code.to_owned(),
                param: None,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: a client that waits that long gets a slot.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A failed request: the status and OpenAI error type of its error code.
impl From<&ErrorInfo> for OaiError {
    fn from(error: &ErrorInfo) -> Self {
        let (status, kind) = match error.code {
            ErrorCode::InvalidRequest | ErrorCode::ContentFiltered => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            ErrorCode::QuotaExceeded | ErrorCode::RateLimited => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
            }
            ErrorCode::NoProvider | ErrorCode::ProviderUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error")
            }
            ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, "server_error"),
            // The provider refused our key: not the caller's fault.
            ErrorCode::Unauthorized | ErrorCode::ProviderError | ErrorCode::PluginError => {
                (StatusCode::BAD_GATEWAY, "server_error")
            }
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        Self::new(status, kind, error.code.as_str(), error.message.clone())
    }
}

/// The store failed (looking up a key): 503 `store_unavailable`, logged.
impl From<QueryError> for OaiError {
    fn from(e: QueryError) -> Self {
        tracing::error!(error = %e, "store error on the OpenAI-compatible API");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "store_unavailable",
            "the database is unavailable",
        )
    }
}

/// The bus did not take a call: 503 `bus_unavailable`, logged.
impl From<BusError> for OaiError {
    fn from(e: BusError) -> Self {
        tracing::warn!(error = %e, "OpenAI-compatible call not queued");
        Self::bus_unavailable(format!("the request could not be queued: {e}"))
    }
}

/// A synchronous call that could not start: 429 with `Retry-After` over a tenant's
/// limits, else 503, logged.
impl From<CallError> for OaiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::RateLimited(limited) => {
                metrics::counter!("switchyard_calls_rate_limited_total").increment(1);
                Self {
                    retry_after: Some(limited.retry_after),
                    ..Self::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        ErrorCode::RateLimited.as_str(),
                        limited.message,
                    )
                }
            }
            CallError::ShuttingDown(_) => {
                tracing::warn!(error = %e, "OpenAI-compatible call not started");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "shutting_down",
                    "the gateway is shutting down",
                )
            }
            CallError::Admission(_) => {
                tracing::warn!(error = %e, "OpenAI-compatible call not started");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "store_unavailable",
                    "the database is unavailable",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_onto_openai_statuses() {
        for (code, status) in [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::QuotaExceeded, 429),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::NoProvider, 503),
            (ErrorCode::Timeout, 504),
            (ErrorCode::ProviderError, 502),
            (ErrorCode::Unauthorized, 502),
        ] {
            let response = OaiError::from(&ErrorInfo::new(code, "x")).into_response();
            assert_eq!(response.status().as_u16(), status, "{code:?}");
        }
    }

    #[tokio::test]
    async fn the_body_is_in_openai_shape() {
        let response = OaiError::unauthorized().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer"))
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "message": "missing or unknown API key (a tenant key, sy_…)",
                "type": "invalid_request_error", "code": "invalid_api_key", "param": null,
            }})
        );
    }
}
