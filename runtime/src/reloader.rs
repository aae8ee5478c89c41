//! The reloader: the only writer of the live provider set. It reads provider configs
//! from the database and applies them to the engine, touching only what changed.
//!
//! Triggers, all keyed by version so duplicates and reordering are harmless:
//! `<prefix>.cfg.changed` on NATS (writes through the API or CLI of any process), the
//! PostgreSQL NOTIFY trigger (hand-written SQL), a poll of the configs' fingerprint
//! (SQLite, and a backstop everywhere), and explicit reload requests (HTTP, NATS).
//! A row that fails validation is reported and the previous working config of that id,
//! if any, keeps serving.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use switchyard_core::{ConfigId, FieldError, ProviderConfig};
use switchyard_tasks::Tasks;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    bus::Bus,
    engine::{Engine, EngineError},
    store::{ConfigChange, ConfigReadError, ProviderFilter, QueryError, Store},
};

/// Why a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The provider configs could not be read.
    #[error(transparent)]
    Store(#[from] ConfigReadError),
    /// The database could not be asked for changes.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The engine did not answer.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The reloader is gone.
    #[error("the reloader is not running")]
    Stopped,
    /// A reload requested by someone else failed.
    #[error("reload failed: {0}")]
    Failed(String),
}

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReloadReport {
    /// Instances serving after the reload.
    pub live: usize,
    /// Started.
    pub added: Vec<ConfigId>,
    /// Replaced by a new actor.
    pub replaced: Vec<ConfigId>,
    /// Drained and stopped.
    pub removed: Vec<ConfigId>,
    /// Rows that do not validate (a previous working config keeps serving).
    pub invalid: Vec<InvalidConfig>,
    /// Configs whose adapter could not start.
    pub failed: Vec<(ConfigId, String)>,
    /// Config version each live instance runs.
    pub versions: BTreeMap<ConfigId, i64>,
}

impl ReloadReport {
    fn new(apply: crate::actors::ApplyReport, invalid: Vec<InvalidConfig>) -> Self {
        Self {
            live: apply.versions.len(),
            failed: apply
                .failures
                .iter()
                .map(|f| (f.config_id, f.reason.clone()))
                .collect(),
            added: apply.added,
            replaced: apply.replaced,
            removed: apply.removed,
            invalid,
            versions: apply.versions,
        }
    }
}

fn failed_ids(apply: &crate::actors::ApplyReport) -> Vec<ConfigId> {
    apply.failures.iter().map(|f| f.config_id).collect()
}

/// A row that does not validate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvalidConfig {
    /// The config.
    pub config_id: ConfigId,
    /// Its field errors.
    pub errors: Vec<FieldError>,
}

type Reply = oneshot::Sender<Result<ReloadReport, ReloadError>>;

enum Trigger {
    /// Re-read every config.
    All(Option<Reply>),
    /// Re-read one config (a change notice named it).
    One(ConfigId, Option<Reply>),
}

/// A handle to ask the reloader for a reload.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::UnboundedSender<Trigger>,
    invalid: std::sync::Arc<arc_swap::ArcSwap<Vec<InvalidConfig>>>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trigger")
    }
}

impl ReloadHandle {
    /// Reloads every config and waits for the result.
    ///
    /// # Errors
    /// [`ReloadError`].
    pub async fn reload_all(&self) -> Result<ReloadReport, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Trigger::All(Some(tx)))
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Re-reads one config and waits for the result.
    ///
    /// # Errors
    /// [`ReloadError`].
    pub async fn reload_one(&self, id: ConfigId) -> Result<ReloadReport, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Trigger::One(id, Some(tx)))
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Rows that did not validate at the last reload (their previous config, if any,
    /// keeps serving).
    pub fn invalid(&self) -> Vec<InvalidConfig> {
        self.invalid.load().as_ref().clone()
    }

    /// Asks for a reload of everything without waiting.
    pub fn nudge(&self) {
        let _ = self.tx.send(Trigger::All(None));
    }

    /// Asks for a reload of one config without waiting.
    pub fn changed(&self, id: ConfigId) {
        let _ = self.tx.send(Trigger::One(id, None));
    }
}

/// Tells every runtime process (this one included) that plugins changed: they reload
/// all configs, so `wasm` configs resolve their plugin again.
pub async fn announce_plugins(bus: &Bus, name: &str) {
    let subject = bus.subjects().config_changed();
    let notice = serde_json::json!({"plugin": name}).to_string();
    if let Err(e) = bus.publish_core(&subject, notice.into_bytes().into()).await {
        tracing::warn!(error = %e, "cannot announce a plugin change; runtimes will poll");
    }
}

