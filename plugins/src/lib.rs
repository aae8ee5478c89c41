//! Switchyard's WASM plugin host: provider adapters as WebAssembly components of the
//! `switchyard:provider@1.0.0` world (`plugins/wit/provider.wit`), run by wasmtime.
//!
//! - One [`PluginHost`] per process: one wasmtime `Engine` (epoch interruption, ticked
//!   every 10 ms by a background thread) and one `Linker` with the host imports.
//! - [`PluginHost::load`] validates a file (a component, not a core module; the right
//!   world; a working `describe`), compiles it once — cached on disk by SHA-256 and the
//!   engine's compatibility hash — and pre-instantiates it.
//! - Every call gets a fresh `Store` (no state leaks between requests), a memory cap,
//!   and a deadline: the guest yields every epoch tick, so a runaway loop is stopped
//!   without holding a runtime thread. A trap, timeout or broken result is a
//!   [`CallError::Plugin`]; the host and other calls are unaffected.
//! - The guest's only way out is the `host` interface: HTTP to the hosts its config
//!   allows (checked on the name and on the resolved addresses, redirects not
//!   followed, bodies capped), logging, chunks, progress, sleep and a read-only clock.
//!   It never sees the API key: it writes `{{api_key}}` and the host fills it in on
//!   the way out, and removes the key from anything that comes back.

mod http;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use wasmtime::{
    Config, Engine, Store, StoreLimits, StoreLimitsBuilder,
    component::{Component, HasSelf, Linker},
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "provider",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use bindings::switchyard::provider::types::{
    Descriptor, ErrorCode, Image, InputImage, Kind, Message, ProviderError, Request, Response,
};
use bindings::{Provider, ProviderPre, switchyard::provider::host};

/// The placeholder a guest writes where the API key goes.
pub const API_KEY_PLACEHOLDER: &str = "{{api_key}}";

/// The error a guest past its deadline is stopped with.
const DEADLINE_MARKER: &str = "switchyard: the plugin's deadline passed";

/// How often the engine's epoch advances.
const TICK: Duration = Duration::from_millis(10);

/// Why a plugin file was refused or could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component: wrap it with wit-component (docs/plugins.md)"
    )]
    CoreModule,
    /// Compilation failed.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// The component is not a `switchyard:provider@1` plugin.
    #[error("not a switchyard:provider@1.0.0 plugin: {0}")]
    WrongWorld(String),
    /// `describe` failed or returned nonsense.
    #[error("describe failed: {0}")]
    Describe(String),
    /// The engine could not be set up.
    #[error("plugin engine: {0}")]
    Engine(String),
}

/// Why one call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin reported a provider failure (a typed error of the contract).
    #[error("{}: {}", code_name(.0.code), .0.message)]
    Provider(ProviderError),
    /// The plugin itself failed: trap, timeout, memory cap, broken result.
    #[error("{0}")]
    Plugin(String),
}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest => "invalid_request",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::QuotaExceeded => "quota_exceeded",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::ContentFiltered => "content_filtered",
        ErrorCode::ProviderError => "provider_error",
        ErrorCode::ProviderUnavailable => "provider_unavailable",
        ErrorCode::Timeout => "timeout",
    }
}

/// What a call reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginEvent {
    /// Streamed text.
    Chunk(String),
    /// Progress, 0–1.
    Progress(f64),
}

/// Everything one call may use: the sandbox's limits and its only ways out.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The outbound guard the guest's HTTP goes through (none: the guest gets no
    /// network at all).
    pub outbound: Option<switchyard_guard::Guard>,
    /// Hosts the guest may reach: `api.example.com`, `*.example.com`, `127.0.0.1:8080`.
    pub allowed_hosts: Vec<String>,
    /// The account's key, filled in where the guest wrote the placeholder.
    pub api_key: Option<String>,
    /// The whole call's time budget.
    pub timeout: Duration,
    /// Linear memory cap.
    pub memory_bytes: usize,
    /// Largest HTTP response body handed to the guest.
    pub max_response_bytes: usize,
    /// Where chunks and progress go.
    pub events: Option<mpsc::UnboundedSender<PluginEvent>>,
    /// For log lines.
    pub plugin: String,
}

