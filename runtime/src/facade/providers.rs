//! Provider configs over the gateway: read, write (each write announced to every
//! process and reloaded here), reload, live status, a test call of one config, and the
//! routing table of the live instances.

use std::{sync::Arc, time::Duration};

use switchyard_core::{ConfigId, ErrorCode, ProviderConfig, ProviderConfigDraft, ProviderSpec};

use super::Gateway;
use crate::{
    actors::{InstanceStatus, RoutingTable},
    providers::build_adapter_with,
    reloader::{InvalidConfig, ReloadError, ReloadReport, announce},
    store::{ConfigChange, ConfigReadError, ConfigWriteError, ProviderFilter, ProviderRecord},
};

/// The live status of this process's instances.
#[derive(Debug, Clone)]
pub struct ProviderStatus {
    /// Replicas in the deployment (1 without NATS).
    pub replicas: u32,
    /// Each live instance.
    pub instances: Vec<InstanceStatus>,
    /// Each stored config that did not validate at the last reload.
    pub invalid: Vec<InvalidConfig>,
}

/// What a test call of a provider config found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCheck {
    /// The provider answered the adapter's health check.
    Healthy,
    /// No adapter could be built for the config: why.
    NoAdapter(String),
    /// The health check failed with this code and message.
    Failed {
        /// The error code.
        code: ErrorCode,
        /// The provider's message.
        message: String,
    },
    /// No answer within the config's `timeout_ms`.
    TimedOut,
}

impl Gateway {
    /// The stored provider configs that pass `filter` (its page included).
    ///
    /// # Errors
    /// The store's.
    pub async fn providers(
        &self,
        filter: &ProviderFilter,
    ) -> Result<Vec<ProviderRecord>, ConfigReadError> {
        self.parts.store.list_providers(filter).await
    }

    /// One stored provider config, if there is one with this id.
    ///
    /// # Errors
    /// The store's.
    pub async fn provider(&self, id: ConfigId) -> Result<Option<ProviderRecord>, ConfigReadError> {
        self.parts.store.get_provider(id).await
    }

    /// One provider config by id or unique name.
    ///
    /// # Errors
    /// The store's.
    pub async fn find_provider(
        &self,
        reference: &switchyard_core::ConfigRef,
    ) -> Result<Option<ProviderRecord>, ConfigReadError> {
        self.parts.store.find_provider(reference).await
    }

    /// Stores a new provider config, announces it and reloads.
    ///
    /// # Errors
    /// The store's (a taken name, a database failure …); nothing is announced then.
    pub async fn create_provider(
        &self,
        spec: &ProviderSpec,
    ) -> Result<ProviderConfig, ConfigWriteError> {
        let config = self.parts.store.insert_provider(spec).await?;
        self.provider_changed(config.id, "insert", config.version)
            .await;
        Ok(config)
    }

    /// Patches a stored provider config, announces it and reloads.
    ///
    /// # Errors
    /// The store's (not found, invalid, a lost race …); nothing is announced then.
    pub async fn patch_provider(
        &self,
        id: ConfigId,
        patch: ProviderConfigDraft,
    ) -> Result<ProviderConfig, ConfigWriteError> {
        let config = self.parts.store.patch_provider(id, patch).await?;
        self.provider_changed(config.id, "update", config.version)
            .await;
        Ok(config)
    }

    /// Deletes a stored provider config; when there was one, announces it and reloads.
    /// Whether there was one.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_provider(&self, id: ConfigId) -> Result<bool, ConfigWriteError> {
        let deleted = self.parts.store.delete_provider(id).await?;
        if deleted {
            self.provider_changed(id, "delete", 0).await;
        }
        Ok(deleted)
    }

    /// Tells every process that a config changed, and asks this one to reload.
    async fn provider_changed(&self, id: ConfigId, op: &str, version: i64) {
        announce(
            &self.parts.bus,
            &ConfigChange {
                id,
                op: op.to_owned(),
                version,
            },
        )
        .await;
        self.parts.reload.nudge();
    }

    /// Reloads every config of this process and waits for the result.
    ///
    /// # Errors
    /// The reloader's.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.parts.reload.reload_all().await
    }

    /// The live status of this process's instances.
    pub fn provider_status(&self) -> ProviderStatus {
        ProviderStatus {
            replicas: self
                .parts
                .membership
                .as_ref()
                .map_or(1, crate::replicas::Membership::replicas),
            instances: self.parts.engine.status(),
            invalid: self.parts.reload.invalid(),
        }
    }

    /// A test call of `config`: its plugin resolved (with a plugin host), an adapter
    /// built for it, and the adapter's health check, within the config's timeout.
    pub async fn check_provider(&self, mut config: ProviderConfig) -> ProviderCheck {
        let plugins = self.parts.engine.plugins();
        if let Some(plugins) = plugins {
            plugins.resolve(&self.parts.store, [&mut config]).await;
        }
        let adapter = match build_adapter_with(&config, &self.parts.engine.build_context()) {
            Ok(adapter) => adapter,
            Err(e) => return ProviderCheck::NoAdapter(e.to_string()),
        };
        let timeout = Duration::from_millis(config.spec.timeout_ms);
        match tokio::time::timeout(timeout, adapter.health_check()).await {
            Ok(Ok(())) => ProviderCheck::Healthy,
            Ok(Err(e)) => ProviderCheck::Failed {
                code: e.code,
                message: e.message,
            },
            Err(_) => ProviderCheck::TimedOut,
        }
    }

    /// The current routing table: the live instances and their configs.
    pub fn routing_table(&self) -> Arc<RoutingTable> {
        self.parts.engine.table()
    }
}
