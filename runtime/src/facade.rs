//! The runtime as the HTTP front sees it, and the only part of the runtime that
//! `switchyard-http` names (an architecture test holds it to that).
//!
//! [`Gateway`] is one cheap-to-clone handle over what serving HTTP needs (the store,
//! the engine, the pipeline, the bus, the reloader, replica membership, quotas and
//! artifacts), with one method per thing a handler does. The types those methods take
//! and answer, and the errors they fail with, are re-exported here.
//!
//! One file per area, each adding its methods to [`Gateway`]:
//! - `providers`: provider configs, reloads, live status, test calls, the routing table;
//! - `jobs`: jobs into the pipeline, and calls published on the bus with their events;
//! - `tenants`: tenant keys ([`TenantKeys`]), usage and quotas;
//! - `plugins`: the WASM plugin registry;
//! - `artifacts`: stored images, their owners and signed links to them.

mod artifacts;
mod batches;
mod jobs;
mod limits;
mod plans;
mod plugins;
mod providers;
mod retention;
mod stats;
mod templates;
mod tenants;
mod webhooks;

use crate::{
    artifacts::ArtifactStore, bus::Bus, engine::Engine, pipeline::Pipeline, quota::Quotas,
    reloader::ReloadHandle, replicas::Membership, store::Store,
};

pub use crate::{
    actors::{Instance, InstanceStatus, RoutingTable},
    artifact_urls::SignatureError,
    artifacts::{ArtifactError, ArtifactMeta, describe as describe_image},
    batches::{BatchCommand, CancelBatchError, SubmitBatchError, Submitted},
    bus::{BusError, EventFilter, Events},
    limits::Limited,
    pipeline::{CallError, EnqueueError, Enqueued, Readiness},
    plugins::InstallError,
    reloader::{InvalidConfig, ReloadError, ReloadReport},
    secrets::random_alphanumeric,
    settings::Secret,
    store::{
        Batch, BatchCounts, BatchItem, BatchState, ConfigReadError, ConfigStats, ConfigWriteError,
        CountedQuota, DeliveryRecord, Feedback, GroupCommitError, Plan, PlanError, PluginInfo,
        PluginWriteError, PromptTemplate, ProviderFilter, ProviderRecord, QueryError, Quota,
        QuotaPeriod, ReportScope, RetentionPolicy, StatsBucket, StatsBucketSize, Task, TaskStatus,
        TenantKey, TenantLimits, UsageSummaryRow, Webhook,
    },
    templates::{TemplateError, valid_name as valid_template_name},
    usage_report::{Bucket, UsageReport as UsageBuckets},
    webhooks::{WebhookError, WebhookRequest},
};
pub use limits::LimitsView;
pub use plugins::PluginInstallError;
pub use providers::{ProviderCheck, ProviderStatus};
pub use retention::RetentionView;
pub use tenants::TenantKeys;

/// The runtime's parts a [`Gateway`] is made of (see [`Gateway::new`]).
#[derive(Debug, Clone)]
pub struct GatewayParts {
    /// The repository.
    pub store: Store,
    /// The engine (live status, routing table, plugin host).
    pub engine: Engine,
    /// The request pipeline (jobs enter it here).
    pub pipeline: Pipeline,
    /// Where calls are published and events followed; changes are announced on it.
    pub bus: Bus,
    /// Reloads this process.
    pub reload: ReloadHandle,
    /// Replica membership (NATS deployments).
    pub membership: Option<Membership>,
    /// The pipeline's quota checker (told when quotas change).
    pub quotas: Quotas,
    /// Where images live.
    pub artifacts: ArtifactStore,
    /// The retention policy of tenants without their own (`[retention]`).
    pub retention: crate::store::RetentionPolicy,
    /// Tenants' webhook endpoints.
    pub webhooks: crate::webhooks::Webhooks,
    /// Batch jobs.
    pub batches: crate::batches::Batches,
}

/// The runtime's HTTP-facing surface. Cheap to clone: one reference count (the HTTP
/// handlers take a clone per request). Its parts are private: the HTTP crate reaches
/// them only through the methods.
#[derive(Debug, Clone)]
pub struct Gateway {
    parts: std::sync::Arc<GatewayParts>,
}

impl Gateway {
    /// A gateway over these parts.
    pub fn new(parts: GatewayParts) -> Self {
        Self {
            parts: std::sync::Arc::new(parts),
        }
    }
}
