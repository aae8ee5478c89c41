//! `write_behind`: the record of a synchronous call (#15), written after its answer
//! went to the client.
//!
//! A synchronous call (see `call`) answers from the receiving process's engine with no
//! durable row first. What it leaves behind — the task row with its results and usage,
//! and the events that subscribers on the bus see (`accepted` with the row's id, the
//! lifecycle events, the terminal one) — is a [`Record`], queued here and written by
//! one worker, many records at a time, so the group-commit writer batches their rows.
//!
//! **Never lost silently.** The queue is bounded. A call takes its place in it
//! ([`WriteBehind::reserve`]) before it runs, so a full queue holds new calls back
//! (`switchyard_write_behind_full_total` counts each wait) instead of dropping a
//! record. A record whose write fails (the database is down) is retried with backoff
//! for up to [`RECORD_FOR`]; only then is it dropped, logged and counted
//! (`switchyard_write_behind_lost_total`). At shutdown the server waits for the queue
//! to empty ([`WriteBehind::drain`]). A process that dies loses the records still
//! queued: their clients had their answers, and the open connection was the call's
//! delivery guarantee (docs/protocol-extensions.md).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use switchyard_core::{Command, Event, EventBody, Lifecycle};
use tokio::sync::{Notify, mpsc};

use super::{HandleError, Pipeline, settle::Settled};
use crate::store::{NewTask, TaskInsert};

/// Records queued at most; a call waits for a place beyond that.
pub(super) const QUEUE: usize = 4096;
/// Records written at once (their rows share the group commit's batches).
const WRITING: usize = 256;
/// How long one record's write is retried while the database fails.
const RECORD_FOR: Duration = Duration::from_secs(600);
/// The longest wait between two tries.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What one synchronous call leaves to be written.
#[derive(Debug)]
pub(super) struct Record {
    /// The command as it ran.
    pub(super) command: Arc<Command>,
    /// When it came in (its `accepted` event's time).
    pub(super) accepted_at: DateTime<Utc>,
    /// Its lifecycle events from `seq` 2 on (1 is `accepted`, built here).
    pub(super) events: Vec<Event>,
    /// Its terminal event.
    pub(super) terminal: Event,
    /// The provider's raw answer, for the row.
    pub(super) raw_response: Option<serde_json::Value>,
}

/// The queue and its count of records not yet written. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct WriteBehind {
    queue: mpsc::Sender<Record>,
    unwritten: Arc<Unwritten>,
}

/// Records reserved or queued and not yet written (or given up).
#[derive(Debug, Default)]
struct Unwritten {
    count: AtomicUsize,
    empty: Notify,
}

impl Unwritten {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.empty.notify_waiters();
        }
    }
}

/// A call's place in the queue, taken before it runs.
pub(super) struct Place {
    /// `None` once the record is sent.
    permit: Option<mpsc::OwnedPermit<Record>>,
    unwritten: Arc<Unwritten>,
}

impl Place {
    /// Queues the call's record.
    pub(super) fn send(mut self, record: Record) {
        if let Some(permit) = self.permit.take() {
            drop(permit.send(record));
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // A call that ended without a record (it panicked) frees its place.
        if self.permit.is_some() {
            self.unwritten.done();
        }
    }
}

/// The write-behind queue is closed: the server is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the gateway is shutting down")]
pub struct ShuttingDown;

impl WriteBehind {
    /// The queue of `pipeline`, whose worker it starts in the pipeline's tasks (it
    /// runs until they shut down: drain the queue first).
    pub(super) fn start(pipeline: &Pipeline) -> Self {
        let (queue, records) = mpsc::channel(QUEUE);
        let unwritten = Arc::<Unwritten>::default();
        pipeline.tasks.spawn(
            "write-behind",
            pipeline.clone().write_records(records, unwritten.clone()),
        );
        Self { queue, unwritten }
    }

    /// Takes a place in the queue for one call, waiting while it is full.
    pub(super) async fn reserve(&self) -> Result<Place, ShuttingDown> {
        let permit = match self.queue.clone().try_reserve_owned() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(queue)) => {
                metrics::counter!("switchyard_write_behind_full_total").increment(1);
                queue.reserve_owned().await.map_err(|_| ShuttingDown)?
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ShuttingDown),
        };
        self.unwritten.count.fetch_add(1, Ordering::AcqRel);
        Ok(Place {
            permit: Some(permit),
            unwritten: self.unwritten.clone(),
        })
    }

    /// Waits until every record reserved or queued so far is written (or given up),
    /// at most `grace`. Returns whether the queue emptied in time.
    pub(super) async fn drain(&self, grace: Duration) -> bool {
        let empty = async {
            loop {
                let notified = self.unwritten.empty.notified();
                if self.unwritten.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(grace, empty).await.is_ok()
    }
}

impl Pipeline {
    /// The write-behind worker: writes queued records, [`WRITING`] at a time.
    async fn write_records(self, records: mpsc::Receiver<Record>, unwritten: Arc<Unwritten>) {
        let records = futures_util::stream::poll_fn({
            let mut records = records;
            move |cx| records.poll_recv(cx)
        });
        records
            .for_each_concurrent(WRITING, |record| {
                let pipeline = self.clone();
                let unwritten = unwritten.clone();
                async move {
                    pipeline.write_record(&record).await;
                    unwritten.done();
                }
            })
            .await;
    }

    /// Writes one record, retrying while the database fails (up to [`RECORD_FOR`]).
    async fn write_record(&self, record: &Record) {
        let until = tokio::time::Instant::now() + RECORD_FOR;
        let mut wait = Duration::from_millis(100);
        loop {
            match self.try_write_record(record).await {
                Ok(()) => {
                    metrics::counter!("switchyard_write_behind_written_total").increment(1);
                    return;
                }
                Err(e) if e.refusal().is_some() || tokio::time::Instant::now() >= until => {
                    tracing::error!(error = %e, request_id = %record.command.request_id,
                        tenant = %record.command.tenant, "a synchronous call's record was not written");
                    metrics::counter!("switchyard_write_behind_lost_total").increment(1);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, request_id = %record.command.request_id,
                        "a synchronous call's record waits for the database");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One try: the task row, `accepted` with its id, the lifecycle events, the
    /// terminal row, the terminal event. A retry after a failure finds the row and
    /// carries on from what it holds.
    async fn try_write_record(&self, record: &Record) -> Result<(), HandleError> {
        let command = &record.command;
        let task = match self
            .writes
            .create_task(NewTask::from_command(command))
            .await?
        {
            TaskInsert::Created(task) | TaskInsert::Existing(task) => task,
        };
        if task.status.is_terminal() {
            return Ok(());
        }
        let accepted = Lifecycle::new(command.request_id.clone(), command.tenant.clone())
            .next(
                EventBody::Accepted {
                    task_id: task.id,
                    kind: command.kind,
                },
                record.accepted_at,
            )
            .map_err(|refused| refused.error)?;
        let events = std::iter::once(accepted).chain(record.events.iter().cloned());
        // The record is written whole: there is no resume to keep a restriction for.
        self.publish_lifecycle(task.id, false, futures_util::stream::iter(events))
            .await?;
        let Settled {
            terminal,
            encoded,
            won,
        } = self
            .settle_row(
                task.id,
                command,
                record.terminal.clone(),
                record.raw_response.clone(),
            )
            .await?;
        if won {
            self.publish_terminal(&terminal, &encoded, None).await?;
        }
        Ok(())
    }
}
