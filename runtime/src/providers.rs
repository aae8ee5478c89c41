//! Provider adapters: one per provider type, each speaking one API. The actor runtime
//! only sees the [`ProviderAdapter`] trait; real providers and WASM plugins implement it
//! in later issues.

pub(crate) mod mock;

use std::{future::Future, pin::Pin, sync::Arc};

use switchyard_core::{Command, ErrorCode, ProviderConfig, ProviderType};
use tokio::sync::mpsc;

pub use mock::MockAdapter;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One attempt's input.
#[derive(Debug, Clone)]
pub struct AdapterRequest {
    /// The command being served.
    pub command: Arc<Command>,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Where streamed text goes, when the command asked for `stream: true`.
    pub chunks: Option<mpsc::UnboundedSender<String>>,
}

/// One image an adapter produced: bytes (already downloaded/decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutput {
    /// Encoded image bytes (PNG, JPEG, WebP).
    pub bytes: Vec<u8>,
    /// The seed used, if the provider reports one.
    pub seed: Option<i64>,
    /// The prompt as the provider rewrote it.
    pub revised_prompt: Option<String>,
}

/// What an adapter returns on success.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterOutput {
    /// Images made.
    pub images: Vec<ImageOutput>,
    /// Text made (full text, also when streamed).
    pub text: Option<String>,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// The provider's raw answer with secrets and image data removed.
    pub raw: Option<serde_json::Value>,
}

/// Why one attempt on one instance produced no output. An expected failure is a value,
/// never an `Err` out of an actor handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AttemptError {
    /// The taxonomy code (retry verdict and breaker relevance come from it).
    pub code: ErrorCode,
    /// The provider's own message where there is one; never a secret.
    pub message: String,
    /// For `rate_limited`: how long the provider asked us to wait.
    pub retry_after_ms: Option<u64>,
}

impl AttemptError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// The port every provider implements.
pub trait ProviderAdapter: Send + Sync + std::fmt::Debug + 'static {
    /// The provider type this adapter speaks.
    fn provider_type(&self) -> ProviderType;

    /// Runs one attempt. Called inside the provider actor to build the future, which
    /// then runs in a task the actor owns: the non-async part must be quick.
    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>>;

    /// The cheapest authenticated call the API has (checks the account's key).
    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>>;
}

/// Why an adapter could not be built for a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot start an adapter for provider type '{provider}': {reason}")]
pub struct AdapterBuildError {
    /// The provider type.
    pub provider: ProviderType,
    /// Why.
    pub reason: String,
}

/// Builds the adapter for a config.
///
/// # Errors
/// [`AdapterBuildError`] for provider types without an adapter yet, or bad options.
pub fn build_adapter(
    config: &ProviderConfig,
) -> Result<Arc<dyn ProviderAdapter>, AdapterBuildError> {
    match config.spec.provider {
        ProviderType::Mock => Ok(Arc::new(MockAdapter::from_config(config)?)),
        other => Err(AdapterBuildError {
            provider: other,
            reason: "no adapter is built into this version yet".to_owned(),
        }),
    }
}
