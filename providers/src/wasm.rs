//! `wasm`: a provider config whose adapter is a WASM plugin. The config names the
//! plugin (`plugin = "name"` or `"name@version"`), its `options.allowed_hosts` (where
//! the plugin may connect), `options.memory_mb` (default 64) and anything else the
//! plugin's own options schema asks for. The key stays with the host.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use switchyard_core::{ErrorCode, Kind, ProviderConfig, ProviderType, Role};
use switchyard_plugins::{
    CallContext, CallError, ErrorCode as PluginCode, InputImage, Message, Plugin, PluginEvent,
    PluginHost, Request,
};
use tokio::sync::mpsc;

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ImageOutput,
    ProviderAdapter, wire,
};

/// Where the adapter finds loaded plugins: the runtime's plugin registry, which
/// resolves `name` to an exact `name@version` and loads it before configs apply.
pub trait PluginSource: Send + Sync {
    /// The host that runs the plugins.
    fn host(&self) -> &Arc<PluginHost>;
    /// The loaded plugin for an exact `name@version` reference.
    fn get(&self, reference: &str) -> Option<Arc<Plugin>>;
    /// Why a reference could not be loaded, if it was tried.
    fn failure(&self, reference: &str) -> Option<String>;
}

/// The gateway's kind for a plugin's.
pub fn kind_of(kind: switchyard_plugins::Kind) -> Kind {
    match kind {
        switchyard_plugins::Kind::ImageGenerate => Kind::ImageGenerate,
        switchyard_plugins::Kind::ImageEdit => Kind::ImageEdit,
        switchyard_plugins::Kind::TextGenerate => Kind::TextGenerate,
    }
}

/// The adapter of one `wasm` config.
#[derive(Debug)]
pub struct WasmAdapter {
    plugin: Arc<Plugin>,
    host: Arc<PluginHost>,
    reference: String,
    api_key: Option<String>,
    allowed_hosts: Vec<String>,
    memory_bytes: usize,
    timeout: Duration,
    model: Option<String>,
    base_url: Option<String>,
    options_json: String,
}

