//! Webhooks (issue 17 §3): tenants register endpoints, and the events they asked for
//! (by default the terminal ones) are POSTed to them, signed in the Standard Webhooks
//! style, from a durable queue with retries.
//!
//! The path of an event: the bus → the [tap](tap) (on NATS a durable consumer shared
//! by the cluster) → one `webhook_deliveries` row per endpoint → the [sender](sender)
//! (claims due rows, POSTs, records; retries with a doubling wait) → the endpoint.
//! The same rows are the delivery log. Each attempt of an event carries the same
//! `webhook-id`, so a receiver drops a duplicate.

mod registry;
mod sender;
pub mod sign;
mod tap;

use std::sync::Arc;

use switchyard_core::EventType;
use tokio::sync::{Notify, watch};
use url::Url;

use crate::{
    bus::Bus,
    guard::Guard,
    settings::WebhookSettings,
    store::{DeliveryRecord, NewWebhook, QueryError, Store, Webhook},
};

pub use registry::Registry;

/// The event types an endpoint may ask for (`chunk`, one per streamed token, is not
/// among them).
pub const EVENT_TYPES: [EventType; 5] = [
    EventType::Accepted,
    EventType::Started,
    EventType::Progress,
    EventType::Completed,
    EventType::Failed,
];

/// The longest endpoint URL a tenant may register.
pub const MAX_URL_BYTES: usize = 2048;

/// What an endpoint gets when it names no events: the terminal ones.
pub const DEFAULT_EVENTS: [&str; 2] = ["completed", "failed"];

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A field is wrong (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// The tenant has no such endpoint.
    #[error("webhook {0} not found")]
    NotFound(i64),
    /// The tenant has as many endpoints as it may.
    #[error("a tenant may register at most {0} webhooks")]
    TooMany(u32),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] QueryError),
}

/// A registration: `{url, events?, secret?}`.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where events are POSTed (http or https; reached through the outbound guard).
    pub url: String,
    /// The event types to send (default: `completed` and `failed`).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// The signing secret, `whsec_` and base64 (default: one is made).
    #[serde(default)]
    pub secret: Option<String>,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("WebhookRequest")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Webhooks of this process: the API's operations and the background tasks.
#[derive(Debug, Clone)]
pub struct Webhooks {
    store: Store,
    registry: Registry,
    settings: WebhookSettings,
    guard: Guard,
}

impl Webhooks {
    /// Webhooks over `store`; URLs are checked and reached through `guard`.
    pub fn new(store: Store, settings: WebhookSettings, guard: Guard) -> Self {
        Self {
            registry: Registry::new(store.clone()),
            store,
            settings,
            guard,
        }
    }

    /// Starts the registry's refresh, the tap and the sender, owned by `tasks`, until
    /// `shutdown` (nothing if `[webhooks] enabled = false`).
    pub async fn start(
        &self,
        bus: Bus,
        tasks: &switchyard_tasks::Tasks,
        shutdown: watch::Receiver<bool>,
    ) {
        if !self.settings.enabled {
            return;
        }
        if let Err(error) = self.registry.refresh().await {
            tracing::warn!(%error, "cannot read webhooks yet; trying again in 2 s");
        }
        self.registry.follow(tasks);
        let wake = Arc::new(Notify::new());
        tasks.spawn(
            "webhook-tap",
            tap::run(
                bus,
                self.store.clone(),
                self.registry.clone(),
                wake.clone(),
                shutdown.clone(),
            ),
        );
        let sender = sender::Sender {
            store: self.store.clone(),
            registry: self.registry.clone(),
            settings: self.settings.clone(),
            guard: self.guard.clone(),
        };
        tasks.spawn("webhook-sender", sender.run(wake, shutdown));
    }

