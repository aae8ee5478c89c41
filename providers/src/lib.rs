//! Provider adapters: one per provider type, each speaking one API. The actor runtime
//! only sees the [`ProviderAdapter`] trait. The HTTP adapters share [`wire`] (client
//! pool, error taxonomy, SSE, downloads); `docs/providers.md` documents their options.
//!
//! Each adapter reads a provider's answer in a pure function before any download
//! (`answer`); `fuzzing` (hidden from the docs) reaches those readers, the error
//! classification and the stream readers without a server, for the fuzz targets.

mod aliyun;
mod answer;
mod anthropic;
#[doc(hidden)]
pub mod fuzzing;
mod gemini;
mod ideogram;
pub mod image;
pub mod mock;
pub mod oauth;
mod openai;
pub mod params;
mod parts;
mod seedream;
pub mod sse;
mod stability;
mod wasm;
pub mod wire;

use std::{future::Future, pin::Pin, sync::Arc};

use switchyard_core::{Command, ErrorCode, ProviderConfig, ProviderType};
use tokio::sync::mpsc;

pub use mock::MockAdapter;
pub use wasm::{PluginSource, kind_of};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an adapter reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterUpdate {
    /// A piece of streamed text (only when the command asked for `stream: true`).
    Chunk(String),
    /// How far a long job is, 0–1 (DashScope's polled tasks).
    Progress(f64),
}

/// An input image of `image.edit`, resolved to bytes once per request (from a URL, an
/// artifact id or base64) before any attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputImage {
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// e.g. `image/png`.
    pub mime: String,
}

impl InputImage {
    /// A `data:` URI of the image.
    pub fn data_uri(&self) -> String {
        use base64::Engine as _;
        format!(
            "data:{};base64,{}",
            self.mime,
            base64::engine::general_purpose::STANDARD.encode(&self.bytes)
        )
    }

    /// A file name with the right extension, for multipart parts.
    pub fn file_name(&self, stem: &str) -> String {
        let ext = self.mime.strip_prefix("image/").unwrap_or("png");
        format!("{stem}.{ext}")
    }
}

/// The resolved input images of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputImages {
    /// `input.images`, in order.
    pub images: Vec<InputImage>,
    /// `input.mask`.
    pub mask: Option<InputImage>,
}

/// One attempt's input.
#[derive(Debug, Clone)]
pub struct AdapterRequest {
    /// The command being served.
    pub command: Arc<Command>,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The input images, resolved.
    pub inputs: Arc<InputImages>,
    /// Where chunks and progress go.
    pub updates: Option<mpsc::UnboundedSender<AdapterUpdate>>,
}

impl AdapterRequest {
    /// A request without input images or an update channel.
    pub fn new(command: Arc<Command>) -> Self {
        Self {
            command,
            attempt: 1,
            inputs: Arc::default(),
            updates: None,
        }
    }

    /// Whether the command asked for streamed text.
    pub fn streaming(&self) -> bool {
        self.command.kind == switchyard_core::Kind::TextGenerate
            && self.command.input.stream == Some(true)
    }

    /// Sends a chunk of streamed text; false when nobody listens any more.
    pub fn chunk(&self, delta: impl Into<String>) -> bool {
        self.updates
            .as_ref()
            .is_some_and(|u| u.send(AdapterUpdate::Chunk(delta.into())).is_ok())
    }

    /// Reports progress (0–1).
    pub fn progress(&self, fraction: f64) {
        if let Some(updates) = &self.updates {
            let _ = updates.send(AdapterUpdate::Progress(fraction.clamp(0.0, 1.0)));
        }
    }

    /// The command's `params` for a provider type: the flat keys, overlaid by the
    /// object under the type's own name (`params.seedream.watermark`). Keys named
    /// after another provider type are left out, and so are the keys the gateway sets
    /// itself ([`params::is_reserved`]: model, image count, size, token cap, prompt,
    /// streaming …), which a tenant may not override.
    pub fn params_for(&self, provider: ProviderType) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let own = match self.command.params.get(provider.as_str()) {
            Some(serde_json::Value::Object(own)) => Some(own),
            _ => None,
        };
        let flat = self
            .command
            .params
            .iter()
            .filter(|(key, _)| key.parse::<ProviderType>().is_err());
        for (key, value) in flat.chain(own.into_iter().flatten()) {
            if params::is_reserved(provider, key) {
                tracing::debug!(key = %key, provider = provider.as_str(), "reserved params key dropped");
                continue;
            }
            out.insert(key.clone(), value.clone());
        }
        out
    }
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

