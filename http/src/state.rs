//! What the handlers share: [`HttpState`] and [`AdminState`] are what the serving
//! process hands to [`crate::router`]; the router splits the admin state into the
//! [`Authenticator`] (the only holder of the admin token), the admin handlers' state
//! ([`AdminApi`]) and the OpenAI-compatible handlers' state ([`OpenAiState`]).

use switchyard_runtime::{
    artifacts::ArtifactStore,
    bus::Bus,
    engine::Engine,
    pipeline::{Pipeline, Readiness},
    quota::Quotas,
    reloader::ReloadHandle,
    replicas::Membership,
    settings::Secret,
    store::Store,
};

use crate::caller::Authenticator;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Where images live.
    pub artifacts: ArtifactStore,
    /// Whether the command consumer is live.
    pub readiness: Readiness,
    /// The admin API, when served.
    pub admin: Option<AdminState>,
    /// Renders `/metrics` (Prometheus text), when a recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// What the admin API needs.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The repository.
    pub store: Store,
    /// The engine (live status).
    pub engine: Engine,
    /// Reloads this process.
    pub reload: ReloadHandle,
    /// Announces changes to other processes.
    pub bus: Bus,
    /// The bearer token.
    pub token: Secret,
    /// Replica membership (NATS deployments).
    pub membership: Option<Membership>,
    /// The pipeline's quota checker (told when quotas change here).
    pub quotas: Quotas,
    /// The request pipeline (jobs enter it here).
    pub pipeline: Pipeline,
}

/// What the admin and jobs handlers share: the admin state without the token.
#[derive(Debug, Clone)]
pub(crate) struct AdminApi {
    /// The repository.
    pub(crate) store: Store,
    /// The engine (live status, plugins).
    pub(crate) engine: Engine,
    /// Reloads this process.
    pub(crate) reload: ReloadHandle,
    /// Announces changes to other processes.
    pub(crate) bus: Bus,
    /// Replica membership (NATS deployments).
    pub(crate) membership: Option<Membership>,
    /// The pipeline's quota checker.
    pub(crate) quotas: Quotas,
    /// The request pipeline (jobs enter it here).
    pub(crate) pipeline: Pipeline,
}

/// What the OpenAI-compatible handlers share.
#[derive(Debug, Clone)]
pub(crate) struct OpenAiState {
    /// The engine: its table picks the instance a `model` names, and lists the models.
    pub(crate) engine: Engine,
    /// Where calls are published and their events followed.
    pub(crate) bus: Bus,
    /// For `response_format: b64_json` and the uploaded images of an edit.
    pub(crate) artifacts: ArtifactStore,
    /// Records who uploaded an edit's images (their owner).
    pub(crate) store: Store,
}

impl AdminState {
    /// Splits this state: the authenticator takes the token (and the store, for tenant
    /// keys), the handlers take the rest.
    pub(crate) fn split(self, artifacts: ArtifactStore) -> (Authenticator, AdminApi, OpenAiState) {
        let AdminState {
            store,
            engine,
            reload,
            bus,
            token,
            membership,
            quotas,
            pipeline,
        } = self;
        let compatible = OpenAiState {
            engine: engine.clone(),
            bus: bus.clone(),
            artifacts: artifacts.clone(),
            store: store.clone(),
        };
        let authenticator = Authenticator::new(token, store.clone());
        let admin = AdminApi {
            store,
            engine,
            reload,
            bus,
            membership,
            quotas,
            pipeline,
        };
        (authenticator, admin, compatible)
    }
}
