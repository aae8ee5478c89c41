//! Start-up: settings → master key → database (migrations, key check, seeds) → the
//! engine and the reloader. The long-running process that composes this with the HTTP
//! front is `switchyard-server`.

use std::time::Duration;

use tokio::sync::watch;

use switchyard_core::ValidationError;

use crate::{
    actors::RestartPolicy,
    artifacts::{ArtifactError, ArtifactStore},
    bus::{Bus, BusError},
    engine::{Engine, EngineError, EngineOptions},
    reloader::ReloadHandle,
    secrets::{self, MasterKey, SecretError},
    settings::{Secret, Settings, SettingsError},
    store::{ConfigWriteError, ConnectOptions, OpenError, SeedReport, Store},
};

/// Why the process could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The WASM plugin host could not start.
    #[error("plugin host: {0}")]
    Plugins(String),
    /// Settings did not load or validate.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The master key or admin token could not be read or written.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The database already holds encrypted secrets but the key file is gone.
    #[error(
        "the master key file {path} is missing, but this database holds secrets encrypted \
         with a master key; restore the file or set secrets.master_key"
    )]
    MasterKeyMissing {
        /// The configured key file.
        path: String,
    },
    /// The database could not be opened, migrated or checked.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The `[[providers]]` seeds could not be written.
    #[error(transparent)]
    Seeding(#[from] ConfigWriteError),
    /// The artifact store could not be opened.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// The bus could not be reached or set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on http.listen {0}: {1}")]
    Listen(String, #[source] std::io::Error),
    /// The runtime task ended abnormally.
    #[error("the runtime task ended abnormally: {0}")]
    Stopped(String),
    /// The initial load of provider configs failed.
    #[error("cannot load provider configs: {0}")]
    Reload(String),
    /// The NATS control service could not start.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The actor system could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A `[[providers]]` seed is invalid.
    #[error("invalid [[providers]] seed: {0}")]
    Seed(ValidationError),
}

/// An opened runtime: settings, database and admin token, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    /// The process settings.
    pub settings: Settings,
    /// The repository.
    pub store: Store,
}

/// Resolves the master key, opens and migrates the database, and checks that the key
/// is the database's. The embedded default generates `data/master.key` on a fresh
/// database, with a warning.
///
/// # Errors
/// [`InitError`] saying what to fix.
pub async fn open_store(settings: &Settings) -> Result<Store, InitError> {
    let options = ConnectOptions {
        url: settings.database.url.clone(),
        schema: settings.database.schema.clone(),
        max_connections: settings.database.max_connections,
    };
    let path = &settings.secrets.master_key_file;
    let store = match &settings.secrets.master_key {
        Some(key) => Store::connect(&options, MasterKey::from_base64(key.expose())?).await?,
        None if path.exists() => {
            let (key, _) = MasterKey::load_or_generate(path, false)?;
            Store::connect(&options, key).await?
        }
        None => {
            let (key, _) = MasterKey::generate();
            let store = Store::connect(&options, key).await?;
            if store.has_master_key_check().await? {
                return Err(InitError::MasterKeyMissing {
                    path: path.display().to_string(),
                });
            }
            // Write the key only now that the database is known to be fresh. Another
            // process may have written it meanwhile: then use that one.
            let (key, generated) = MasterKey::load_or_generate(path, true)?;
            if generated {
                tracing::warn!(
                    path = %path.display(),
                    "generated a new master key; back it up: without it stored API keys cannot be read"
                );
            }
            Store::connect(&options, key).await?
        }
    };
    store.check_master_key().await?;
    Ok(store)
}

/// Opens the store and applies the `[[providers]]` seeds.
///
/// # Errors
/// [`InitError`] saying what to fix.
pub async fn prepare(settings: Settings) -> Result<(Runtime, SeedReport), InitError> {
    let store = open_store(&settings).await?;
    let report = match store.seed_providers(&settings.providers).await {
        Ok(report) => report,
        Err(ConfigWriteError::Invalid(e)) => return Err(InitError::Seed(e)),
        Err(e) => return Err(e.into()),
    };
    Ok((Runtime { settings, store }, report))
}

impl Runtime {
    /// The WASM plugin host of `[plugins]`, if enabled.
    ///
    /// # Errors
    /// [`InitError::Plugins`] when the engine cannot be set up.
    pub fn plugin_registry(
        &self,
    ) -> Result<Option<std::sync::Arc<crate::plugins::PluginRegistry>>, InitError> {
        let settings = &self.settings.plugins;
        if !settings.enabled {
            return Ok(None);
        }
        let cache = (!settings.cache_dir.is_empty()).then(|| settings.cache_dir.clone().into());
        crate::plugins::PluginRegistry::new(cache)
            .map(Some)
            .map_err(|e| InitError::Plugins(e.to_string()))
    }

