//! The actor system: a supervisor owns one provider actor per live config; a router
//! owns the routing table; each provider actor owns its instance's rate limiter,
//! concurrency cap, circuit breaker and cool-down.
//!
//! The router is the table's single writer. The supervisor tells it the live set after
//! every apply, crash and restart; provider actors tell it call latencies and breaker
//! openings; the replica listener tells it other replicas' openings. It publishes an
//! immutable [`RoutingTable`] snapshot through an `ArcSwap`, and each request's own
//! task plans its route against it (`switchyard_core::routing::plan`) and talks to
//! provider actors directly, so no request waits in the router's mailbox. What only
//! one instance's actor can know at once (breaker, cool-down, in-flight, queued) it
//! publishes through atomics that only it writes. See `docs/benchmarks.md`.

mod call;
mod instance_state;
mod observation;
mod provider;
mod router;
mod supervisor;
mod table;

pub use instance_state::InstanceState;
pub use observation::{BreakerOpened, Observation};
pub use provider::{Admission, CallRequest, ProviderActor, ProviderArgs, ProviderMsg};
pub use router::{Router, RouterArgs, RouterMsg, RouterState};
pub use supervisor::{
    ApplyReport, RestartPolicy, StartFailure, Supervisor, SupervisorArgs, SupervisorMsg,
};
pub use table::{DisabledConfig, Instance, InstanceStatus, RoutingTable};
