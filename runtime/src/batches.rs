//! Batch jobs (#18 §9): many commands posted at once (`POST /v1/batches`), run at
//! background priority under a concurrency cap of their own, so interactive traffic
//! goes first.
//!
//! **Taking a batch in.** Its commands are validated all together (one bad command
//! refuses the batch, naming it), then the batch row is stored (`submitting`), then
//! each command becomes a task row of the batch with its `accepted` event, exactly as
//! a job, except that it waits in its row instead of going on the bus. Last the batch
//! is `open`. A `POST` that dies half-way leaves it `submitting`; posting it again
//! with the same idempotency key finishes it.
//!
//! **Dispatching.** One dispatcher runs for the whole cluster (the `batches` lease in
//! the database). Every `poll_ms`, or at once when this process took a batch in, it
//! counts the batch tasks on the bus or running anywhere, and fills the room up to
//! `[batches] concurrency` from the open batches in turn, oldest first: each task it
//! takes is marked `dispatched` and its command published (with `priority` 10), where
//! intake runs it like any command. A batch whose every task was dispatched is
//! `closed`. A task marked dispatched whose command never reached the bus (a crash
//! between the two) is queued again after [`REDISPATCH_AFTER`]; the bus's duplicate
//! window and the task's claim keep a second copy from running it twice.
//!
//! **Cancelling.** `DELETE` marks the waiting tasks `cancelled` in one conditional
//! update (a task is dispatched or cancelled, never both), then ends each with its one
//! `failed` event. What was dispatched runs to its end.

use std::{sync::Arc, time::Duration};

use switchyard_core::{Command, RequestId, Tenant};
use tokio::sync::{Notify, watch};

use crate::{
    pipeline::{BatchStepError, EnqueueError, Pipeline},
    settings::BatchSettings,
    store::{
        Batch, BatchCounts, BatchInsert, BatchItem, BatchState, QueryError, Store, TaskInsert,
        secrets::random_alphanumeric,
    },
};

/// The lease's name.
const LEASE: &str = "batches";
/// How long a taken lease lasts without renewal (renewed at each turn).
const LEASE_FOR: Duration = Duration::from_secs(30);
/// A task dispatched this long ago and still not started is queued again.
pub const REDISPATCH_AFTER: Duration = Duration::from_secs(300);
/// How often the dispatcher looks for such tasks and for cancelled ones not ended.
const RECOVER_EVERY: Duration = Duration::from_secs(60);
/// The priority batch commands run at (PROTOCOL.md §2: 10 = background).
pub const BATCH_PRIORITY: i64 = 10;

/// A command of a posted batch.
#[derive(Debug, Clone)]
pub struct BatchCommand {
    /// The validated command.
    pub command: Command,
    /// Whether its `request_id` is to be made from the batch id and its index
    /// (`{batch}-{index}`): the client gave none.
    pub generated_id: bool,
}

/// Why a batch was not taken in.
#[derive(Debug, thiserror::Error)]
pub enum SubmitBatchError {
    /// No command.
    #[error("a batch needs at least one command")]
    Empty,
    /// More commands than `[batches] max_commands`.
    #[error("a batch holds at most {max} commands; this one has {got}")]
    TooMany {
        /// The limit.
        max: u32,
        /// The count posted.
        got: usize,
    },
    /// Two commands share a `request_id`.
    #[error(
        "commands[{index}]: request_id '{request_id}' is used by an earlier command of the batch"
    )]
    DuplicateRequestId {
        /// The later command.
        index: usize,
        /// The id.
        request_id: String,
    },
    /// A command is for another tenant than the batch.
    #[error("commands[{index}]: every command of a batch is for its tenant '{tenant}'")]
    OtherTenant {
        /// The command.
        index: usize,
        /// The batch's tenant.
        tenant: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] QueryError),
    /// Storing or accepting the tasks failed: post it again (with the same
    /// idempotency key) to finish it.
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

/// Why a batch could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelBatchError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] QueryError),
    /// Ending a cancelled task failed: the dispatcher ends the rest later.
    #[error(transparent)]
    Step(#[from] BatchStepError),
}

/// What taking a batch in did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The batch as stored.
    pub batch: Batch,
    /// Whether it is new (false: the tenant's idempotency key named an earlier one).
    pub created: bool,
}

/// Batches of one process: taking them in, reading them, cancelling them, and its
/// part in the cluster's dispatcher.
#[derive(Debug, Clone)]
pub struct Batches {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    pipeline: Pipeline,
    settings: BatchSettings,
    holder: String,
    /// Rung when this process took a batch in.
    wake: Notify,
}

