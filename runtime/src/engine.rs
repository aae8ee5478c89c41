//! The engine: one entry point used by the bus and by HTTP. Submit a command, get the
//! stream of its events (PROTOCOL.md §3): `seq` without gaps and exactly one terminal
//! event. Routing runs in the request's own task against the published routing table;
//! attempts go straight to provider actors; fallback follows the route's rules.

pub use estimate::Estimate;

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use ractor::{Actor, ActorRef};
use switchyard_core::{
    Command, ConfigId, ErrorInfo, Event, Lifecycle, Output, ProviderConfig, ProviderRef,
};
use switchyard_tasks::Tasks;
use tokio::sync::mpsc;

use crate::{
    actors::{
        ApplyReport, BreakerOpened, InstanceStatus, RestartPolicy, Router, RouterArgs, RouterMsg,
        RoutingTable, StartFailure, Supervisor, SupervisorArgs, SupervisorMsg,
    },
    artifacts::ArtifactStore,
    clock::Clock,
};

/// Breaker openings buffered per subscriber before the oldest are dropped.
const BREAKER_NOTICES: usize = 1024;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where images are stored.
    pub artifacts: ArtifactStore,
    /// Signs the artifact URLs in events.
    pub artifact_urls: crate::artifact_urls::ArtifactUrls,
    /// How crashed provider actors are restarted.
    pub restart_policy: RestartPolicy,
    /// How long a request may wait for a rate-limit slot when it has no `deadline_ms`.
    pub default_wait: Duration,
    /// The WASM plugin host, for `wasm` provider configs (none: they cannot start).
    pub plugins: Option<Arc<crate::plugins::PluginRegistry>>,
    /// The outbound-fetch guard: input image URLs, and provider result URLs off the
    /// configured endpoint's host.
    pub outbound: crate::guard::Guard,
    /// Where OAuth2 clients keep rotated refresh tokens (none: in memory).
    pub vault: Option<Arc<dyn switchyard_providers::oauth::TokenVault>>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The supervisor actor could not be spawned.
    #[error("cannot start the supervisor: {0}")]
    Spawn(String),
    /// The supervisor did not answer.
    #[error("the supervisor did not answer: {0}")]
    Supervisor(String),
}

/// One command to run, whose task row the caller keeps.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The validated command.
    pub command: Arc<Command>,
    /// Where the request's events stand: new (nothing out yet) or resumed after the
    /// last `seq` its task row recorded. Every event the engine emits is built by it.
    pub lifecycle: Lifecycle,
    /// Emit `accepted` first, with this task row id; `None` when resuming a request
    /// another process accepted, or when the caller publishes `accepted` itself.
    pub announce: Option<i64>,
    /// Fail at once with this error, calling no provider: a request refused before it
    /// runs (a tenant over its quota).
    pub refuse: Option<ErrorInfo>,
    /// Complete at once with this earlier result (`cached: true`), calling no provider.
    pub cached: Option<CachedAnswer>,
    /// Complete with this earlier result (`cached` and `stale`) if every provider
    /// fails (`route.fallback_to_cache`).
    pub stale: Option<CachedAnswer>,
    /// How the tenant's own provider accounts are used next to the shared ones.
    pub own_accounts: switchyard_core::routing::OwnAccounts,
}

/// An identical earlier request's result, answered instead of calling a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// What that request made (its images stay where they are stored).
    pub output: Output,
    /// The instance that made it.
    pub provider: ProviderRef,
}

impl Submission {
    /// A new request: `accepted` first, seq from 1.
    pub fn new(command: Arc<Command>, task_id: i64) -> Self {
        Self {
            lifecycle: Lifecycle::new(command.request_id.clone(), command.tenant.clone()),
            command,
            announce: Some(task_id),
            refuse: None,
            cached: None,
            stale: None,
            own_accounts: switchyard_core::routing::OwnAccounts::default(),
        }
    }
}

/// What a finished request leaves besides its events.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// The terminal event (also emitted).
    pub terminal: Event,
    /// The provider's raw answer (secrets removed), for the task row.
    pub raw_response: Option<serde_json::Value>,
}

/// The running engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Arc<ArcSwap<RoutingTable>>,
    router: ActorRef<RouterMsg>,
    supervisor: ActorRef<SupervisorMsg>,
    artifacts: ArtifactStore,
    artifact_urls: crate::artifact_urls::ArtifactUrls,
    clock: Clock,
    default_wait: Duration,
    breaker_notices: tokio::sync::broadcast::Sender<BreakerOpened>,
    plugins: Option<Arc<crate::plugins::PluginRegistry>>,
    vault: Option<Arc<dyn switchyard_providers::oauth::TokenVault>>,
    pub(crate) outbound: crate::guard::Guard,
    /// Owns the requests started with [`Engine::submit`] and the provider calls.
    tasks: Tasks,
}

