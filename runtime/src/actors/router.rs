//! `Router`: the one owner of the routing table and of the routing data that spans
//! instances — the round-robin cursor, the latency EWMAs, breaker notices in both
//! directions (this process's openings out to subscribers, other replicas' openings in),
//! and the live set after every reload or restart. It is the table's only writer: it
//! receives membership, latency and breaker messages and publishes an immutable
//! [`RoutingTable`] snapshot after each change.
//!
//! No request passes through its mailbox. Each request plans its route in its own task
//! against the latest snapshot (`switchyard_core::routing::plan`) and offers the call
//! to a provider actor directly; a snapshot carries the router's cursor, from which a
//! request takes one ticket. One mailbox for every request would serialise them
//! (docs/benchmarks.md).

use std::sync::{Arc, atomic::AtomicU64};

use arc_swap::ArcSwap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;

use super::{
    observation::{BreakerOpened, Observation},
    table::{Instance, RoutingTable},
};

/// The router (stateless handler; its state is [`RouterState`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Router;

/// What the router is started with.
#[derive(Debug, Clone)]
pub struct RouterArgs {
    /// Where snapshots are published (requests read it without a lock).
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// Where this process's breaker openings go (to whoever announces them).
    pub notices: broadcast::Sender<BreakerOpened>,
}

/// Messages of the router.
#[derive(Debug)]
pub enum RouterMsg {
    /// The supervisor's live set changed (an apply, a crash, a restart).
    Members {
        /// Every live instance.
        instances: Vec<Instance>,
        /// Configs that exist but are disabled.
        disabled: Vec<crate::actors::DisabledConfig>,
        /// Answered once the new snapshot is published.
        reply: Option<RpcReplyPort<()>>,
    },
    /// What a provider actor saw: a call's latency (folded into the instance's EWMA),
    /// or that its breaker opened (told to the subscribers).
    Observed(Observation),
    /// Another replica saw an instance's breaker open: route around it here too.
    RemoteBreaker(BreakerOpened),
}

/// The router's private state.
#[derive(Debug)]
pub struct RouterState {
    args: RouterArgs,
    cursor: Arc<AtomicU64>,
    instances: Vec<Instance>,
    disabled: Vec<crate::actors::DisabledConfig>,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = RouterState {
            args,
            cursor: Arc::new(AtomicU64::new(0)),
            instances: Vec::new(),
            disabled: Vec::new(),
        };
        state.publish();
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Members {
                instances,
                disabled,
                reply,
            } => {
                state.instances = instances;
                state.disabled = disabled;
                state.publish();
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            RouterMsg::Observed(Observation::Latency {
                state: live,
                samples,
            }) => {
                for latency_ms in samples {
                    live.observe_latency(latency_ms);
                }
            }
            RouterMsg::Observed(Observation::BreakerOpened(notice)) => {
                // No subscriber (a single process) is not an error: nobody needs to know.
                let _ = state.args.notices.send(notice);
            }
            RouterMsg::RemoteBreaker(notice) => {
                if let Some(instance) = state
                    .instances
                    .iter()
                    .find(|i| i.config.id == notice.config_id && i.config.version == notice.version)
                {
                    instance.state.set_remote_open_until(notice.until_ms);
                }
            }
        }
        Ok(())
    }
}

impl From<Observation> for RouterMsg {
    fn from(observation: Observation) -> Self {
        RouterMsg::Observed(observation)
    }
}

impl TryFrom<RouterMsg> for Observation {
    type Error = RouterMsg;
    fn try_from(message: RouterMsg) -> Result<Self, Self::Error> {
        match message {
            RouterMsg::Observed(observation) => Ok(observation),
            other => Err(other),
        }
    }
}

impl RouterState {
    fn publish(&self) {
        self.args.table.store(Arc::new(RoutingTable {
            instances: self.instances.clone(),
            disabled: self.disabled.clone(),
            owned: self.instances.iter().any(|i| i.config.spec.owner.is_some()),
            cursor: self.cursor.clone(),
        }));
    }
}
