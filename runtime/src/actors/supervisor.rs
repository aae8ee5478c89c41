//! `Supervisor`: spawns one provider actor per live config, restarts crashed actors
//! with exponential backoff, marks an instance `failed` after too many restarts in a
//! window (instead of restarting it in a loop), and tells the router the live set after
//! each change. One crashing instance never affects another.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use switchyard_core::{ConfigId, ProviderConfig, ProviderSpec, reload::diff};

use super::{
    instance_state::InstanceState,
    provider::{ProviderActor, ProviderArgs, ProviderMsg},
    router::RouterMsg,
    table::{Instance, InstanceStatus, RoutingTable},
};
use crate::{
    clock::Clock,
    providers::{ProviderAdapter, build_adapter_with},
};

/// How crashed actors are restarted.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubles with each restart in the window.
    pub initial_backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
    /// Restarts allowed within `window` before the instance is marked failed.
    pub max_restarts: usize,
    /// The window restarts are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// The supervisor (stateless handler).
#[derive(Debug, Clone, Copy, Default)]
pub struct Supervisor;

/// What the supervisor is started with.
#[derive(Debug, Clone)]
pub struct SupervisorArgs {
    /// The router, told the live set after each change.
    pub router: ActorRef<RouterMsg>,
    /// The router's published table (read for status).
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// The runtime clock.
    pub clock: Clock,
    /// Restart policy.
    pub policy: RestartPolicy,
    /// Loaded WASM plugins, for `wasm` configs.
    pub plugins: Option<Arc<crate::plugins::PluginRegistry>>,
    /// Where OAuth2 clients keep rotated refresh tokens.
    pub vault: Option<Arc<dyn switchyard_providers::oauth::TokenVault>>,
    /// Owns the provider actors' in-flight calls.
    pub calls: switchyard_tasks::Tasks,
}

/// A config whose actor could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// The config.
    pub config_id: ConfigId,
    /// Why.
    pub reason: String,
}

/// What one apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Instances started.
    pub added: Vec<ConfigId>,
    /// Instances whose actor was replaced by one with the new settings.
    pub replaced: Vec<ConfigId>,
    /// Instances drained and stopped.
    pub removed: Vec<ConfigId>,
    /// Configs that could not start (a replaced one keeps its previous actor).
    pub failures: Vec<StartFailure>,
    /// The config version each live instance now runs.
    pub versions: BTreeMap<ConfigId, i64>,
}

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Make the live set match `configs` (enabled, valid configs): start what is new,
    /// replace what changed, drain what is gone; touch nothing else.
    Apply {
        /// The complete live set.
        configs: Vec<Arc<ProviderConfig>>,
        /// Disabled configs (id, name).
        disabled: Vec<crate::actors::DisabledConfig>,
        /// What changed.
        reply: RpcReplyPort<ApplyReport>,
    },
    /// Restart the actor of a config (backoff timer).
    Restart(ConfigId),
    /// `n` runtime processes share every account's limits now.
    SetShare(u32),
    /// Live status of every instance.
    Status(RpcReplyPort<Vec<InstanceStatus>>),
}

struct Child {
    args: ProviderArgs,
    actor: Option<ActorRef<ProviderMsg>>,
    restarts: VecDeque<tokio::time::Instant>,
}

