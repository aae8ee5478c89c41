//! The error-code taxonomy: the single source of truth for which failures are retried
//! and which say something about a provider instance (and so feed its breaker).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `error.code` of a `failed` event (PROTOCOL.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The command itself is wrong; retrying cannot help.
    InvalidRequest,
    /// The provider rejected the account's credentials.
    Unauthorized,
    /// The tenant's quota is used up.
    QuotaExceeded,
    /// The provider is rate limiting this account (a 429).
    RateLimited,
    /// The provider refused the content.
    ContentFiltered,
    /// The provider answered with an error or with something unparseable.
    ProviderError,
    /// The provider could not be reached or is overloaded.
    ProviderUnavailable,
    /// No answer in time.
    Timeout,
    /// No provider instance can serve the request.
    NoProvider,
    /// A WASM plugin trapped, timed out or returned something broken.
    PluginError,
    /// A bug or an infrastructure failure inside Switchyard.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of PROTOCOL.md.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::QuotaExceeded,
        ErrorCode::RateLimited,
        ErrorCode::ContentFiltered,
        ErrorCode::ProviderError,
        ErrorCode::ProviderUnavailable,
        ErrorCode::Timeout,
        ErrorCode::NoProvider,
        ErrorCode::PluginError,
        ErrorCode::Internal,
    ];

    /// The wire name, e.g. `provider_unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ContentFiltered => "content_filtered",
            ErrorCode::ProviderError => "provider_error",
            ErrorCode::ProviderUnavailable => "provider_unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NoProvider => "no_provider",
            ErrorCode::PluginError => "plugin_error",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether another attempt, on another instance, may succeed.
    ///
    /// `unauthorized` is retryable because it concerns one account: the next account
    /// of the same provider may well be fine.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unauthorized
                | ErrorCode::RateLimited
                | ErrorCode::ProviderError
                | ErrorCode::ProviderUnavailable
                | ErrorCode::Timeout
                | ErrorCode::PluginError
        )
    }

    /// Whether the failure says something about the instance and so counts against its
    /// circuit breaker. A 429 (`rate_limited`) parks the instance instead (cool-down).
    pub fn counts_against_breaker(self) -> bool {
        matches!(
            self,
            ErrorCode::ProviderUnavailable
                | ErrorCode::Timeout
                | ErrorCode::ProviderError
                | ErrorCode::Unauthorized
                | ErrorCode::PluginError
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown error code '{s}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_have_the_protocol_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
    }

    #[test]
    fn only_instance_failures_count_against_the_breaker() {
        let counted: Vec<_> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.counts_against_breaker())
            .collect();
        assert_eq!(
            counted,
            [
                ErrorCode::Unauthorized,
                ErrorCode::ProviderError,
                ErrorCode::ProviderUnavailable,
                ErrorCode::Timeout,
                ErrorCode::PluginError,
            ]
        );
        assert!(!ErrorCode::RateLimited.counts_against_breaker());
        assert!(!ErrorCode::InvalidRequest.is_retryable());
        assert!(!ErrorCode::ContentFiltered.is_retryable());
        assert!(ErrorCode::Unauthorized.is_retryable());
    }
}
