//! The WASM plugin registry over the gateway: install (validated first), list,
//! remove, roll back. Every write is announced, so every runtime reloads the configs
//! that use the plugin.

use super::Gateway;
use crate::{
    plugins::{InstallError, install},
    reloader::announce_plugins,
    store::{PluginInfo, PluginWriteError, QueryError},
};

/// Why a plugin was not installed.
#[derive(Debug, thiserror::Error)]
pub enum PluginInstallError {
    /// This runtime runs no plugin host (`[plugins] enabled = false`).
    #[error("this runtime runs no plugin host")]
    NoHost,
    /// The file, the name or the store refused it.
    #[error(transparent)]
    Install(#[from] InstallError),
}

impl Gateway {
    /// Validates a plugin file and stores it under its own name (or `name`) and
    /// version, then announces it. What is stored, and whether it is new.
    ///
    /// # Errors
    /// [`PluginInstallError`]; nothing is stored or announced then.
    pub async fn install_plugin(
        &self,
        wasm: &[u8],
        name: Option<&str>,
    ) -> Result<(PluginInfo, bool), PluginInstallError> {
        let registry = self
            .parts
            .engine
            .plugins()
            .ok_or(PluginInstallError::NoHost)?;
        let (info, new) = install(&self.parts.store, registry.host(), wasm, name).await?;
        self.plugins_changed(&info.name).await;
        Ok((info, new))
    }

    /// Every installed version of the plugin `name` (of every plugin, without one).
    ///
    /// # Errors
    /// The store's.
    pub async fn plugins(&self, name: Option<&str>) -> Result<Vec<PluginInfo>, QueryError> {
        self.parts.store.list_plugins(name).await
    }

    /// Removes a plugin (`name`: every version; `name@version`: that one); when any
    /// was removed, announces it. How many versions were removed.
    ///
    /// # Errors
    /// The store's.
    pub async fn remove_plugin(&self, reference: &str) -> Result<u64, PluginWriteError> {
        let removed = self.parts.store.remove_plugin(reference).await?;
        if removed > 0 {
            self.plugins_changed(reference).await;
        }
        Ok(removed)
    }

    /// Deactivates the current version of plugin `name`, so the name means the one
    /// before, and announces it: the version deactivated and the one current now.
    ///
    /// # Errors
    /// The store's (no earlier version, a database failure).
    pub async fn rollback_plugin(
        &self,
        name: &str,
    ) -> Result<(PluginInfo, PluginInfo), PluginWriteError> {
        let rolled = self.parts.store.rollback_plugin(name).await?;
        self.plugins_changed(name).await;
        Ok(rolled)
    }

    /// Tells every process that plugins changed, and asks this one to reload.
    async fn plugins_changed(&self, name: &str) {
        announce_plugins(&self.parts.bus, name).await;
        self.parts.reload.nudge();
    }
}
