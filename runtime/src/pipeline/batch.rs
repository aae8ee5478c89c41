//! Batches (#18 §9) in the pipeline: a batch's commands are persisted and accepted
//! like jobs, but wait in their rows instead of going on the bus at once. The batch
//! dispatcher ([`crate::batches`]) hands the pipeline a few at a time to queue, and a
//! cancellation hands it those that never left, to end with their one `failed` event.

use futures_util::{StreamExt, stream};
use switchyard_core::{Command, Lifecycle};

use super::{
    EnqueueError, Pipeline,
    persist::{invalid_request, unstarted_failure},
};
use crate::{
    bus::BusError,
    store::{CancelledTask, DispatchedTask, NewTask, StoredJson, TaskInsert},
};

/// Bus publishes in flight at once while a batch is accepted or queued.
const PUBLISHES_AT_ONCE: usize = 64;

/// Why a batch step failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchStepError {
    /// Storing failed.
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
    /// The bus did not take a command or an event.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl Pipeline {
    /// Persists `commands` as item 0, 1, … of batch `batch_id`, waiting for the
    /// dispatcher, and publishes the `accepted` event of each new one. A command whose
    /// `request_id` the tenant had used is no task of this batch (its earlier task is
    /// left as it is). With `retry` (the `POST` of a batch that an earlier `POST`
    /// left half stored), `accepted` is published again for the tasks found pending
    /// at their first event (the bus drops what it already has within its duplicate
    /// window). Answers, in order, what each insert did.
    ///
    /// # Errors
    /// [`EnqueueError`]: retry with the same commands (each step is idempotent).
    pub async fn accept_batch(
        &self,
        batch_id: &str,
        commands: &[Command],
        retry: bool,
    ) -> Result<Vec<TaskInsert>, EnqueueError> {
        let inserts =
            futures_util::future::join_all(commands.iter().enumerate().map(|(index, command)| {
                let task = NewTask::from_command(command).in_batch(batch_id, index as i64);
                self.writes.create_task(task)
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        // Accepted: a new task of this batch, or (retried) one an earlier POST stored.
        let mut events = Vec::new();
        for (command, insert) in commands.iter().zip(&inserts) {
            let task = match insert {
                TaskInsert::Created(task) => task,
                TaskInsert::Existing(task)
                    if retry
                        && task.status == crate::store::TaskStatus::Pending
                        && task.last_seq == 1 =>
                {
                    task
                }
                TaskInsert::Existing(_) => continue,
            };
            events.push((task.id, super::enqueue::accepted_event(command, task.id)?));
        }
        let bus = self.bus.clone();
        let published: Vec<Result<(), EnqueueError>> = stream::iter(events)
            .map(move |(task_id, event)| {
                let bus = bus.clone();
                async move {
                    // A message id makes a second publish (a retried POST) a no-op.
                    bus.publish_event(&event)
                        .await
                        .map_err(|source| EnqueueError::Bus { task_id, source })
                }
            })
            .buffer_unordered(PUBLISHES_AT_ONCE)
            .collect()
            .await;
        published.into_iter().collect::<Result<(), _>>()?;
        Ok(inserts)
    }

    /// Queues dispatched batch tasks on the bus, where intake runs them like any
    /// command (resuming after their `accepted`).
    ///
    /// # Errors
    /// [`BusError`]: the tasks stay dispatched and are queued again later.
    pub async fn queue_batch_tasks(&self, tasks: Vec<DispatchedTask>) -> Result<(), BusError> {
        let published: Vec<Result<(), BusError>> = stream::iter(tasks)
            .map(|task| async move {
                let command: Command = match serde_json::from_str(task.command.get()) {
                    Ok(command) => command,
                    Err(e) => {
                        // Stored by this gateway after validation: never expected.
                        tracing::error!(task_id = task.id, error = %e, "a stored batch command does not parse");
                        return Ok(());
                    }
                };
                self.bus.publish_command(&command).await.map(|_| ())
            })
            .buffer_unordered(PUBLISHES_AT_ONCE)
            .collect()
            .await;
        published.into_iter().collect()
    }

    /// Ends cancelled batch tasks (never queued, so nothing else writes them): each
    /// gets its terminal `failed` event (`invalid_request`, not retryable, the message
    /// saying it was cancelled) and its row. Answers how many it ended.
    ///
    /// # Errors
    /// [`BatchStepError`]: the rest stay cancelled and unfailed, found again later.
    pub async fn end_cancelled(&self, tasks: Vec<CancelledTask>) -> Result<usize, BatchStepError> {
        let mut ended = 0;
        for task in tasks {
            let mut lifecycle = Lifecycle::resume(
                task.request_id.clone(),
                task.tenant.clone(),
                u64::try_from(task.last_seq).unwrap_or(0),
            );
            let message =
                String::from("cancelled: its batch was cancelled before this command started");
            let event = lifecycle
                .next(invalid_request(message.clone()), chrono::Utc::now())
                .map_err(|refused| EnqueueError::Lifecycle(refused.error))?;
            let encoded = StoredJson::encode(&event).map_err(BusError::Encode)?;
            let won = self
                .writes
                .fail_task(unstarted_failure(task.id, message, encoded))
                .await
                .map_err(EnqueueError::Store)?;
            if won {
                self.bus.publish_event(&event).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }
}