impl Engine {
    /// What the engine lends the adapters it builds: its plugin host and its token
    /// vault.
    pub fn build_context(&self) -> switchyard_providers::BuildContext<'_> {
        switchyard_providers::BuildContext {
            plugins: self
                .inner
                .plugins
                .as_deref()
                .map(|p| p as &dyn switchyard_providers::PluginSource),
            vault: self.inner.vault.as_ref(),
        }
    }

    /// The WASM plugin host, if this engine has one.
    pub fn plugins(&self) -> Option<&Arc<crate::plugins::PluginRegistry>> {
        self.inner.plugins.as_ref()
    }

    /// Starts the router, the supervisor and one provider actor per config in `configs`.
    /// Configs whose adapter cannot start are reported, not fatal.
    ///
    /// # Errors
    /// [`EngineError`] when the actor system itself cannot start.
    pub async fn start(
        configs: Vec<ProviderConfig>,
        disabled: Vec<crate::actors::DisabledConfig>,
        options: EngineOptions,
    ) -> Result<(Self, Vec<StartFailure>), EngineError> {
        let clock = Clock::new();
        let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
        let (notice_tx, _) = tokio::sync::broadcast::channel(BREAKER_NOTICES);
        let tasks = Tasks::new("engine");
        let (router, _) = Actor::spawn(
            None,
            Router,
            RouterArgs {
                table: table.clone(),
                notices: notice_tx.clone(),
            },
        )
        .await
        .map_err(|e| EngineError::Spawn(e.to_string()))?;
        let spawned = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                router: router.clone(),
                table: table.clone(),
                clock,
                policy: options.restart_policy,
                plugins: options.plugins.clone(),
                vault: options.vault.clone(),
                calls: tasks.child("provider-calls"),
            },
        )
        .await;
        let supervisor = match spawned {
            Ok((supervisor, _)) => supervisor,
            Err(e) => {
                router.stop(None);
                return Err(EngineError::Spawn(e.to_string()));
            }
        };
        let engine = Self {
            inner: Arc::new(Inner {
                table,
                router,
                supervisor,
                artifacts: options.artifacts,
                artifact_urls: options.artifact_urls,
                clock,
                default_wait: options.default_wait,
                breaker_notices: notice_tx,
                plugins: options.plugins,
                vault: options.vault,
                outbound: options.outbound,
                tasks,
            }),
        };
        let report = engine.apply(configs, disabled).await?;
        Ok((engine, report.failures))
    }

    /// Makes the live instances match `configs` (the enabled, valid configs), touching
    /// only what changed. Requests in flight are never failed by it.
    ///
    /// # Errors
    /// [`EngineError::Supervisor`] when the supervisor is gone.
    pub async fn apply(
        &self,
        configs: Vec<ProviderConfig>,
        disabled: Vec<crate::actors::DisabledConfig>,
    ) -> Result<ApplyReport, EngineError> {
        ractor::call!(self.inner.supervisor, |reply| SupervisorMsg::Apply {
            configs: configs.into_iter().map(Arc::new).collect(),
            disabled,
            reply,
        })
        .map_err(|e| EngineError::Supervisor(e.to_string()))
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.inner.table.load_full()
    }

    /// Whether `tenant` has an own provider account live here.
    pub fn has_own_accounts(&self, tenant: &str) -> bool {
        let table = self.inner.table.load();
        table.owned
            && table
                .instances
                .iter()
                .any(|i| i.config.spec.owner.as_deref() == Some(tenant))
    }

    /// Whether `config_id` is `tenant`'s own provider account (bring your own key):
    /// its usage is recorded but not charged to the tenant's quotas. A config no
    /// longer live counts as shared.
    pub fn is_own_account(&self, config_id: ConfigId, tenant: &str) -> bool {
        let table = self.inner.table.load();
        table.owned
            && table
                .instances
                .iter()
                .any(|i| i.config.id == config_id && i.config.spec.owner.as_deref() == Some(tenant))
    }

    /// Signs artifact URLs (for answers built outside a run, such as cached ones).
    pub fn artifact_urls(&self) -> &crate::artifact_urls::ArtifactUrls {
        &self.inner.artifact_urls
    }

    /// The runtime clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Live status of every instance.
    pub fn status(&self) -> Vec<InstanceStatus> {
        let now = self.inner.clock.now_ms();
        self.inner
            .table
            .load()
            .instances
            .iter()
            .map(|i| i.status(now))
            .collect()
    }

    /// Runs a command in a new task; its events arrive on the returned channel, which
    /// closes after the terminal event.
    pub fn submit(&self, submission: Submission) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = self.clone();
        self.inner.tasks.spawn_bounded("request", async move {
            engine
                .execute(submission, &mut |event| {
                    let _ = tx.send(event);
                })
                .await;
        });
        rx
    }

    /// This process's breakers that open from now on (for whoever announces them to
    /// other replicas); any number of subscribers.
    pub fn breaker_notices(&self) -> tokio::sync::broadcast::Receiver<BreakerOpened> {
        self.inner.breaker_notices.subscribe()
    }

    /// Another replica saw this instance's breaker open: the router routes around it
    /// here too.
    pub fn mark_breaker_open(&self, notice: &BreakerOpened) {
        let _ = self.inner.router.cast(RouterMsg::RemoteBreaker(*notice));
    }

    /// Tells every provider actor that `replicas` runtime processes share each
    /// account's `rpm`, `burst` and `max_concurrency`.
    pub fn set_replicas(&self, replicas: u32) {
        let _ = self
            .inner
            .supervisor
            .cast(SupervisorMsg::SetShare(replicas));
    }

    /// Stops every actor; requests and calls still running end by their own bounds.
    pub fn shutdown(&self) {
        self.inner.supervisor.stop(None);
        self.inner.router.stop(None);
        self.inner.tasks.cancel();
    }

    /// Asks the supervisor for status (through its mailbox; mainly for tests that want
    /// to be sure earlier messages were handled).
    ///
    /// # Errors
    /// When the supervisor is gone.
    pub async fn supervisor_status(&self) -> Result<Vec<InstanceStatus>, EngineError> {
        ractor::call!(self.inner.supervisor, SupervisorMsg::Status)
            .map_err(|e| EngineError::Supervisor(e.to_string()))
    }
}

mod estimate;
mod run;
#[cfg(test)]
mod tests;
