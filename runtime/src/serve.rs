//! Start-up and the long-running process: settings → master key → database
//! (migrations, key check, seeds) → run until shutdown.

use std::{future::Future, time::Duration};

use tokio::sync::watch;

use switchyard_core::ValidationError;

use crate::{
    actors::RestartPolicy,
    artifacts::{ArtifactError, ArtifactStore},
    bus::{Bus, BusError},
    engine::{Engine, EngineError, EngineOptions},
    ingress::{CommandHandler, Readiness, run_ingress},
    reloader::ReloadHandle,
    secrets::{self, MasterKey, SecretError},
    settings::{Secret, Settings, SettingsError},
    store::{ConnectOptions, SeedReport, Store, StoreError},
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
    Store(#[from] StoreError),
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
    #[error("cannot start the NATS control service: {0}")]
    Control(String),
    /// The actor system could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A `[[providers]]` seed is invalid.
    #[error("invalid [[providers]] seed: {0}")]
    Seed(ValidationError),
}

/// A runtime serving in its own task.
#[derive(Debug)]
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), InitError>>,
}

impl Running {
    /// Shuts the runtime down and waits until it has stopped.
    ///
    /// # Errors
    /// The runtime's own error, or [`InitError::Stopped`] if its task died.
    pub async fn stop(self) -> Result<(), InitError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| InitError::Stopped(e.to_string()))?
    }
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
        Err(StoreError::Invalid(e)) => return Err(InitError::Seed(e)),
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
    ) -> Result<(Engine, ReloadHandle), InitError> {
        let options = EngineOptions {
            artifacts: ArtifactStore::open(&self.settings.artifacts.url)?,
            artifact_base_url: format!("http://{}", self.settings.http.listen),
            restart_policy: RestartPolicy::default(),
            default_wait: Duration::from_secs(60),
            plugins: self.plugin_registry()?,
        };
        let (engine, _) = Engine::start(Vec::new(), Vec::new(), options).await?;
        let poll = Duration::from_millis(self.settings.database.change_poll_ms);
        let (reload, report, _task) =
            crate::reloader::start(self.store.clone(), engine.clone(), bus, poll, shutdown)
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
            // Printed once, on the terminal only (never through the log pipeline), as
            // PROTOCOL.md §7 promises; it stays readable in the 0600 file.
            println!(
                "generated admin token (saved in {}, mode 0600): {token}",
                path.display()
            );
        }
        Ok(Secret::new(token))
    }

    /// Runs until `shutdown` resolves: the actor system, the bus consumer, the HTTP
    /// server and the NATS control service. On shutdown it stops pulling commands,
    /// hands back unstarted ones, lets running ones finish, and closes the database.
    ///
    /// # Errors
    /// [`InitError`] for start-up failures.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), InitError> {
        let bus = self.connect_bus().await?;
        self.run_with_bus(bus, shutdown).await
    }

    /// Runs in a task of its own on `bus` (which the caller keeps using, e.g. the demo's
    /// in-process bus); [`Running::stop`] shuts it down cleanly.
    pub fn spawn_with_bus(self, bus: Bus) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            self.run_with_bus(bus, async {
                let _ = stopped.await;
            })
            .await
        });
        Running { stop, task }
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

    /// [`Runtime::run`] on a bus the caller already holds (the demo talks to the same
    /// in-process bus).
    ///
    /// # Errors
    /// [`InitError`] for start-up failures.
    pub async fn run_with_bus(
        self,
        bus: Bus,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), InitError> {
        let token = self.admin_token()?;
        let readiness = Readiness::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let nats_bus = bus.nats_client().is_some().then(|| bus.clone());
        let (engine, reload) = self.start_engine(nats_bus, stop_rx.clone()).await?;

        let listener = tokio::net::TcpListener::bind(&self.settings.http.listen)
            .await
            .map_err(|e| InitError::Listen(self.settings.http.listen.clone(), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| InitError::Listen(self.settings.http.listen.clone(), e))?;
        tracing::info!(listen = %local, bus = %switchyard_core::redact_url(&self.settings.bus.url), "serving");
        let membership = match bus.nats_client() {
            Some(_) => {
                Some(crate::replicas::start(bus.clone(), engine.clone(), stop_rx.clone()).await)
            }
            None => None,
        };
        let quotas = crate::quota::Quotas::new(self.store.clone());
        let app = crate::http::router(crate::http::HttpState {
            artifacts: ArtifactStore::open(&self.settings.artifacts.url)?,
            readiness: readiness.clone(),
            metrics: crate::telemetry::prometheus(),
            admin: Some(crate::http::AdminState {
                store: self.store.clone(),
                engine: engine.clone(),
                reload: reload.clone(),
                bus: bus.clone(),
                token,
                membership,
                quotas: quotas.clone(),
            }),
        });
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|s| *s).await;
                })
                .await;
        });
        let control = match bus.nats_client() {
            Some(client) => Some(
                crate::control::start(
                    client.clone(),
                    bus.subjects().clone(),
                    engine.clone(),
                    reload.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let handler = CommandHandler::new(self.store.clone(), engine.clone(), bus.clone())
            .with_quotas(quotas)
            .with_progress_every(Duration::from_millis(self.settings.bus.ack_wait_ms / 3));
        let ingress = tokio::spawn(run_ingress(
            handler,
            self.settings.bus.concurrency,
            readiness,
            stop_rx,
        ));

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        match ingress.await {
            Ok(Err(e)) => tracing::error!(error = %e, "command consumer failed"),
            Err(e) => tracing::error!(error = %e, "command consumer panicked"),
            Ok(Ok(())) => {}
        }
        let _ = http.await;
        if let Some(control) = control {
            control.stop().await;
        }
        engine.shutdown();
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
