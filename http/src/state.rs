//! What the handlers share: [`HttpState`] and [`AdminState`] are what the serving
//! process hands to [`crate::router`]; the router splits the admin state into the
//! [`Authenticator`] (the only holder of the admin token), the admin handlers' state
//! ([`AdminApi`]) and the OpenAI-compatible handlers' state ([`OpenAiState`]). Each
//! holds the runtime only as its facade, a [`Gateway`].

use switchyard_runtime::facade::{Gateway, Readiness, Secret};

use crate::caller::Authenticator;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The runtime (store, engine, pipeline, bus, reloader, quotas, artifacts).
    pub gateway: Gateway,
    /// Whether the command consumer is live.
    pub readiness: Readiness,
    /// The admin API (with jobs and the OpenAI-compatible API), when served.
    pub admin: Option<AdminState>,
    /// Renders `/metrics` (Prometheus text), when a recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Clients reach the service over https (`http.public_url`): send HSTS.
    pub https: bool,
}

/// What the admin API needs besides the gateway.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The bearer token.
    pub token: Secret,
}

/// What the admin and jobs handlers share: the gateway, without the token.
#[derive(Debug, Clone)]
pub(crate) struct AdminApi {
    /// The runtime.
    pub(crate) gateway: Gateway,
    /// The authenticator's cache of tenant keys (a revocation here clears it).
    pub(crate) key_cache: crate::key_cache::KeyCache,
}

/// What the OpenAI-compatible handlers share.
#[derive(Debug, Clone)]
pub(crate) struct OpenAiState {
    /// The runtime: its routing table picks the instance a `model` names and lists the
    /// models; calls are published and followed through it; it holds the images of
    /// `response_format: b64_json` and the uploads of an edit.
    pub(crate) gateway: Gateway,
}

impl AdminState {
    /// Splits this state: the authenticator takes the token (and the tenant keys), the
    /// handlers take the gateway.
    pub(crate) fn split(self, gateway: Gateway) -> (Authenticator, AdminApi, OpenAiState) {
        let authenticator = Authenticator::new(self.token, gateway.tenant_keys());
        let compatible = OpenAiState {
            gateway: gateway.clone(),
        };
        let key_cache = authenticator.key_cache();
        (authenticator, AdminApi { gateway, key_cache }, compatible)
    }
}