/// Tells other runtime processes that a config changed (`<prefix>.cfg.changed`).
pub async fn announce(bus: &Bus, change: &ConfigChange) {
    let subject = bus.subjects().config_changed();
    match serde_json::to_vec(change) {
        Ok(body) => {
            if let Err(e) = bus.publish_core(&subject, Bytes::from(body)).await {
                tracing::warn!(error = %e, "config change not announced; replicas will catch it by polling");
            }
        }
        Err(e) => tracing::warn!(error = %e, "config change not encoded"),
    }
}

struct Reloader {
    store: Store,
    engine: Engine,
    /// The config of each live id as last applied (the fallback for an invalid row).
    applied: BTreeMap<ConfigId, ProviderConfig>,
    /// Disabled configs (for clear `config_id` errors).
    disabled: BTreeMap<ConfigId, (String, Option<String>)>,
}

impl Reloader {
    /// Re-reads the named configs only, then applies the whole (in-memory) live set:
    /// the diff still touches only what changed, and the database work is one row each.
    async fn reload_some(
        &mut self,
        ids: &std::collections::BTreeSet<ConfigId>,
    ) -> Result<ReloadReport, ReloadError> {
        let mut invalid = Vec::new();
        let mut previous = BTreeMap::new();
        for id in ids {
            match self.store.get_provider(*id).await? {
                None => {
                    previous.insert(*id, self.applied.remove(id));
                    self.disabled.remove(id);
                }
                Some(record) => match record.config() {
                    Ok(mut config) if config.spec.enabled => {
                        if let Some(plugins) = self.engine.plugins() {
                            plugins.resolve(&self.store, [&mut config]).await;
                        }
                        self.disabled.remove(id);
                        previous.insert(*id, self.applied.insert(*id, config));
                    }
                    Ok(config) => {
                        previous.insert(*id, self.applied.remove(id));
                        self.disabled
                            .insert(*id, (config.spec.name, config.spec.owner));
                    }
                    Err(e) => {
                        tracing::warn!(config_id = %id, error = %e, "provider config is invalid; the previous one, if any, keeps serving");
                        invalid.push(InvalidConfig {
                            config_id: *id,
                            errors: e.errors,
                        });
                    }
                },
            }
        }
        let report = self
            .engine
            .apply(
                self.applied.values().cloned().collect(),
                self.disabled
                    .iter()
                    .map(|(id, (name, owner))| (*id, name.clone(), owner.clone()))
                    .collect(),
            )
            .await?;
        let failed = failed_ids(&report);
        for id in &failed {
            match previous.remove(id).flatten() {
                Some(config) => {
                    self.applied.insert(*id, config);
                }
                None => {
                    self.applied.remove(id);
                }
            }
        }
        Ok(ReloadReport::new(report, invalid))
    }

    async fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let records = self
            .store
            .list_providers(&ProviderFilter::default())
            .await?;
        let mut live = BTreeMap::new();
        let mut disabled = Vec::new();
        let mut invalid = Vec::new();
        for record in records {
            match record.config() {
                Ok(config) if config.spec.enabled => {
                    live.insert(config.id, config);
                }
                Ok(config) => disabled.push((config.id, config.spec.name, config.spec.owner)),
                Err(e) => {
                    tracing::warn!(config_id = %record.id, error = %e, "provider config is invalid; the previous one, if any, keeps serving");
                    if let Some(previous) = self.applied.get(&record.id) {
                        live.insert(record.id, previous.clone());
                    }
                    invalid.push(InvalidConfig {
                        config_id: record.id,
                        errors: e.errors,
                    });
                }
            }
        }
        if let Some(plugins) = self.engine.plugins() {
            plugins.resolve(&self.store, live.values_mut()).await;
        }
        let report = self
            .engine
            .apply(live.values().cloned().collect(), disabled)
            .await?;
        let failed = failed_ids(&report);
        // A config that failed to start is not applied: keep the previous one's record.
        for id in &failed {
            if let Some(previous) = self.applied.get(id) {
                live.insert(*id, previous.clone());
            } else {
                live.remove(id);
            }
        }
        self.applied = live;
        Ok(ReloadReport::new(report, invalid))
    }
}

