//! An account's credentials on its requests: the `api_key` in the header its provider
//! documents, or an OAuth2 access token as a bearer token.

use std::sync::Arc;

use reqwest::RequestBuilder;
use switchyard_core::{ApiKey, ErrorCode};

use super::Api;
use crate::AttemptError;

/// What an account's requests carry to prove who it is.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// Nothing (an OpenAI-compatible server without a key).
    None,
    /// The config's `api_key`, in the header the provider documents.
    Key(ApiKey),
    /// An OAuth2 access token, always as `Authorization: Bearer`.
    OAuth2(Arc<crate::oauth::TokenSource>),
}

/// Where a provider wants its API key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyIn {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// A header of its own (`x-api-key`, `x-goog-api-key`, `Api-Key`).
    Header(&'static str),
}

/// Adds an account's credentials to a request being built ([`Api::authorize`]).
pub(crate) trait Authorize: Sized {
    /// The request with `api`'s credentials, where `at` says for a key.
    fn auth(self, api: &Api, at: KeyIn) -> Result<RequestBuilder, AttemptError>;
}

impl Authorize for RequestBuilder {
    fn auth(self, api: &Api, at: KeyIn) -> Result<RequestBuilder, AttemptError> {
        api.authorize(self, at)
    }
}

impl Api {
    /// `request` with the account's credentials: its key where `at` says, or an OAuth2
    /// access token as a bearer token. An `unauthorized` error when there are none.
    pub fn authorize(
        &self,
        request: RequestBuilder,
        at: KeyIn,
    ) -> Result<RequestBuilder, AttemptError> {
        match (&self.credentials, at) {
            (Credentials::Key(key), KeyIn::Bearer) => Ok(request.bearer_auth(key.expose())),
            (Credentials::Key(key), KeyIn::Header(name)) => {
                let mut value =
                    reqwest::header::HeaderValue::from_str(key.expose()).map_err(|_| {
                        self.error(
                            ErrorCode::Unauthorized,
                            "the api_key is not a valid header value",
                        )
                    })?;
                value.set_sensitive(true);
                Ok(request.header(name, value))
            }
            (Credentials::OAuth2(tokens), _) => match tokens.current() {
                Some(token) => Ok(request.bearer_auth(token.expose())),
                None => Err(self.error(
                    ErrorCode::Unauthorized,
                    "no oauth2 access token (the last one was refused)",
                )),
            },
            (Credentials::None, _) => Err(AttemptError::new(
                ErrorCode::Unauthorized,
                format!("{}: the config has no api_key", self.provider),
            )),
        }
    }

    /// Whether the account has credentials (OpenAI-compatible servers often need none).
    pub fn has_credentials(&self) -> bool {
        !matches!(self.credentials, Credentials::None)
    }
}