impl CallContext {
    /// A context with the default caps (64 MiB memory, 32 MiB responses).
    pub fn new(outbound: Option<switchyard_guard::Guard>, timeout: Duration) -> Self {
        Self {
            outbound,
            allowed_hosts: Vec::new(),
            api_key: None,
            timeout,
            memory_bytes: 64 << 20,
            max_response_bytes: 32 << 20,
            events: None,
            plugin: String::new(),
        }
    }
}

/// The per-call store data.
struct HostState {
    limits: StoreLimits,
    context: CallContext,
    deadline: tokio::time::Instant,
}

/// One process's plugin engine.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// A loaded plugin version: compiled, pre-instantiated, described.
pub struct Plugin {
    pre: ProviderPre<HostState>,
    /// What `describe` said.
    pub descriptor: Descriptor,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Whether the compiled code came from the disk cache.
    pub from_cache: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.descriptor.name)
            .field("version", &self.descriptor.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// An engine with epoch interruption, and a linker with the host imports.
    /// `cache_dir` keeps compiled code across restarts.
    ///
    /// # Errors
    /// [`LoadError::Engine`].
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Self>, LoadError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        Provider::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| LoadError::Engine(e.to_string()))?;
        }
        Ok(Arc::new(Self {
            engine,
            linker,
            cache_dir,
        }))
    }

    /// Validates, compiles (or loads from the cache), pre-instantiates and describes a
    /// plugin file. Compiling takes a while: call it off the async threads.
    ///
    /// # Errors
    /// [`LoadError`] saying what is wrong with the file.
    pub async fn load(&self, wasm: &[u8]) -> Result<Plugin, LoadError> {
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(LoadError::NotWasm);
        }
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule);
        }
        let sha256 = hex::encode(Sha256::digest(wasm));
        let (component, from_cache) = self.compile(wasm, &sha256)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre =
            ProviderPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let mut plugin = Plugin {
            pre,
            descriptor: Descriptor {
                name: String::new(),
                version: String::new(),
                kinds: Vec::new(),
                options_schema: String::new(),
            },
            sha256,
            from_cache,
        };
        let context = CallContext::new(None, Duration::from_secs(5));
        let descriptor = plugin
            .describe(&self.engine, context)
            .await
            .map_err(|e| LoadError::Describe(e.to_string()))?;
        if descriptor.name.trim().is_empty() || descriptor.version.trim().is_empty() {
            return Err(LoadError::Describe(
                "the plugin gave an empty name or version".into(),
            ));
        }
        if descriptor.kinds.is_empty() {
            return Err(LoadError::Describe("the plugin serves no kind".into()));
        }
        plugin.descriptor = descriptor;
        Ok(plugin)
    }

    fn compile(&self, wasm: &[u8], sha256: &str) -> Result<(Component, bool), LoadError> {
        let cached = self.cache_dir.as_ref().map(|dir| {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut hasher = DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
        });
        if let Some(path) = &cached
            && path.exists()
        {
            match load_precompiled(&self.engine, path) {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable plugin cache file");
                }
            }
        }
        let component =
            Component::new(&self.engine, wasm).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(path) = &cached {
            match component.serialize() {
                Ok(bytes) => {
                    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                    if std::fs::write(&tmp, bytes)
                        .and_then(|()| std::fs::rename(&tmp, path))
                        .is_err()
                    {
                        tracing::warn!(path = %path.display(), "cannot write the plugin cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled plugin"),
            }
        }
        Ok((component, false))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Loads compiled code this process (or an earlier one with the same engine) wrote.
#[allow(
    unsafe_code,
    reason = "deserializing compiled code is unsafe in wasmtime's API"
)]
fn load_precompiled(engine: &Engine, path: &std::path::Path) -> wasmtime::Result<Component> {
    // Read into memory rather than `deserialize_file`'s mmap: a cache file changed on
    // disk later can then never fault the running process.
    let bytes = std::fs::read(path)?;
    // SAFETY: the bytes come from the host's own cache directory, written by
    // `Component::serialize` of an engine with the same compatibility hash (part of
    // the file name); wasmtime also checks the header and version before loading.
    unsafe { Component::deserialize(engine, &bytes) }
}

