//! `intake`: pulls commands from the bus and hands each to the pipeline, up to a
//! concurrency limit, tenants in turn and each within its limits, until shutdown;
//! then hands back what was pulled but not started.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::watch;

use super::{
    Pipeline,
    blocked::{Blocks, Waiting},
    fair::{Banded, Turn, band},
};
use crate::bus::{BusError, Delivery};

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

/// A delivery pulled but not started.
struct Held {
    delivery: Delivery,
    user: Option<String>,
    since: tokio::time::Instant,
}

impl Waiting for Held {
    fn since(&self) -> tokio::time::Instant {
        self.since
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// Who a command is from and how urgent it is, read ahead of its full parse to queue
/// it by priority and tenant.
#[derive(serde::Deserialize)]
struct Who<'a> {
    #[serde(borrow)]
    tenant: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<std::borrow::Cow<'a, str>>,
    /// Any JSON: one that is no integer is refused by validation later.
    #[serde(default, deserialize_with = "lenient_priority")]
    priority: Option<i64>,
}

fn lenient_priority<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize as _;
    Ok(serde_json::Value::deserialize(d)?.as_i64())
}

/// The longest intake waits for a tenant's limits to be read.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pulls commands and handles up to `concurrency` at once until `shutdown` turns true;
/// then stops pulling, naks what was pulled but not started, and waits for running
/// commands to finish.
///
/// Pulled commands wait in a queue per priority ([`Banded`]; at most the pipeline's
/// intake window of them, in count and bytes) for a slot and for their tenant's limits
/// ([`crate::limits`]): the most urgent priority starts first, so an urgent command
/// pulled behind a backlog does not wait for it, and within a priority tenants take
/// turns, so one tenant's backlog does not starve another's commands within the
/// window. A command over its tenant's limits waits (at most the pipeline's
/// `max_wait`) or fails at once with `rate_limited`, as `[tenants] over_limit` says; a
/// tenant over its limits that already has its share of the window waiting has its
/// further commands fail at once. Nothing is handed back to the bus to come round
/// again (that churned the bus under a one-tenant flood).
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
    let concurrency = concurrency.max(1);
    let mut intake = Intake {
        handler,
        concurrency,
        queue: Banded::default(),
        queued_bytes: 0,
        running: tokio::task::JoinSet::new(),
        blocked: Blocks::default(),
    };
    let mut keep_alive = tokio::time::interval(intake.handler.progress_every);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keep_alive.tick().await;
    let stopping = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        intake.dispatch();
        let wake = intake.next_wake();
        tokio::select! {
            biased;
            () = &mut stopping => break,
            // Ahead of the work, so held commands are kept alive however busy it is.
            _ = keep_alive.tick() => intake.keep_alive().await,
            Some(joined) = intake.running.join_next(), if !intake.running.is_empty() => {
                note_panic(joined);
                intake.slot_freed();
            }
            delivery = deliveries.next(), if intake.has_room() => match delivery {
                Some(delivery) => intake.arrive(delivery).await,
                None => break,
            },
            () = sleep_until(wake), if wake.is_some() => {}
        }
    }
    readiness.set(false);
    // Pulled but not started: hand back for redelivery, with a delay, so the
    // handed-back commands cannot come straight back to this stopping consumer. Then
    // what is already buffered (a short window).
    for held in intake.queue.drain_all() {
        held.delivery.nak(Some(Duration::from_secs(1))).await;
    }
    let window = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(delivery)) = tokio::time::timeout_at(window, deliveries.next()).await {
        delivery.nak(Some(Duration::from_secs(1))).await;
    }
    while let Some(joined) = intake.running.join_next().await {
        note_panic(joined);
    }
    Ok(())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Intake's state between pulls.
struct Intake {
    handler: Pipeline,
    concurrency: usize,
    queue: Banded<Held>,
    /// The payload bytes of what `queue` holds.
    queued_bytes: usize,
    running: tokio::task::JoinSet<()>,
    /// Tenants and users over a limit (`blocked.rs`).
    blocked: Blocks,
}

impl Intake {
    fn saturated(&self) -> bool {
        self.running.len() >= self.concurrency
    }

    /// Whether another delivery may be pulled: the queue is within the window.
    fn has_room(&self) -> bool {
        self.queue.len() < self.handler.intake_window.count
            && self.queued_bytes < self.handler.intake_window.bytes
    }

    /// Takes `held` out of the byte count.
    fn unqueued(&mut self, held: &Held) {
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(held.delivery.payload.len());
    }

    /// A command ended: tenants refused for requests at once may have a slot again.
    fn slot_freed(&mut self) {
        self.blocked.slot_freed(tokio::time::Instant::now());
    }