/// Reads a type's `options` object into its options struct.
pub(crate) fn options<T: serde::de::DeserializeOwned + Default>(
    config: &ProviderConfig,
) -> Result<T, AdapterBuildError> {
    if config.spec.options.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_value(serde_json::Value::Object(config.spec.options.clone())).map_err(|e| {
        AdapterBuildError {
            provider: config.spec.provider,
            reason: format!("options: {e}"),
        }
    })
}

/// Decodes standard base64 from a provider answer.
pub(crate) fn decode_b64(api: &wire::Api, data: &str) -> Result<Vec<u8>, AttemptError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| api.malformed(&format_args!("image data is not base64 ({e})")))
}

/// Builds the adapter for a config.
///
/// # Errors
/// [`AdapterBuildError`] for provider types without an adapter yet, or bad options.
pub fn build_adapter(
    config: &ProviderConfig,
) -> Result<Arc<dyn ProviderAdapter>, AdapterBuildError> {
    build_adapter_with(config, &BuildContext::default())
}

/// What the runtime lends the adapters it builds.
#[derive(Default, Clone, Copy)]
pub struct BuildContext<'a> {
    /// Where `wasm` configs take their plugin from.
    pub plugins: Option<&'a dyn PluginSource>,
    /// Where OAuth2 clients keep rotated refresh tokens (else in memory).
    pub vault: Option<&'a Arc<dyn oauth::TokenVault>>,
}

/// Builds the adapter for a config with what `context` lends.
///
/// # Errors
/// [`AdapterBuildError`] for bad options or a plugin that is not loaded.
pub fn build_adapter_with(
    config: &ProviderConfig,
    context: &BuildContext<'_>,
) -> Result<Arc<dyn ProviderAdapter>, AdapterBuildError> {
    if config.spec.owner.is_some() {
        check_tenant_urls(config)?;
    }
    // The token source first: the adapter's `Api` takes the same one (one per client
    // and guard), made here with the vault.
    let tokens = config.spec.auth.oauth2().map(|oauth| {
        let guarded = config.spec.owner.is_some();
        let client = if guarded {
            switchyard_guard::Guard::installed().provider_client()
        } else {
            wire::client()
        };
        oauth::source_for(oauth, &client, guarded, context.vault)
    });
    let adapter = build_plain(config, context.plugins)?;
    Ok(match tokens {
        Some(tokens) => Arc::new(oauth::OAuth2Adapter::new(adapter, tokens)),
        None => adapter,
    })
}

/// A tenant's own account names its endpoints itself: a URL whose host is an IP
/// address the outbound guard refuses to tenants (`outbound.tenant_allow`, not the
/// operator's `allow`) is refused here (host names are checked by the guarded client's
/// resolver at each connection).
fn check_tenant_urls(config: &ProviderConfig) -> Result<(), AdapterBuildError> {
    let guard = switchyard_guard::Guard::installed();
    let urls = config
        .spec
        .base_url
        .iter()
        .chain(config.spec.auth.oauth2().map(|o| &o.token_url));
    for (field, raw) in ["base_url", "auth.token_url"].into_iter().zip(urls) {
        let refused = |reason: String| AdapterBuildError {
            provider: config.spec.provider,
            reason: format!("{field}: {reason}"),
        };
        let url = url::Url::parse(raw).map_err(|e| refused(e.to_string()))?;
        guard
            .check_tenant_url(&url)
            .map_err(|e| refused(e.to_string()))?;
    }
    Ok(())
}

fn build_plain(
    config: &ProviderConfig,
    plugins: Option<&dyn PluginSource>,
) -> Result<Arc<dyn ProviderAdapter>, AdapterBuildError> {
    Ok(match config.spec.provider {
        ProviderType::Mock => Arc::new(MockAdapter::from_config(config)?),
        ProviderType::Openai | ProviderType::OpenaiCompatible => {
            Arc::new(openai::OpenAiAdapter::from_config(config)?)
        }
        ProviderType::Anthropic => Arc::new(anthropic::AnthropicAdapter::from_config(config)?),
        ProviderType::Gemini => Arc::new(gemini::GeminiAdapter::from_config(config)?),
        ProviderType::Stability => Arc::new(stability::StabilityAdapter::from_config(config)?),
        ProviderType::Ideogram => Arc::new(ideogram::IdeogramAdapter::from_config(config)?),
        ProviderType::Seedream => Arc::new(seedream::SeedreamAdapter::from_config(config)?),
        ProviderType::Aliyun => Arc::new(aliyun::AliyunAdapter::from_config(config)?),
        ProviderType::Wasm => Arc::new(wasm::WasmAdapter::from_config(config, plugins)?),
    })
}