/// The supervisor's private state.
pub struct SupervisorState {
    args: SupervisorArgs,
    children: BTreeMap<ConfigId, Child>,
    by_actor: HashMap<ActorId, ConfigId>,
    disabled: Vec<crate::actors::DisabledConfig>,
    share: u32,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            args,
            children: BTreeMap::new(),
            by_actor: HashMap::new(),
            disabled: Vec::new(),
            share: 1,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Apply {
                configs,
                disabled,
                reply,
            } => {
                let report = state.apply(&myself, configs).await;
                state.disabled = disabled;
                // The caller may route the moment it has the report: publish first.
                state.publish_and_wait().await;
                let _ = reply.send(report);
            }
            SupervisorMsg::Restart(config_id) => {
                let Some(child) = state.children.get_mut(&config_id) else {
                    return Ok(());
                };
                match spawn_child(&myself, child.args.clone()).await {
                    Ok(actor) => {
                        state.by_actor.insert(actor.get_id(), config_id);
                        child.actor = Some(actor);
                        child.args.state.set_restarting(false);
                        tracing::info!(config_id = %config_id, "provider actor restarted");
                    }
                    Err(reason) => {
                        tracing::error!(config_id = %config_id, %reason, "provider actor could not be restarted");
                        child.args.state.set_failed(true);
                    }
                }
                state.publish();
            }
            SupervisorMsg::SetShare(share) => {
                let share = share.max(1);
                if share != state.share {
                    tracing::info!(
                        replicas = share,
                        "account limits now shared by {share} replicas"
                    );
                    state.share = share;
                    for child in state.children.values_mut() {
                        child.args.share = share;
                        if let Some(actor) = &child.actor {
                            let _ = actor.cast(ProviderMsg::SetShare(share));
                        }
                    }
                }
            }
            SupervisorMsg::Status(reply) => {
                let now = state.args.clock.now_ms();
                let table = state.args.table.load();
                let _ = reply.send(table.instances.iter().map(|i| i.status(now)).collect());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Never stop because a child ended (ractor's default would).
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".to_owned()))
            }
            _ => return Ok(()),
        };
        let Some(config_id) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        let policy = state.args.policy;
        let Some(child) = state.children.get_mut(&config_id) else {
            return Ok(());
        };
        if child.actor.as_ref().map(|a| a.get_id()) != Some(cell.get_id()) {
            return Ok(());
        }
        child.actor = None;
        let now = tokio::time::Instant::now();
        while child
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            child.restarts.pop_front();
        }
        child.restarts.push_back(now);
        let restarts = child.args.state.add_restart();
        metrics::counter!("switchyard_actor_restarts_total", "config" => child.args.config.spec.name.clone())
            .increment(1);
        if child.restarts.len() > policy.max_restarts {
            tracing::error!(
                config_id = %config_id, restarts, %reason,
                "provider actor failed too often; marked failed and not restarted"
            );
            child.args.state.set_failed(true);
        } else {
            let exponent = u32::try_from(child.restarts.len() - 1)
                .unwrap_or(u32::MAX)
                .min(16);
            let backoff = policy
                .initial_backoff
                .saturating_mul(1 << exponent)
                .min(policy.max_backoff);
            tracing::warn!(config_id = %config_id, %reason, backoff_ms = backoff.as_millis() as u64, "provider actor crashed; restarting");
            child.args.state.set_restarting(true);
            myself.send_after(backoff, move || SupervisorMsg::Restart(config_id));
        }
        state.publish();
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for child in state.children.values() {
            if let Some(actor) = &child.actor {
                actor.stop(None);
            }
        }
        Ok(())
    }
}

async fn spawn_child(
    myself: &ActorRef<SupervisorMsg>,
    args: ProviderArgs,
) -> Result<ActorRef<ProviderMsg>, String> {
    Actor::spawn_linked(None, ProviderActor, args, myself.get_cell())
        .await
        .map(|(actor, _)| actor)
        .map_err(|e| e.to_string())
}

