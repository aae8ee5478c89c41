//! `enqueue`: a request that arrives without the bus (`POST /v1/jobs`) enters the
//! pipeline here. It is persisted and accepted exactly as a bus command would be, and
//! then queued on the bus, where intake runs it like any other command (resuming after
//! its `accepted`).

use switchyard_core::{Command, EventBody, Lifecycle};

use super::Pipeline;
use crate::{
    bus::BusError,
    store::{GroupCommitError, NewTask, Task, TaskInsert, TaskStatus},
};

/// What enqueueing did.
#[derive(Debug)]
pub struct Enqueued {
    /// The task row.
    pub task: Task,
    /// Whether this request was new (not a repeat of a tenant's `request_id`).
    pub created: bool,
    /// Whether it was (re)queued: false for a repeat of a request that already started.
    pub queued: bool,
}

/// Why a request could not be enqueued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The task row could not be written; nothing was stored.
    #[error(transparent)]
    Store(#[from] GroupCommitError),
    /// A fresh lifecycle refused `accepted` (a bug, never input).
    #[error(transparent)]
    Lifecycle(#[from] switchyard_core::LifecycleError),
    /// The row is stored but the bus did not take the command: enqueue it again.
    #[error("task {task_id} is stored but the bus did not take it: {source}")]
    Bus {
        /// The stored task.
        task_id: i64,
        /// Why.
        #[source]
        source: BusError,
    },
}

impl Pipeline {
    /// Persists `command` (the idempotency check on `(tenant, request_id)`), publishes
    /// its `accepted` event and queues it. A repeat of a request still queued queues it
    /// again (the bus drops the duplicate within its window); a repeat of one that
    /// started or finished queues nothing.
    ///
    /// # Errors
    /// [`EnqueueError`]; after [`EnqueueError::Bus`] the same call may be retried.
    pub async fn enqueue(&self, command: &Command) -> Result<Enqueued, EnqueueError> {
        let (task, created) = match self
            .writes
            .create_task(NewTask::from_command(command))
            .await?
        {
            TaskInsert::Created(task) => (task, true),
            TaskInsert::Existing(task) => (task, false),
        };
        if !created && task.status != TaskStatus::Pending {
            return Ok(Enqueued {
                task,
                created,
                queued: false,
            });
        }
        let accepted = accepted_event(command, task.id)?;
        let queued = async {
            // Both carry message ids: doing this twice is a no-op within the bus's
            // duplicate window.
            self.bus.publish_event(&accepted).await?;
            self.bus.publish_command(command).await?;
            Ok::<_, BusError>(())
        };
        match queued.await {
            Ok(()) => Ok(Enqueued {
                task,
                created,
                queued: true,
            }),
            Err(source) => Err(EnqueueError::Bus {
                task_id: task.id,
                source,
            }),
        }
    }
}

/// The `accepted` event (seq 1) of `command`, stored as task `task_id`.
pub(super) fn accepted_event(
    command: &Command,
    task_id: i64,
) -> Result<switchyard_core::Event, EnqueueError> {
    Lifecycle::new(command.request_id.clone(), command.tenant.clone())
        .next(
            EventBody::Accepted {
                task_id,
                kind: command.kind,
            },
            chrono::Utc::now(),
        )
        .map_err(|refused| EnqueueError::Lifecycle(refused.error))
}