    /// Starts the actor system and the reloader, which loads every valid, enabled
    /// provider config from the database (startup is the diff from an empty set) and
    /// keeps following changes until `shutdown`.
    ///
    /// # Errors
    /// [`InitError`] when the database or the actor system fails.
    pub async fn start_engine(
        &self,
        bus: Option<Bus>,
        shutdown: watch::Receiver<bool>,
        tasks: &switchyard_tasks::Tasks,
    ) -> Result<(Engine, ReloadHandle), InitError> {
        let outbound = self.settings.outbound.guard();
        // Provider adapters and the plugin host find it as the process's guard.
        outbound.install();
        let artifacts = ArtifactStore::open(&self.settings.artifacts.url)?;
        // A missing bucket or refused credentials stop the start, with the reason.
        artifacts.check().await?;
        let mut artifact_urls = self.artifact_urls()?;
        if self.settings.artifacts.presign {
            artifact_urls = artifact_urls.presigned_by(artifacts.clone());
        }
        let options = EngineOptions {
            outbound,
            artifacts,
            artifact_urls,
            restart_policy: RestartPolicy::default(),
            default_wait: Duration::from_secs(60),
            plugins: self.plugin_registry()?,
            vault: Some(crate::oauth_vault::StoreVault::shared(self.store.clone())),
        };
        let (engine, _) = Engine::start(Vec::new(), Vec::new(), options).await?;
        let poll = Duration::from_millis(self.settings.database.change_poll_ms);
        let (reload, report) = crate::reloader::start(
            self.store.clone(),
            engine.clone(),
            bus,
            poll,
            shutdown,
            tasks,
        )
        .await
        .map_err(|e| InitError::Reload(e.to_string()))?;
        for (config_id, reason) in &report.failed {
            tracing::warn!(%config_id, %reason, "provider instance not started");
        }
        tracing::info!(
            database = %switchyard_core::redact_url(&self.settings.database.url),
            running = report.live,
            invalid = report.invalid.len(),
            failed = report.failed.len(),
            "switchyard started"
        );
        Ok((engine, reload))
    }

    /// The admin API token: `admin.token`, else the token file (generated and printed
    /// once at first start).
    ///
    /// # Errors
    /// [`InitError::Secret`] when the file cannot be read or written.
    pub fn admin_token(&self) -> Result<Secret, InitError> {
        if let Some(token) = &self.settings.admin.token {
            return Ok(token.clone());
        }
        let path = &self.settings.admin.token_file;
        let (token, generated) = secrets::load_or_generate_token(path)?;
        if generated {
            // Where it is, always; the token itself only on an interactive terminal,
            // never into whatever collects a service's output (logs).
            use std::io::IsTerminal as _;
            if std::io::stdout().is_terminal() {
                println!(
                    "generated admin token (saved in {}, mode 0600): {token}",
                    path.display()
                );
            } else {
                tracing::info!(file = %path.display(), "generated an admin token; read it from the file (mode 0600)");
            }
        }
        Ok(Secret::new(token))
    }

    /// The signer of artifact URLs: `artifacts.url_key`, else its file (generated once).
    ///
    /// # Errors
    /// [`InitError::Secret`] when the file cannot be read or written, or holds a key
    /// shorter than 16 characters.
    pub fn artifact_urls(&self) -> Result<crate::artifact_urls::ArtifactUrls, InitError> {
        let artifacts = &self.settings.artifacts;
        let key = match &artifacts.url_key {
            Some(key) => key.expose().to_owned(),
            None => secrets::load_or_generate_token(&artifacts.url_key_file)?.0,
        };
        Ok(crate::artifact_urls::ArtifactUrls::new(
            key.as_bytes(),
            Duration::from_millis(artifacts.url_ttl_ms),
            self.settings.http.public_url.as_deref().unwrap_or(""),
        ))
    }

    /// Connects to the bus of the settings.
    ///
    /// # Errors
    /// [`InitError::Bus`].
    pub async fn connect_bus(&self) -> Result<Bus, InitError> {
        Ok(Bus::connect(
            &self.settings.bus.url,
            &self.settings.bus.prefix,
            self.settings.bus.nats_options(),
        )
        .await?)
    }
}
