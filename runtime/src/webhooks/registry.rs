//! The enabled endpoints of every tenant, in memory: read again from the database
//! every [`REFRESH`] (so a change made through another replica applies within it)
//! and at once after a change made through this one. The tap asks it which events
//! to take; the sender asks it where and with which key.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::watch;
use url::Url;

use super::sign;
use crate::store::{QueryError, Store};

/// How often the endpoints are read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// One enabled endpoint.
#[derive(PartialEq, Eq)]
pub struct Hook {
    /// Its id.
    pub id: i64,
    /// Its tenant.
    pub tenant: String,
    /// Where events are POSTed.
    pub url: Url,
    /// The event types sent.
    pub events: Vec<String>,
    /// The signing key (the secret's bytes).
    pub key: Vec<u8>,
    /// When it was registered (earlier events are not sent to it).
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Hook")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("url", &self.url.as_str())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Every enabled endpoint, by tenant and by id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    by_tenant: HashMap<String, Vec<Arc<Hook>>>,
    by_id: HashMap<i64, Arc<Hook>>,
}

impl Snapshot {
    /// The endpoints of `tenant` that take events of `event_type`.
    pub fn hooks_for<'a>(
        &'a self,
        tenant: &str,
        event_type: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Hook>> + 'a {
        self.by_tenant
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(move |h| h.events.iter().any(|e| e == event_type))
    }

    /// Endpoint `id`, if it is enabled.
    pub fn hook(&self, id: i64) -> Option<&Arc<Hook>> {
        self.by_id.get(&id)
    }

    /// Whether no tenant has an enabled endpoint.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The registry (cheap to clone).
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
}

impl Registry {
    /// An empty registry over `store` (call [`Registry::refresh`]).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            snapshot: Arc::new(watch::Sender::new(Arc::default())),
        }
    }

    /// What is enabled now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Told of every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// Reads the endpoints again; tells subscribers if they changed.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn refresh(&self) -> Result<(), QueryError> {
        let mut next = Snapshot::default();
        for target in self.store.enabled_webhooks().await? {
            let webhook = target.webhook;
            // Both were checked when the endpoint was registered; a row edited by
            // hand into something unusable is skipped, loudly.
            let (Ok(url), Ok(key)) = (Url::parse(&webhook.url), sign::key_of(&target.secret))
            else {
                tracing::warn!(webhook = webhook.id, tenant = %webhook.tenant, "webhook skipped: its stored url or secret is unusable");
                continue;
            };
            let hook = Arc::new(Hook {
                id: webhook.id,
                tenant: webhook.tenant.clone(),
                url,
                events: webhook.events,
                key,
                created_at: webhook.created_at,
            });
            next.by_id.insert(hook.id, hook.clone());
            next.by_tenant.entry(webhook.tenant).or_default().push(hook);
        }
        self.snapshot.send_if_modified(|current| {
            if **current == next {
                false
            } else {
                *current = Arc::new(next);
                true
            }
        });
        Ok(())
    }

    /// Reads the endpoints again every [`REFRESH`] until `tasks` shut down.
    pub fn follow(&self, tasks: &switchyard_tasks::Tasks) {
        let registry = self.clone();
        tasks.spawn("webhook-registry", async move {
            let mut every = tokio::time::interval(REFRESH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(error) = registry.refresh().await {
                    tracing::warn!(%error, "cannot read webhooks; the last ones known apply");
                }
            }
        });
    }
}