impl WasmAdapter {
    /// The adapter for a config whose plugin the registry has loaded.
    ///
    /// # Errors
    /// The plugin is not loaded (with the reason), or the options are bad.
    pub fn from_config(
        config: &ProviderConfig,
        registry: Option<&dyn PluginSource>,
    ) -> Result<Self, AdapterBuildError> {
        let fail = |reason: String| AdapterBuildError {
            provider: ProviderType::Wasm,
            reason,
        };
        let reference = config.spec.plugin.clone().unwrap_or_default();
        let registry = registry.ok_or_else(|| fail("this process runs no plugin host".into()))?;
        let plugin = registry.get(&reference).ok_or_else(|| {
            fail(
                registry
                    .failure(&reference)
                    .unwrap_or_else(|| format!("plugin '{reference}' is not loaded")),
            )
        })?;
        let options = &config.spec.options;
        let allowed_hosts = match options.get("allowed_hosts") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        fail("options.allowed_hosts must be a list of host names".into())
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(fail(
                    "options.allowed_hosts must be a list of host names".into(),
                ));
            }
        };
        let memory_mb = match options.get("memory_mb") {
            None => 64,
            Some(v) => v
                .as_u64()
                .filter(|mb| (1..=4096).contains(mb))
                .ok_or_else(|| fail("options.memory_mb must be 1–4096".into()))?,
        };
        let served: Vec<Kind> = plugin
            .descriptor
            .kinds
            .iter()
            .map(|k| kind_of(*k))
            .collect();
        if let Some(kind) = config.spec.kinds.iter().find(|k| !served.contains(k)) {
            return Err(fail(format!(
                "plugin {reference} does not serve {kind} (it serves {})",
                served
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self {
            plugin,
            host: registry.host().clone(),
            reference,
            api_key: config.spec.api_key.as_ref().map(|k| k.expose().to_owned()),
            allowed_hosts,
            memory_bytes: usize::try_from(memory_mb).unwrap_or(64) << 20,
            // Under the actor's own timeout by a fifth (50 ms – 2 s), so the plugin's
            // overrun is reported as the plugin's even on a busy machine.
            timeout: Duration::from_millis(
                config.spec.timeout_ms
                    - (config.spec.timeout_ms / 5)
                        .clamp(50, 2_000)
                        .min(config.spec.timeout_ms / 2),
            ),
            model: config.spec.model.clone(),
            base_url: config.spec.base_url.clone(),
            options_json: Value::Object(options.clone()).to_string(),
        })
    }

    fn context(&self, events: Option<mpsc::UnboundedSender<PluginEvent>>) -> CallContext {
        CallContext {
            outbound: Some(switchyard_guard::Guard::installed()),
            allowed_hosts: self.allowed_hosts.clone(),
            api_key: self.api_key.clone(),
            timeout: self.timeout,
            memory_bytes: self.memory_bytes,
            max_response_bytes: wire::MAX_IMAGE_BYTES,
            events,
            plugin: self.reference.clone(),
        }
    }

    fn request(&self, request: &AdapterRequest) -> Request {
        let command = &request.command;
        let input = &command.input;
        Request {
            kind: match command.kind {
                Kind::ImageGenerate => switchyard_plugins::Kind::ImageGenerate,
                Kind::ImageEdit => switchyard_plugins::Kind::ImageEdit,
                Kind::TextGenerate => switchyard_plugins::Kind::TextGenerate,
            },
            prompt: input.prompt.clone(),
            negative_prompt: input.negative_prompt.clone(),
            n: command.image_count(),
            size: input.size.clone(),
            aspect_ratio: input.aspect_ratio.clone(),
            seed: input.seed,
            images: request
                .inputs
                .images
                .iter()
                .map(|i| InputImage {
                    bytes: i.bytes.clone(),
                    mime: i.mime.clone(),
                })
                .collect(),
            messages: input
                .messages
                .iter()
                .flatten()
                .map(|m| Message {
                    role: match m.role {
                        Role::System => "system",
                        Role::User => "user",
                        Role::Assistant => "assistant",
                    }
                    .to_owned(),
                    content: m.content.clone(),
                })
                .collect(),
            system: input.system.clone(),
            max_tokens: input.max_tokens.and_then(|m| u32::try_from(m).ok()),
            temperature: input.temperature,
            stream: request.streaming(),
            model: self.model.clone(),
            base_url: self.base_url.clone(),
            options_json: self.options_json.clone(),
            params_json: Value::Object(request.params_for(ProviderType::Wasm)).to_string(),
            deadline_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Turns plugin failures into attempt errors, without the key.
#[derive(Debug, Clone)]
struct Errors {
    reference: String,
    api_key: Option<String>,
}

impl Errors {
    fn error(&self, error: CallError) -> AttemptError {
        match error {
            CallError::Provider(e) => AttemptError {
                code: match e.code {
                    PluginCode::InvalidRequest => ErrorCode::InvalidRequest,
                    PluginCode::Unauthorized => ErrorCode::Unauthorized,
                    PluginCode::QuotaExceeded => ErrorCode::QuotaExceeded,
                    PluginCode::RateLimited => ErrorCode::RateLimited,
                    PluginCode::ContentFiltered => ErrorCode::ContentFiltered,
                    PluginCode::ProviderError => ErrorCode::ProviderError,
                    PluginCode::ProviderUnavailable => ErrorCode::ProviderUnavailable,
                    PluginCode::Timeout => ErrorCode::Timeout,
                },
                message: self.redact(&format!("plugin {}: {}", self.reference, e.message)),
                retry_after_ms: e.retry_after_ms,
            },
            CallError::Plugin(message) => AttemptError::new(
                ErrorCode::PluginError,
                self.redact(&format!("plugin {}: {message}", self.reference)),
            ),
        }
    }

    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if key.len() >= 4 => text.replace(key.as_str(), "****"),
            _ => text.to_owned(),
        }
    }
}

impl ProviderAdapter for WasmAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Wasm
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let call_request = self.request(&request);
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let context = self.context(Some(events_tx));
        let plugin = self.plugin.clone();
        let host = self.host.clone();
        let adapter = Errors {
            reference: self.reference.clone(),
            api_key: self.api_key.clone(),
        };
        Box::pin(async move {
            let forward = async {
                while let Some(event) = events.recv().await {
                    match event {
                        PluginEvent::Chunk(delta) if request.streaming() => {
                            request.chunk(delta);
                        }
                        PluginEvent::Chunk(_) => {}
                        PluginEvent::Progress(fraction) => request.progress(fraction),
                    }
                }
            };
            let call = plugin.generate(host.engine(), call_request, context);
            let (result, ()) = tokio::join!(call, forward);
            let response = result.map_err(|e| adapter.error(e))?;
            let mut images = Vec::with_capacity(response.images.len());
            for image in response.images {
                if let Err(e) = crate::image::describe(&image.bytes) {
                    return Err(adapter.error(CallError::Plugin(format!(
                        "returned an image that cannot be read: {e}"
                    ))));
                }
                images.push(ImageOutput {
                    bytes: image.bytes,
                    seed: image.seed,
                    revised_prompt: image.revised_prompt,
                });
            }
            Ok(AdapterOutput {
                images,
                text: response.text,
                input_tokens: response.input_tokens,
                output_tokens: response.output_tokens,
                raw: None,
            })
        })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        let plugin = self.plugin.clone();
        let host = self.host.clone();
        let context = self.context(None);
        let reference = self.reference.clone();
        Box::pin(async move {
            plugin
                .health_check(host.engine(), context)
                .await
                .map_err(|e| match e {
                    CallError::Provider(e) => AttemptError::new(
                        ErrorCode::Unauthorized,
                        format!("plugin {reference}: {}", e.message),
                    ),
                    CallError::Plugin(m) => AttemptError::new(
                        ErrorCode::PluginError,
                        format!("plugin {reference}: {m}"),
                    ),
                })
        })
    }
}
