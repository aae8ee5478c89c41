//! The actor system: a supervisor owns one provider actor per live config and
//! publishes the routing table; each provider actor owns its instance's rate limiter,
//! concurrency cap, circuit breaker and cool-down.
//!
//! Why no router mailbox: every request would then pass through one actor. Instead the
//! supervisor (the table's single writer) publishes an immutable [`RoutingTable`]
//! snapshot through an `ArcSwap`, and each request's own task plans its route against
//! it (`switchyard_core::routing::plan`) and talks to provider actors directly. The
//! provider actors publish their live state (breaker, cool-down, in-flight, latency)
//! through atomics that only they write. See `docs/benchmarks.md` for the numbers.

mod instance_state;
mod provider;
mod supervisor;
mod table;

pub use instance_state::InstanceState;
pub use provider::{
    Admission, BreakerOpened, CallRequest, ProviderActor, ProviderArgs, ProviderMsg,
};
pub use supervisor::{
    ApplyReport, RestartPolicy, StartFailure, Supervisor, SupervisorArgs, SupervisorMsg,
};
pub use table::{Instance, InstanceStatus, RoutingTable};
