//! WASM plugins in the runtime: the process's [`PluginHost`] and the plugin versions
//! it has loaded. Before provider configs are applied, [`PluginRegistry::resolve`]
//! turns each `wasm` config's `plugin = "name"` into the exact `name@version` it means
//! now (the newest active version in the database) and loads that version once. A new
//! version therefore changes the config as the supervisor sees it, and the ordinary
//! hot-reload rules swap it: new requests go to the new version, in-flight ones finish
//! on the old.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use switchyard_core::{ProviderConfig, ProviderType};
pub use switchyard_plugins::{LoadError, Plugin, PluginHost};
use switchyard_providers::PluginSource;
pub use switchyard_providers::kind_of;

use crate::store::Store;

/// The loaded plugin versions of one runtime.
#[derive(Debug)]
pub struct PluginRegistry {
    host: Arc<PluginHost>,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    failures: Mutex<HashMap<String, String>>,
}

impl PluginRegistry {
    /// A registry with its own engine; `cache_dir` keeps compiled plugins on disk.
    ///
    /// # Errors
    /// [`LoadError::Engine`].
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Self>, LoadError> {
        Ok(Arc::new(Self {
            host: PluginHost::new(cache_dir)?,
            loaded: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }))
    }

    /// The engine.
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// A loaded version, by exact `name@version`.
    pub fn get(&self, reference: &str) -> Option<Arc<Plugin>> {
        self.loaded.lock().ok()?.get(reference).cloned()
    }

    /// Why a reference could not be loaded, if it failed.
    pub fn failure(&self, reference: &str) -> Option<String> {
        self.failures.lock().ok()?.get(reference).cloned()
    }

    /// Rewrites every `wasm` config's plugin reference to the exact version it means
    /// now, loading versions not loaded yet. A reference that cannot be resolved is
    /// left as it is; the instance then fails to start with the reason (and a
    /// previous version of it keeps serving).
    pub async fn resolve<'a>(
        &self,
        store: &Store,
        configs: impl IntoIterator<Item = &'a mut ProviderConfig>,
    ) {
        for config in configs {
            if config.spec.provider != ProviderType::Wasm {
                continue;
            }
            // A pinned, already resolved reference is resolved again from the stored
            // config's own value on the next read; here it is taken as written.
            let Some(reference) = config.spec.plugin.clone() else {
                continue;
            };
            let (info, bytes) = match store.resolve_plugin(&reference).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    self.fail(&reference, format!("plugin '{reference}' is not installed"));
                    continue;
                }
                Err(e) => {
                    self.fail(&reference, format!("cannot read plugin '{reference}': {e}"));
                    continue;
                }
            };
            let exact = format!("{}@{}", info.name, info.version);
            let current = self.get(&exact);
            if current.as_ref().is_none_or(|p| p.sha256 != info.sha256) {
                match self.host.load(&bytes).await {
                    Ok(plugin) => {
                        tracing::info!(plugin = %exact, sha256 = %plugin.sha256, cached = plugin.from_cache, "plugin loaded");
                        if let Ok(mut loaded) = self.loaded.lock() {
                            loaded.insert(exact.clone(), Arc::new(plugin));
                        }
                    }
                    Err(e) => {
                        self.fail(&reference, format!("plugin {exact}: {e}"));
                        continue;
                    }
                }
            }
            // A config's kinds default to everything a `wasm` config could serve:
            // narrow them to what this plugin version says it serves.
            if let Some(plugin) = self.get(&exact) {
                let served: Vec<switchyard_core::Kind> = plugin
                    .descriptor
                    .kinds
                    .iter()
                    .map(|k| kind_of(*k))
                    .collect();
                let narrowed: std::collections::BTreeSet<_> = config
                    .spec
                    .kinds
                    .iter()
                    .copied()
                    .filter(|k| served.contains(k))
                    .collect();
                if !narrowed.is_empty() {
                    config.spec.kinds = narrowed;
                }
            }
            config.spec.plugin = Some(exact);
        }
    }

    fn fail(&self, reference: &str, reason: String) {
        tracing::warn!(plugin = reference, %reason, "plugin unavailable");
        if let Ok(mut failures) = self.failures.lock() {
            failures.insert(reference.to_owned(), reason);
        }
    }
}

impl PluginSource for PluginRegistry {
    fn host(&self) -> &Arc<PluginHost> {
        PluginRegistry::host(self)
    }

    fn get(&self, reference: &str) -> Option<Arc<Plugin>> {
        PluginRegistry::get(self, reference)
    }

    fn failure(&self, reference: &str) -> Option<String> {
        PluginRegistry::failure(self, reference)
    }
}

/// Why an install was refused.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file is not a usable plugin.
    #[error("invalid plugin: {0}")]
    Invalid(#[from] LoadError),
    /// The name given is not usable.
    #[error("invalid plugin name '{0}': use letters, digits, '-' and '_' (at most 64)")]
    BadName(String),
    /// The database refused.
    #[error(transparent)]
    Store(#[from] crate::store::PluginWriteError),
}

/// Validates a plugin file (compiles it, checks its world, calls `describe`) and
/// stores it under its own name (or `name`) and version. Returns what is stored and
/// whether it is new.
///
/// # Errors
/// [`InstallError`] naming what is wrong; nothing is stored then.
pub async fn install(
    store: &Store,
    host: &PluginHost,
    bytes: &[u8],
    name: Option<&str>,
) -> Result<(crate::store::PluginInfo, bool), InstallError> {
    let plugin = host.load(bytes).await?;
    let name = name.unwrap_or(&plugin.descriptor.name).to_owned();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(InstallError::BadName(name));
    }
    let installed = store
        .install_plugin(&name, &plugin.descriptor.version, &plugin.sha256, bytes)
        .await?;
    Ok(match installed {
        crate::store::Installed::New(info) => (info, true),
        crate::store::Installed::Existing(info) => (info, false),
    })
}
