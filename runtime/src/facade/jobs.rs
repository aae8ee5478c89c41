//! Requests over the gateway: jobs handed to the pipeline (stored, then queued),
//! synchronous calls run on this process's engine, and calls published on the bus
//! straight away, each followed by its events or by the replies to its `reply_to`
//! subject.

use futures_util::StreamExt;
use switchyard_core::{Command, Event, ReplyToPolicy};

use super::Gateway;
use crate::{
    bus::{BusError, EventFilter, Events},
    pipeline::{CallError, EnqueueError, Enqueued},
    store::{QueryError, Task},
};

impl Gateway {
    /// Which `reply_to` subjects a command may name.
    pub fn reply_to_policy(&self) -> &ReplyToPolicy {
        self.parts.pipeline.reply_to_policy()
    }

    /// Hands a validated command to the pipeline as a job: its task row is stored,
    /// `accepted` published and the command queued on the bus. A repeated `request_id`
    /// answers the tenant's earlier job (queued again only while it is still queued).
    ///
    /// # Errors
    /// [`EnqueueError`]: nothing stored, or stored but not queued.
    pub async fn submit_job(&self, command: &Command) -> Result<Enqueued, EnqueueError> {
        self.parts.pipeline.enqueue(command).await
    }

    /// The job (task row) with this id, whoever's it is.
    ///
    /// # Errors
    /// The store's.
    pub async fn job(&self, id: i64) -> Result<Option<Task>, QueryError> {
        self.parts.store.get_task(id).await
    }

    /// The events matching `filter` (see [`EventFilter`]).
    ///
    /// # Errors
    /// The bus's.
    pub async fn events(&self, filter: EventFilter) -> Result<Events, BusError> {
        self.parts.bus.events(filter).await
    }

    /// The events sent to a `reply_to` subject (payloads that are no event are
    /// skipped).
    ///
    /// # Errors
    /// The bus's.
    pub async fn replies(&self, subject: &str) -> Result<Events, BusError> {
        let payloads = self.parts.bus.subscribe_core(subject).await?;
        Ok(Box::pin(payloads.filter_map(|payload| async move {
            serde_json::from_slice::<Event>(&payload).ok()
        })))
    }

    /// Publishes a command on the bus (no task row first: the runtime that pulls it
    /// stores one), as [`Bus::publish_command`](crate::bus::Bus::publish_command).
    ///
    /// # Errors
    /// The bus's.
    pub async fn publish_command(&self, command: &Command) -> Result<bool, BusError> {
        self.parts.bus.publish_command(command).await
    }

    /// Runs a validated command on this process's engine for a caller that waits on
    /// its connection: its events as they happen, ending with the terminal one (no
    /// `accepted`). Its record is written behind the answer.
    ///
    /// # Errors
    /// [`CallError`]: nothing ran.
    pub async fn call(&self, command: Command) -> Result<Events, CallError> {
        self.parts.pipeline.call(command).await
    }
}