    /// Registers an endpoint of `tenant`; returns it and its secret (shown only now).
    ///
    /// # Errors
    /// [`WebhookError::Invalid`] naming the field, [`WebhookError::TooMany`], or the
    /// database's.
    pub async fn register(
        &self,
        tenant: &str,
        request: WebhookRequest,
    ) -> Result<(Webhook, String), WebhookError> {
        if request.url.len() > MAX_URL_BYTES {
            return Err(WebhookError::Invalid(format!(
                "url: at most {MAX_URL_BYTES} bytes"
            )));
        }
        let url =
            Url::parse(&request.url).map_err(|e| WebhookError::Invalid(format!("url: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookError::Invalid(
                "url: must not hold credentials (the signature authenticates)".to_owned(),
            ));
        }
        // One answer for every refusal: a tenant learns nothing of the internal
        // network (which names exist, which are private).
        self.guard.check_tenant_host(&url).await.map_err(|e| {
            tracing::info!(tenant, reason = %e, "webhook url refused");
            WebhookError::Invalid(
                "url: cannot be reached from here (not http(s), or an internal or \
                 unresolvable address)"
                    .to_owned(),
            )
        })?;
        let events = match request.events {
            None => DEFAULT_EVENTS.map(str::to_owned).to_vec(),
            Some(events) => checked_events(events)?,
        };
        let secret = match request.secret {
            Some(secret) => {
                sign::key_of(&secret).map_err(|e| WebhookError::Invalid(format!("secret: {e}")))?;
                secret
            }
            None => sign::generate(),
        };
        let max = self.settings.max_per_tenant;
        if self.store.webhooks(tenant).await?.len() >= max as usize {
            return Err(WebhookError::TooMany(max));
        }
        let webhook = self
            .store
            .create_webhook(&NewWebhook {
                tenant: tenant.to_owned(),
                url: url.to_string(),
                events,
                secret: secret.clone(),
            })
            .await?;
        // Two registrations at once may both pass the count: the later one goes.
        let ids: Vec<i64> = self
            .store
            .webhooks(tenant)
            .await?
            .iter()
            .map(|w| w.id)
            .collect();
        if ids.iter().position(|&id| id == webhook.id).unwrap_or(0) >= max as usize {
            self.store.delete_webhook(tenant, webhook.id).await?;
            return Err(WebhookError::TooMany(max));
        }
        self.refresh().await;
        Ok((webhook, secret))
    }

    /// `tenant`'s endpoints.
    ///
    /// # Errors
    /// The database's.
    pub async fn list(&self, tenant: &str) -> Result<Vec<Webhook>, WebhookError> {
        Ok(self.store.webhooks(tenant).await?)
    }

    /// `tenant`'s endpoint `id`.
    ///
    /// # Errors
    /// [`WebhookError::NotFound`] (another tenant's too), or the database's.
    pub async fn get(&self, tenant: &str, id: i64) -> Result<Webhook, WebhookError> {
        self.store
            .webhook(tenant, id)
            .await?
            .ok_or(WebhookError::NotFound(id))
    }

    /// Turns `tenant`'s endpoint `id` on or off (off: nothing more is queued for it,
    /// and what was queued is given up).
    ///
    /// # Errors
    /// [`WebhookError::NotFound`], or the database's.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        id: i64,
        enabled: bool,
    ) -> Result<Webhook, WebhookError> {
        if !self.store.set_webhook_enabled(tenant, id, enabled).await? {
            return Err(WebhookError::NotFound(id));
        }
        self.refresh().await;
        self.get(tenant, id).await
    }

    /// Removes `tenant`'s endpoint `id` with its delivery log.
    ///
    /// # Errors
    /// [`WebhookError::NotFound`], or the database's.
    pub async fn delete(&self, tenant: &str, id: i64) -> Result<(), WebhookError> {
        if !self.store.delete_webhook(tenant, id).await? {
            return Err(WebhookError::NotFound(id));
        }
        self.refresh().await;
        Ok(())
    }

    /// The delivery log of `tenant`'s endpoint `id`, newest first.
    ///
    /// # Errors
    /// [`WebhookError::NotFound`], or the database's.
    pub async fn deliveries(
        &self,
        tenant: &str,
        id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, WebhookError> {
        self.get(tenant, id).await?;
        Ok(self
            .store
            .deliveries(tenant, id, before, limit.clamp(1, 500))
            .await?)
    }

    async fn refresh(&self) {
        if let Err(error) = self.registry.refresh().await {
            tracing::warn!(%error, "cannot read webhooks; the change applies within 2 s");
        }
    }
}

/// The event types asked for, each known, without repeats.
fn checked_events(events: Vec<String>) -> Result<Vec<String>, WebhookError> {
    if events.is_empty() {
        return Err(WebhookError::Invalid(
            "events: name at least one (or leave it out for completed and failed)".to_owned(),
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for event in events {
        if !EVENT_TYPES.iter().any(|t| t.as_str() == event) {
            let known: Vec<&str> = EVENT_TYPES.iter().map(|t| t.as_str()).collect();
            return Err(WebhookError::Invalid(format!(
                "events: '{}' is not one of {}",
                event.chars().take(40).collect::<String>(),
                known.join(", ")
            )));
        }
        if !checked.contains(&event) {
            checked.push(event);
        }
    }
    Ok(checked)
}
