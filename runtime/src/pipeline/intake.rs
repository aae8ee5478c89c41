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

/// Whether the command consumer is live (for `/readyz`).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
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