    /// A delivery just pulled: queued by priority and tenant, unless its tenant is over
    /// its limits and already has its share of the window waiting.
    async fn arrive(&mut self, delivery: Delivery) {
        let (tenant, user, priority) = match serde_json::from_slice::<Who<'_>>(&delivery.payload) {
            Ok(Who {
                tenant: Some(tenant),
                user,
                priority,
            }) => (
                tenant.into_owned(),
                user.map(std::borrow::Cow::into_owned),
                priority,
            ),
            // Not a command: the pipeline sends it to the DLQ or fails it.
            _ => (String::new(), None, None),
        };
        if !tenant.is_empty() {
            // Bounded: a slow database must not stop intake. A tenant whose limits could
            // not be read is not limited until they can be (the pipeline's own handling
            // of a database that is down — nak, readiness — follows when it runs).
            match tokio::time::timeout(PREPARE_TIMEOUT, self.handler.limits.prepare(&tenant)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot read the tenant's limits"),
                Err(_) => tracing::warn!("the tenant's limits were not read in time"),
            }
        }
        let band = band(priority);
        let share = (self.handler.intake_window.count / (self.queue.tenants() + 1)).max(1);
        let over = self.blocked.is_blocked(&tenant) && self.queue.queued(&tenant) >= share;
        if tenant.is_empty() || !over {
            self.hold(band, &tenant, delivery, user);
            return;
        }
        // Over its limits with its share of the window already waiting: the tenant keeps
        // its most urgent commands (one more urgent than its least urgent queued command
        // takes that one's place), and the other fails now with `rate_limited` rather
        // than crowd the window or go round the bus again.
        let refused = match self.queue.pop_least_urgent(&tenant, band) {
            Some(least) => {
                self.unqueued(&least);
                self.hold(band, &tenant, delivery, user);
                least.delivery
            }
            None => delivery,
        };
        let message =
            format!("tenant '{tenant}' is over its limits with {share} commands already waiting");
        self.start_limited(refused, message);
    }

    /// Queues a delivery of `tenant` in `band`.
    fn hold(&mut self, band: usize, tenant: &str, delivery: Delivery, user: Option<String>) {
        self.queued_bytes += delivery.payload.len();
        self.queue.push(
            band,
            tenant,
            Held {
                delivery,
                user,
                since: tokio::time::Instant::now(),
            },
        );
    }

    /// Starts queued commands while slots are free, tenants in turn; fails those of
    /// tenants over their limits that waited too long, or at once if the setting says
    /// so. (A command waiting only for a free slot waits as long as it takes, as it
    /// would on the bus.)
    fn dispatch(&mut self) {
        let now = tokio::time::Instant::now();
        let max_wait = self.handler.max_wait;
        // Only the queues of tenants and users over a limit are looked at (not the
        // whole queue, which may hold thousands).
        let expired = self.blocked.expired(&mut self.queue, now, max_wait);
        for held in expired {
            self.unqueued(&held);
            let message = format!("waited {} ms for its tenant's turn", max_wait.as_millis());
            self.start_limited(held.delivery, message);
        }
        let fail_over_limit = self.handler.over_limit == crate::settings::OverLimit::Fail;
        while !self.saturated() && !self.queue.is_empty() {
            let limits = &self.handler.limits;
            let blocked = &mut self.blocked;
            let mut permit = None;
            let mut refused = None;
            let taken = self.queue.take(|tenant, held| {
                if tenant.is_empty() {
                    return Turn::Take;
                }
                let user = held.user.as_deref();
                // Known to be over a limit: passed over without asking (to fail, it is
                // asked again for the message).
                if !fail_over_limit {
                    if blocked.tenant_held(tenant, now) {
                        return Turn::Skip;
                    }
                    if blocked.user_held(tenant, user, now) {
                        return Turn::Next;
                    }
                }
                match limits.try_take_now(tenant, user) {
                    Ok(p) => {
                        permit = p;
                        blocked.started(tenant, user);
                        Turn::Take
                    }
                    Err(limited) => {
                        blocked.refused(tenant, user, &limited, now);
                        if fail_over_limit {
                            refused = Some(limited.message);
                            Turn::Take
                        } else if limited.user {
                            Turn::Next
                        } else {
                            Turn::Skip
                        }
                    }
                }
            });
            let Some(held) = taken else { break };
            self.unqueued(&held);
            match refused {
                Some(message) => self.start_limited(held.delivery, message),
                None => {
                    let handler = self.handler.clone();
                    self.running.spawn(async move {
                        handler.handle(held.delivery).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    /// Fails a delivery with `rate_limited` (in the background, like any command).
    fn start_limited(&mut self, delivery: Delivery, message: String) {
        metrics::counter!("switchyard_commands_rate_limited_total").increment(1);
        let handler = self.handler.clone();
        self.running.spawn(async move {
            handler.handle_limited(delivery, message).await;
        });
    }

    /// When to look at the queue again without a new delivery or a finished command:
    /// the first refusal's end, or the first wait's end.
    fn next_wake(&mut self) -> Option<tokio::time::Instant> {
        if self.queue.is_empty() {
            return None;
        }
        self.blocked.next_wake(
            &self.queue,
            tokio::time::Instant::now(),
            self.handler.max_wait,
        )
    }

    /// Tells the bus that queued deliveries are still being worked on.
    async fn keep_alive(&mut self) {
        for held in self.queue.iter_mut() {
            held.delivery.progress().await;
        }
    }
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