/// Starts the reloader task: an initial full load, then reloads on every trigger until
/// `shutdown`. Returns the handle and the report of the initial load. Its tasks (the
/// reload loop and the change followers) belong to `tasks`.
///
/// # Errors
/// [`ReloadError`] when the initial load fails.
pub async fn start(
    store: Store,
    engine: Engine,
    bus: Option<Bus>,
    poll_every: Duration,
    mut shutdown: watch::Receiver<bool>,
    tasks: &Tasks,
) -> Result<(ReloadHandle, ReloadReport), ReloadError> {
    let mut reloader = Reloader {
        store: store.clone(),
        engine,
        applied: BTreeMap::new(),
        disabled: BTreeMap::new(),
    };
    let initial = reloader.reload().await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let invalid = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(initial.invalid.clone()));
    let handle = ReloadHandle {
        tx: tx.clone(),
        invalid: invalid.clone(),
    };

    // Push: NATS change notices from any process.
    if let Some(bus) = bus {
        let tx = tx.clone();
        let subject = bus.subjects().config_changed();
        match bus.subscribe_core(&subject).await {
            Ok(mut notices) => {
                tasks.spawn("config-notices", async move {
                    while let Some(notice) = notices.next().await {
                        let trigger = match serde_json::from_slice::<ConfigChange>(&notice) {
                            Ok(change) => Trigger::One(change.id, None),
                            Err(_) => Trigger::All(None),
                        };
                        if tx.send(trigger).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to config change notices; relying on polling")
            }
        }
    }
    // Push: PostgreSQL NOTIFY (hand-written SQL included). The listener holds a pool
    // connection: it must end with the process, or closing the pool would wait forever.
    if let Some(mut listener) = store.listen_config_changes().await? {
        let tx = tx.clone();
        let mut stop = shutdown.clone();
        tasks.spawn("config-listener", async move {
            loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    next = listener.next() => next,
                };
                match next {
                    Ok(change) => {
                        // `None`: the connection was re-established and notices may
                        // have been lost: read everything.
                        let trigger =
                            change.map_or(Trigger::All(None), |c| Trigger::One(c.id, None));
                        if tx.send(trigger).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "config listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    // Poll: the fingerprint, for SQLite and as a backstop.
    {
        let tx = tx.clone();
        let store = store.clone();
        let mut last = store.config_fingerprint().await.ok();
        let mut stop = shutdown.clone();
        tasks.spawn("config-poll", async move {
            let mut ticker = tokio::time::interval(poll_every);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = ticker.tick() => {}
                }
                match store.config_fingerprint().await {
                    Ok(now) if Some(now) != last => {
                        last = Some(now);
                        if tx.send(Trigger::All(None)).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "config poll failed"),
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
    }
    tasks.spawn("reloader", async move {
        loop {
            let trigger = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                trigger = rx.recv() => match trigger {
                    Some(trigger) => trigger,
                    None => break,
                },
            };
            // Coalesce a burst of notices into one reload.
            let mut waiters = Vec::new();
            let mut full = false;
            let mut ids = std::collections::BTreeSet::new();
            let mut take = |trigger: Trigger, waiters: &mut Vec<Reply>| match trigger {
                Trigger::All(reply) => {
                    full = true;
                    waiters.extend(reply);
                }
                Trigger::One(id, reply) => {
                    ids.insert(id);
                    waiters.extend(reply);
                }
            };
            take(trigger, &mut waiters);
            while let Ok(trigger) = rx.try_recv() {
                take(trigger, &mut waiters);
            }
            let result = if full {
                reloader.reload().await
            } else {
                reloader.reload_some(&ids).await
            };
            if let Ok(report) = &result {
                let mut now: Vec<InvalidConfig> = if full {
                    Vec::new()
                } else {
                    invalid
                        .load()
                        .iter()
                        .filter(|i| !ids.contains(&i.config_id))
                        .cloned()
                        .collect()
                };
                now.extend(report.invalid.iter().cloned());
                invalid.store(std::sync::Arc::new(now));
            }
            if let Err(e) = &result {
                tracing::error!(error = %e, "reload failed; the running configs keep serving");
            }
            for waiter in waiters {
                let _ = waiter.send(match &result {
                    Ok(report) => Ok(report.clone()),
                    Err(e) => Err(ReloadError::Failed(e.to_string())),
                });
            }
        }
    });
    Ok((handle, initial))
}
