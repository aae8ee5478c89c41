//! `intake`: pulls commands from the bus and hands each to the pipeline, up to a
//! concurrency limit, until shutdown; then hands back what was pulled but not started.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::{Semaphore, watch};

use super::Pipeline;
use crate::bus::BusError;

/// Whether this process can take traffic (for `/readyz`): the command consumer is
/// live and the database answers the pipeline's writes.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Flags>);

#[derive(Debug, Default)]
struct Flags {
    live: AtomicBool,
    store_down: AtomicBool,
}

impl Readiness {
    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.0.live.load(Ordering::Relaxed) && !self.0.store_down.load(Ordering::Relaxed)
    }

    /// Why not ready, if it is not.
    pub fn reason(&self) -> Option<&'static str> {
        if !self.0.live.load(Ordering::Relaxed) {
            Some("starting: the command consumer is not live")
        } else if self.0.store_down.load(Ordering::Relaxed) {
            Some("the database is unavailable; commands wait for it")
        } else {
            None
        }
    }

    fn set(&self, ready: bool) {
        self.0.live.store(ready, Ordering::Relaxed);
    }

    /// The pipeline's last write failed (true) or succeeded (false).
    pub(super) fn set_store_down(&self, down: bool) {
        if self.0.store_down.swap(down, Ordering::Relaxed) != down {
            if down {
                tracing::error!("the database fails the pipeline's writes; /readyz answers 503");
            } else {
                tracing::info!("the database answers again; /readyz is ready");
            }
        }
    }
}

/// Pulls commands and handles up to `concurrency` at once until `shutdown` turns true;
/// then stops pulling, naks what was pulled but not started, and waits for running
/// commands to finish.
///
/// # Errors
/// [`BusError`] when the consumer cannot be created.
pub async fn run_intake(
    handler: Pipeline,
    concurrency: usize,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut deliveries = handler.bus.commands().await?;
    readiness.set(true);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            delivery = deliveries.next() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let handler = handler.clone();
        running.spawn(async move {
            handler.handle(delivery).await;
            drop(permit);
        });
        while let Some(joined) = running.try_join_next() {
            note_panic(joined);
        }
    }
    readiness.set(false);
    // Pulled but not started: hand back for redelivery. Only what is already buffered
    // (a short window), and with a delay, so the handed-back commands cannot come
    // straight back to this stopping consumer.
    let window = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(delivery)) = tokio::time::timeout_at(window, deliveries.next()).await {
        delivery.nak(Some(Duration::from_secs(1))).await;
    }
    while let Some(joined) = running.join_next().await {
        note_panic(joined);
    }
    Ok(())
}

/// A command's task that panicked is logged and counted (its delivery is redelivered
/// after the ack wait, since nothing acked it).
fn note_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(error = %e, "a command's task panicked; it will be redelivered");
        metrics::counter!("switchyard_task_panics_total", "task" => "command").increment(1);
    }
}
