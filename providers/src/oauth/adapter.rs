//! [`OAuth2Adapter`]: an adapter whose account uses OAuth2. Before each attempt (and
//! health check) it makes sure the token is fresh; when the provider refused the token
//! (a 401, which drops it from the source), it fetches a new one and tries once more.

use std::sync::Arc;

use switchyard_core::{ErrorCode, ProviderType};

use super::TokenSource;
use crate::{AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ProviderAdapter};

/// Wraps an adapter built for an OAuth2 account (its `Api` reads the same source).
#[derive(Debug)]
pub struct OAuth2Adapter {
    inner: Arc<dyn ProviderAdapter>,
    tokens: Arc<TokenSource>,
}

impl OAuth2Adapter {
    /// `inner`, with its tokens from `tokens`.
    pub fn new(inner: Arc<dyn ProviderAdapter>, tokens: Arc<TokenSource>) -> Self {
        Self { inner, tokens }
    }
}

/// Runs `call` with a fresh token; once more with a new token when the provider
/// refused the first.
async fn with_token<T, F>(tokens: &TokenSource, call: F) -> Result<T, AttemptError>
where
    F: Fn() -> BoxFuture<'static, Result<T, AttemptError>>,
{
    let used = tokens.fresh().await?;
    match call().await {
        Err(e) if e.code == ErrorCode::Unauthorized && !tokens.is_current(&used) => {
            tracing::info!("the provider refused the access token; retrying with a new one");
            tokens.fresh().await?;
            call().await
        }
        other => other,
    }
}

impl ProviderAdapter for OAuth2Adapter {
    fn provider_type(&self) -> ProviderType {
        self.inner.provider_type()
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let inner = self.inner.clone();
        let tokens = self.tokens.clone();
        Box::pin(async move { with_token(&tokens, || inner.generate(request.clone())).await })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let inner = self.inner.clone();
        let tokens = self.tokens.clone();
        Box::pin(async move { with_token(&tokens, || inner.health_check()).await })
    }
}