impl Batches {
    /// Batches over `store`, run through `pipeline`.
    pub fn new(store: Store, pipeline: Pipeline, settings: BatchSettings) -> Self {
        let holder = crate::store::lease_holder();
        Self {
            inner: Arc::new(Inner {
                store,
                pipeline,
                settings,
                holder,
                wake: Notify::new(),
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &BatchSettings {
        &self.inner.settings
    }

    /// Takes a batch of `tenant`'s commands in (see the module's notes). With an
    /// `idempotency_key` the tenant used before, that batch is answered (and finished,
    /// if its `POST` died half-way).
    ///
    /// # Errors
    /// [`SubmitBatchError`].
    pub async fn submit(
        &self,
        tenant: &Tenant,
        idempotency_key: Option<&str>,
        commands: Vec<BatchCommand>,
    ) -> Result<Submitted, SubmitBatchError> {
        let max = self.inner.settings.max_commands;
        if commands.is_empty() {
            return Err(SubmitBatchError::Empty);
        }
        if commands.len() > max as usize {
            return Err(SubmitBatchError::TooMany {
                max,
                got: commands.len(),
            });
        }
        if let Some(index) = commands.iter().position(|c| &c.command.tenant != tenant) {
            return Err(SubmitBatchError::OtherTenant {
                index,
                tenant: tenant.to_string(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (index, c) in commands.iter().enumerate() {
            if !c.generated_id && !seen.insert(c.command.request_id.as_str()) {
                return Err(SubmitBatchError::DuplicateRequestId {
                    index,
                    request_id: c.command.request_id.to_string(),
                });
            }
        }
        let id = format!("b{}", random_alphanumeric(24));
        let store = &self.inner.store;
        let (batch, created) = match store
            .insert_batch(&id, tenant, idempotency_key, commands.len() as i64)
            .await?
        {
            BatchInsert::Created(batch) => (batch, true),
            BatchInsert::Existing(batch) if batch.state != BatchState::Submitting => {
                return Ok(Submitted {
                    batch,
                    created: false,
                });
            }
            BatchInsert::Existing(batch) => (batch, false),
        };
        let commands: Vec<Command> = commands
            .into_iter()
            .enumerate()
            .map(|(index, c)| {
                let mut command = c.command;
                if c.generated_id
                    && let Ok(id) = RequestId::new(format!("{}-{index}", batch.id))
                {
                    command.request_id = id;
                }
                command.priority = BATCH_PRIORITY;
                command
            })
            .collect();
        let inserts = self
            .inner
            .pipeline
            .accept_batch(&batch.id, &commands, !created)
            .await?;
        let foreign = inserts
            .iter()
            .filter(|i| matches!(i, TaskInsert::Existing(_)))
            .count();
        if created && foreign > 0 {
            tracing::info!(batch = %batch.id, tenant = %tenant, foreign,
                "commands of a batch named request ids the tenant had used: their earlier tasks stand");
        }
        if !store
            .set_batch_state(&batch.id, &[BatchState::Submitting], BatchState::Open)
            .await?
        {
            // Cancelled while it was being stored: what it stored since waits for
            // nothing, so it ends now.
            self.cancel_waiting(&batch.id).await.ok();
        }
        self.inner.wake.notify_one();
        let batch = store.get_batch(&batch.id).await?.unwrap_or(batch);
        Ok(Submitted { batch, created })
    }

    /// The batch with this id.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn get(&self, id: &str) -> Result<Option<Batch>, QueryError> {
        self.inner.store.get_batch(id).await
    }

    /// How many of its tasks are where.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn counts(&self, id: &str) -> Result<BatchCounts, QueryError> {
        self.inner.store.batch_counts(id).await
    }

    /// Its tasks after index `after` (at most `limit`), in index order.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn items(
        &self,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<BatchItem>, QueryError> {
        self.inner.store.batch_items(id, after, limit).await
    }

    /// Cancels what of batch `id` has not been queued: each such task ends `failed`.
    /// A batch that ended already stays as it is. Answers how many it cancelled.
    ///
    /// # Errors
    /// [`CancelBatchError`].
    pub async fn cancel(&self, id: &str) -> Result<usize, CancelBatchError> {
        self.inner
            .store
            .set_batch_state(
                id,
                &[BatchState::Submitting, BatchState::Open],
                BatchState::Cancelled,
            )
            .await?;
        self.cancel_waiting(id).await
    }

    async fn cancel_waiting(&self, id: &str) -> Result<usize, CancelBatchError> {
        let cancelled = self.inner.store.cancel_batch_tasks(id).await?;
        Ok(self.inner.pipeline.end_cancelled(cancelled).await?)
    }

    /// Runs this process's part of the dispatcher until `shutdown`.
    pub fn start(self, tasks: &switchyard_tasks::Tasks, mut shutdown: watch::Receiver<bool>) {
        tasks.spawn("batch-dispatcher", async move {
            let mut every =
                tokio::time::interval(Duration::from_millis(self.inner.settings.poll_ms));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut turn = Turn::default();
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = self.inner.wake.notified() => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                if let Err(error) = self.turn(&mut turn).await {
                    tracing::warn!(%error, "a batch dispatch turn failed; the next one goes on");
                    metrics::counter!("switchyard_batch_dispatch_failures_total").increment(1);
                }
            }
            if turn.holding
                && let Err(error) = self
                    .inner
                    .store
                    .release_lease(LEASE, &self.inner.holder)
                    .await
            {
                tracing::debug!(%error, "cannot give the batch lease back; it runs out");
            }
        });
    }

    /// One turn of the dispatcher, if this process holds (or takes) the lease.
    async fn turn(&self, turn: &mut Turn) -> Result<(), CancelBatchError> {
        let store = &self.inner.store;
        let now = chrono::Utc::now().timestamp_millis();
        let until = now + LEASE_FOR.as_millis() as i64;
        turn.holding = if turn.holding {
            store.renew_lease(LEASE, &self.inner.holder, until).await?
        } else {
            store
                .take_lease(LEASE, &self.inner.holder, now, until, now)
                .await?
        };
        if !turn.holding {
            turn.recovered_ms = 0;
            return Ok(());
        }
        if now - turn.recovered_ms >= RECOVER_EVERY.as_millis() as i64 {
            turn.recovered_ms = now;
            self.recover(now).await?;
        }
        let in_flight = store.batch_tasks_in_flight().await?;
        let mut room = i64::from(self.inner.settings.concurrency) - in_flight;
        if room <= 0 {
            return Ok(());
        }
        let open = store.open_batches(room).await?;
        for (left, batch) in (1..=open.len()).rev().zip(&open) {
            if room <= 0 {
                break;
            }
            // An even share of what is left for each batch still to come.
            let share = (room + left as i64 - 1) / left as i64;
            let taken = store.dispatch_batch_tasks(batch, share, now).await?;
            // Closed as soon as its last task is taken, not a turn later.
            if (taken.len() as i64) < share || !store.batch_has_waiting(batch).await? {
                store
                    .set_batch_state(batch, &[BatchState::Open], BatchState::Closed)
                    .await?;
            }
            if taken.is_empty() {
                continue;
            }
            room -= taken.len() as i64;
            metrics::counter!("switchyard_batch_tasks_dispatched_total")
                .increment(taken.len() as u64);
            if let Err(error) = self.inner.pipeline.queue_batch_tasks(taken).await {
                // Dispatched but maybe not on the bus: queued again after
                // REDISPATCH_AFTER.
                tracing::warn!(%error, batch = %batch, "batch tasks not queued; they are queued again later");
            }
        }
        Ok(())
    }

    /// Queues again what was dispatched long ago and never started, and ends what
    /// was cancelled and never ended.
    async fn recover(&self, now: i64) -> Result<(), CancelBatchError> {
        let store = &self.inner.store;
        let stale = store
            .redispatch_stale_batch_tasks(now - REDISPATCH_AFTER.as_millis() as i64, now, 500)
            .await?;
        if !stale.is_empty() {
            tracing::info!(
                tasks = stale.len(),
                "queueing batch tasks again that never started"
            );
            if let Err(error) = self.inner.pipeline.queue_batch_tasks(stale).await {
                tracing::warn!(%error, "batch tasks not queued again; the next recovery tries");
            }
        }
        let unfailed = store.cancelled_batch_tasks_unfailed().await?;
        if !unfailed.is_empty() {
            self.inner.pipeline.end_cancelled(unfailed).await?;
        }
        Ok(())
    }
}

/// The dispatcher's memory between turns.
#[derive(Debug, Default)]
struct Turn {
    /// Whether this process held the lease after the last turn.
    holding: bool,
    /// When it last recovered (Unix ms; 0: on taking the lease).
    recovered_ms: i64,
}
