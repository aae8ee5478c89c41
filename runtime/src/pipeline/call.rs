//! `call`: a synchronous request — its client waits on the connection, as an
//! OpenAI-compatible call does — runs on the receiving process's engine (#15).
//!
//! It takes the same path as a bus command, less the round trips that only a durable
//! command needs: no command on the bus, and no task row before the first provider
//! byte.
//!
//! ```text
//! tenant limits → reserve a write-behind place → admit → run (events to the caller) →
//! terminal to the caller → record (write_behind)
//! ```
//!
//! - Admission is the same seam (`admit`): quotas, cached answers, input ownership.
//!   The quota reservation admission took is held until the record is written, which
//!   settles it, so the next call of the tenant is checked against it meanwhile.
//! - The caller gets every event as the engine makes it. `accepted` is not among them:
//!   its task id is the row's, known only once the record is written; the engine's
//!   events start at `seq` 2, and the record's `accepted` takes `seq` 1.
//! - The request runs in a task of its own (owned by the pipeline's tasks), so a
//!   client that hangs up does not cut a provider call that is being paid for, and its
//!   record is still written.
//! - The client's open connection is the delivery guarantee: a process that dies
//!   mid-call fails the calls in flight (their connections break), and the records
//!   still queued behind answered calls are lost (docs/protocol-extensions.md).

use std::sync::Arc;

use switchyard_core::{Command, Event, Lifecycle};
use tokio::sync::mpsc;

use super::{
    HandleError, Pipeline,
    admit::Admission,
    write_behind::{Record, ShuttingDown},
};
use crate::{bus::Events, engine::Submission, store::cache_key};

/// Why a synchronous call could not start.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The gateway is shutting down.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    /// Admission could not decide (the database failed).
    #[error("admission failed: {0}")]
    Admission(#[source] HandleError),
    /// The tenant (or its user) is over a limit at intake: try again after
    /// `retry_after`.
    #[error("{}", .0.message)]
    RateLimited(crate::limits::Limited),
}

impl Pipeline {
    /// Runs a validated `command` on this process's engine and answers its events as
    /// they happen, ending with the terminal one (see the module's docs).
    ///
    /// # Errors
    /// [`CallError`]; nothing ran then.
    pub async fn call(&self, command: Command) -> Result<Events, CallError> {
        let permit = self
            .limits
            .try_take(command.tenant.as_str(), command.user.as_deref())
            .await
            .map_err(|e| CallError::Admission(e.into()))?
            .map_err(CallError::RateLimited)?;
        let place = self.write_behind().reserve().await?;
        let accepted_at = chrono::Utc::now();
        let key = command.cache.then(|| cache_key(&command));
        let Admission {
            refuse,
            cached,
            stale,
            flight,
            own_accounts,
        } = self
            .admit(&command, key.as_deref())
            .await
            .map_err(CallError::Admission)?;
        let command = Arc::new(command);
        let submission = Submission {
            command: command.clone(),
            // `seq` 1 is the record's `accepted`.
            lifecycle: Lifecycle::resume(command.request_id.clone(), command.tenant.clone(), 1),
            announce: None,
            refuse,
            cached,
            stale,
            own_accounts,
        };
        let (tx, rx) = mpsc::unbounded_channel::<Event>();
        let pipeline = self.clone();
        self.tasks.spawn_bounded("call", async move {
            let mut events = Vec::new();
            let mut emit = |event: Event| {
                if !event.is_terminal() {
                    events.push(event.clone());
                    let _ = tx.send(event);
                }
            };
            let outcome = pipeline.engine.execute(submission, &mut emit).await;
            // The tenant's slot is free once the provider answered.
            drop(permit);
            // Identical requests waiting for this one get its answer (#18 §6).
            pipeline.land(&command, key.as_deref(), flight, &outcome.terminal);
            let _ = tx.send(outcome.terminal.clone());
            place.send(Record {
                command,
                accepted_at,
                events,
                terminal: outcome.terminal,
                raw_response: outcome.raw_response,
            });
        });
        let mut rx = rx;
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}
