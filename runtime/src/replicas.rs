//! Replica membership: every runtime process heartbeats on
//! `<prefix>.replicas.heartbeat` (core NATS) and counts the processes it heard from
//! recently, so that an account's `rpm`, `burst` and `max_concurrency` hold for the
//! whole cluster, not per process: each process takes 1/n. When a replica joins or
//! dies, shares are recomputed within a few seconds.
//!
//! Breakers too: a replica whose breaker opens announces it on
//! `<prefix>.breaker.opened`, and the others route around that instance until then.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_tasks::Tasks;
use tokio::sync::watch;

use crate::{bus::Bus, engine::Engine};

/// How often a process announces itself.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is gone.
pub const EXPIRY: Duration = Duration::from_secs(3);

/// The number of live replicas as this process sees it.
#[derive(Debug, Clone)]
pub struct Membership(Arc<AtomicU32>);

impl Membership {
    /// Live replicas, this one included.
    pub fn replicas(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Starts heartbeating and counting; gives the engine its share on every change. The
/// heartbeat and breaker-notice tasks belong to `tasks`.
pub async fn start(
    bus: Bus,
    engine: Engine,
    mut shutdown: watch::Receiver<bool>,
    tasks: &Tasks,
) -> Membership {
    let membership = Membership(Arc::new(AtomicU32::new(1)));
    let me = format!("{:016x}", rand::random::<u64>());
    let subject = bus.subjects().replica_heartbeat();
    let mut beats = match bus.subscribe_core(&subject).await {
        Ok(beats) => beats,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hear other replicas; limits apply per process");
            return membership;
        }
    };
    announce_breakers(&bus, &engine, &me, tasks).await;
    let counter = membership.clone();
    let beat_tasks = tasks.clone();
    tasks.spawn("replica-membership", async move {
        let mut seen: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                stopped = shutdown.wait_for(|s| *s) => {
                    drop(stopped);
                    break;
                }
                _ = ticker.tick() => {
                    let bus = bus.clone();
                    let (subject, me) = (subject.clone(), me.clone());
                    // Sent from its own task: the select's output must not live across an await.
                    beat_tasks.spawn("replica-heartbeat", async move {
                        if let Err(e) = bus.publish_core(&subject, Bytes::from(me)).await {
                            tracing::debug!(error = %e, "heartbeat not sent");
                        }
                    });
                }
                beat = beats.next() => match beat {
                    Some(id) => {
                        seen.insert(String::from_utf8_lossy(&id).into_owned(), tokio::time::Instant::now());
                    }
                    None => break,
                },
            }
            let now = tokio::time::Instant::now();
            seen.retain(|_, at| now.duration_since(*at) < EXPIRY);
            seen.entry(me.clone()).or_insert(now);
            let live = u32::try_from(seen.len()).unwrap_or(u32::MAX).max(1);
            if counter.0.swap(live, Ordering::Relaxed) != live {
                engine.set_replicas(live);
            }
        }
    });
    membership
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BreakerNotice {
    replica: String,
    #[serde(flatten)]
    opened: crate::actors::BreakerOpened,
}

/// Publishes this process's breaker openings and applies the other replicas'.
async fn announce_breakers(bus: &Bus, engine: &Engine, me: &str, tasks: &Tasks) {
    let subject = bus.subjects().breaker_opened();
    {
        let mut notices = engine.breaker_notices();
        let (bus, subject, me) = (bus.clone(), subject.clone(), me.to_owned());
        tasks.spawn("breaker-announcer", async move {
            loop {
                let opened = match notices.recv().await {
                    Ok(opened) => opened,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "breaker openings not announced: the announcer fell behind"
                        );
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let notice = BreakerNotice {
                    replica: me.clone(),
                    opened,
                };
                if let Ok(body) = serde_json::to_vec(&notice)
                    && let Err(e) = bus.publish_core(&subject, Bytes::from(body)).await
                {
                    tracing::warn!(error = %e, "breaker opening not announced");
                }
            }
        });
    }
    match bus.subscribe_core(&subject).await {
        Ok(mut heard) => {
            let (engine, me) = (engine.clone(), me.to_owned());
            tasks.spawn("breaker-listener", async move {
                while let Some(body) = heard.next().await {
                    match serde_json::from_slice::<BreakerNotice>(&body) {
                        Ok(notice) if notice.replica != me => {
                            tracing::info!(config_id = %notice.opened.config_id, "another replica opened this breaker; routing around it");
                            engine.mark_breaker_open(&notice.opened);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable breaker notice"),
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot hear other replicas' breakers"),
    }
}
