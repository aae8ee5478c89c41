//! Candidate selection: which live instances may serve a request, in which order, and
//! why the others were left out. Pure and allocation-light, run in each request's own
//! task against a snapshot of the routing table.

mod accounts;
mod chain;
mod plan;
mod rng;

pub use accounts::{OwnAccounts, Ownership, ownership};
pub use chain::{model_chain, plan_chain, plan_route};
pub use plan::{MAX_SKIPPED, NoProvider, Plan, RouteRequest, RoutingView, estimated_cost, plan};
pub use rng::SplitMix64;