impl Plugin {
    fn store(&self, engine: &Engine, context: CallContext) -> Store<HostState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(context.memory_bytes)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let deadline = tokio::time::Instant::now() + context.timeout;
        let mut store = Store::new(
            engine,
            HostState {
                limits,
                context,
                deadline,
            },
        );
        store.limiter(|state| &mut state.limits);
        // At every epoch tick (10 ms) the guest either yields to the async runtime
        // (so it never holds a runtime thread) or, once past its deadline, traps.
        // The deadline is checked here, in the guest's own time, because a yielding
        // guest can starve the runtime's timers for hundreds of milliseconds.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if tokio::time::Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::msg(DEADLINE_MARKER))
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    async fn run<T>(
        &self,
        engine: &Engine,
        context: CallContext,
        call: impl AsyncFnOnce(&Provider, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        let timeout = context.timeout;
        let mut store = self.store(engine, context);
        let work = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            call(&instance, &mut store).await
        };
        let late = || {
            CallError::Plugin(format!(
                "the plugin did not finish within {} ms",
                timeout.as_millis()
            ))
        };
        // The runtime's timer is the backstop for time spent in host calls.
        match tokio::time::timeout(timeout + TICK, work).await {
            Err(_) => Err(late()),
            Ok(Err(trap)) if format!("{trap:#}").contains(DEADLINE_MARKER) => Err(late()),
            Ok(Err(trap)) => Err(CallError::Plugin(describe_trap(&trap))),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// Calls `describe`.
    ///
    /// # Errors
    /// [`CallError::Plugin`] on a trap or timeout.
    pub async fn describe(
        &self,
        engine: &Engine,
        context: CallContext,
    ) -> Result<Descriptor, CallError> {
        self.run(engine, context, async |instance, store| {
            instance.call_describe(store).await
        })
        .await
    }

    /// Calls `generate` in a fresh store.
    ///
    /// # Errors
    /// [`CallError::Provider`] for a failure the plugin reports,
    /// [`CallError::Plugin`] for the plugin's own failure.
    pub async fn generate(
        &self,
        engine: &Engine,
        request: Request,
        context: CallContext,
    ) -> Result<Response, CallError> {
        self.run(engine, context, async move |instance, store| {
            instance.call_generate(store, &request).await
        })
        .await?
        .map_err(CallError::Provider)
    }

    /// Calls `health-check` in a fresh store.
    ///
    /// # Errors
    /// As [`Plugin::generate`].
    pub async fn health_check(
        &self,
        engine: &Engine,
        context: CallContext,
    ) -> Result<(), CallError> {
        self.run(engine, context, async |instance, store| {
            instance.call_health_check(store).await
        })
        .await?
        .map_err(CallError::Provider)
    }
}

fn describe_trap(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::MemoryOutOfBounds | wasmtime::Trap::AllocationTooLarge => {
                return format!("the plugin exceeded its memory limit ({trap})");
            }
            wasmtime::Trap::Interrupt => {
                return "the plugin was interrupted at its deadline".to_owned();
            }
            _ => return format!("the plugin trapped: {trap}"),
        }
    }
    if text.contains("memory") && text.contains("limit") || text.contains("grow") {
        return format!("the plugin exceeded its memory limit: {text}");
    }
    format!("the plugin failed: {text}")
}

impl host::Host for HostState {
    async fn http_send(
        &mut self,
        request: host::HttpRequest,
    ) -> wasmtime::Result<Result<host::HttpResponse, String>> {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        Ok(http::send(&self.context, request, left).await)
    }

    async fn log(&mut self, level: String, message: String) -> wasmtime::Result<()> {
        let message: String = message.chars().take(2000).collect();
        let plugin = &self.context.plugin;
        match level.as_str() {
            "error" => tracing::error!(plugin, "{message}"),
            "warn" => tracing::warn!(plugin, "{message}"),
            "debug" => tracing::debug!(plugin, "{message}"),
            _ => tracing::info!(plugin, "{message}"),
        }
        Ok(())
    }

    async fn emit_chunk(&mut self, delta: String) -> wasmtime::Result<()> {
        if let Some(events) = &self.context.events {
            let _ = events.send(PluginEvent::Chunk(delta));
        }
        Ok(())
    }

    async fn progress(&mut self, fraction: f64) -> wasmtime::Result<()> {
        if let Some(events) = &self.context.events
            && fraction.is_finite()
        {
            let _ = events.send(PluginEvent::Progress(fraction.clamp(0.0, 1.0)));
        }
        Ok(())
    }

    async fn sleep_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
        // Never past the deadline: the call's timeout ends it there anyway.
        let until = (tokio::time::Instant::now() + Duration::from_millis(ms)).min(self.deadline);
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }
}

impl bindings::switchyard::provider::types::Host for HostState {}