impl SupervisorState {
    /// Diff, prepare (fallible: new actors for added and changed configs), swap
    /// (infallible: the table), drain (retired actors finish in-flight calls, then stop).
    async fn apply(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        configs: Vec<Arc<ProviderConfig>>,
    ) -> ApplyReport {
        let new: BTreeMap<ConfigId, Arc<ProviderConfig>> =
            configs.into_iter().map(|c| (c.id, c)).collect();
        let diff = {
            let old_specs: BTreeMap<ConfigId, &ProviderSpec> = self
                .children
                .iter()
                .map(|(id, c)| (*id, &c.args.config.spec))
                .collect();
            let new_specs: BTreeMap<ConfigId, &ProviderSpec> =
                new.iter().map(|(id, c)| (*id, &c.spec)).collect();
            diff(&old_specs, &new_specs)
        };
        let mut report = ApplyReport::default();
        // Prepare.
        let mut prepared = Vec::new();
        for id in diff.to_add.iter().chain(&diff.to_replace) {
            let Some(config) = new.get(id) else { continue };
            let adapter: Arc<dyn ProviderAdapter> = match build_adapter_with(
                config,
                &switchyard_providers::BuildContext {
                    plugins: self
                        .args
                        .plugins
                        .as_deref()
                        .map(|p| p as &dyn switchyard_providers::PluginSource),
                    vault: self.args.vault.as_ref(),
                },
            ) {
                Ok(adapter) => adapter,
                Err(e) => {
                    tracing::warn!(config_id = %id, error = %e, "provider instance not started (a previous actor of this config, if any, keeps serving)");
                    report.failures.push(StartFailure {
                        config_id: *id,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let args = ProviderArgs {
                config: config.clone(),
                adapter,
                // An edited config's live numbers go on from its previous actor's.
                state: Arc::new(
                    self.children
                        .get(id)
                        .map_or_else(InstanceState::default, |old| {
                            InstanceState::carried_from(&old.args.state)
                        }),
                ),
                clock: self.args.clock,
                share: self.share,
                router: self.args.router.get_derived(),
                calls: self.args.calls.clone(),
            };
            match spawn_child(myself, args.clone()).await {
                Ok(actor) => prepared.push((*id, args, actor)),
                Err(reason) => report.failures.push(StartFailure {
                    config_id: *id,
                    reason,
                }),
            }
        }
        // Swap.
        for (id, args, actor) in prepared {
            self.by_actor.insert(actor.get_id(), id);
            let child = Child {
                args,
                actor: Some(actor),
                restarts: VecDeque::new(),
            };
            match self.children.insert(id, child) {
                Some(old) => {
                    report.replaced.push(id);
                    self.retire(old);
                }
                None => report.added.push(id),
            }
        }
        // Drain what is gone.
        for id in &diff.to_remove {
            if let Some(old) = self.children.remove(id) {
                report.removed.push(*id);
                self.retire(old);
            }
        }
        // Unchanged settings with a new version: keep the actor, show the version.
        for (id, config) in &new {
            if let Some(child) = self.children.get_mut(id)
                && child.args.config.version != config.version
                && child.args.config.spec == config.spec
            {
                child.args.config = config.clone();
            }
        }
        report.versions = self
            .children
            .iter()
            .map(|(id, c)| (*id, c.args.config.version))
            .collect();
        if !(report.added.is_empty() && report.replaced.is_empty() && report.removed.is_empty()) {
            tracing::info!(added = ?report.added, replaced = ?report.replaced, removed = ?report.removed, "provider configs applied");
        }
        report
    }

    /// Takes a child out of service: its actor finishes in-flight calls, then stops.
    fn retire(&mut self, child: Child) {
        if let Some(actor) = child.actor {
            self.by_actor.remove(&actor.get_id());
            let _ = actor.cast(ProviderMsg::Drain);
        }
    }

    fn members(&self) -> Vec<Instance> {
        self.children
            .values()
            .map(|child| Instance {
                config: child.args.config.clone(),
                state: child.args.state.clone(),
                actor: child.actor.clone(),
            })
            .collect()
    }

    /// Tells the router the live set.
    fn publish(&self) {
        let _ = self.args.router.cast(RouterMsg::Members {
            instances: self.members(),
            disabled: self.disabled.clone(),
            reply: None,
        });
    }

    /// Tells the router the live set and waits until it is published.
    async fn publish_and_wait(&self) {
        let sent = ractor::call!(self.args.router, |reply| RouterMsg::Members {
            instances: self.members(),
            disabled: self.disabled.clone(),
            reply: Some(reply),
        });
        if let Err(e) = sent {
            tracing::error!(error = %e, "the router is gone; the routing table is stale");
        }
    }
}
