//! `run`: the engine executes the admitted request while its lifecycle events go out
//! on the bus in order; then `settle` records and publishes the terminal event.

use std::sync::Arc;

use futures_util::StreamExt as _;
use switchyard_core::{Command, ErrorInfo, Event, EventBody, Lifecycle, routing::OwnAccounts};
use tokio::sync::mpsc;

use super::{HandleError, Pipeline, admit::Admission, settle::Settled};
use crate::{
    bus::BusError,
    engine::Submission,
    store::{Start, Task, TaskStatus},
};

impl Pipeline {
    /// Runs a command on the engine and publishes its events. The terminal row is
    /// written as soon as the engine is done, while the stream acks of the lifecycle
    /// events are still coming; the terminal event goes out once both are in.
    ///
    /// `cache_key` is the command's [`crate::store::cache_key`] when it has one;
    /// `refuse`, intake's refusal (a tenant over its limits), stands in for admission.
    pub(super) async fn run(
        &self,
        task: &Task,
        command: Command,
        resumed: bool,
        cache_key: Option<&str>,
        refuse: Option<ErrorInfo>,
    ) -> Result<(), HandleError> {
        let command = Arc::new(command);
        let reply_to = command.reply_to.clone();
        // A new task starts its events at 1 (`accepted`); a resumed one continues after
        // the last recorded.
        let (lifecycle, announce) = if resumed {
            let last_seq = u64::try_from(task.last_seq).unwrap_or(0);
            (
                Lifecycle::resume(command.request_id.clone(), command.tenant.clone(), last_seq),
                None,
            )
        } else {
            (
                Lifecycle::new(command.request_id.clone(), command.tenant.clone()),
                Some(task.id),
            )
        };
        // Before a request's first attempt (a new task, or one stored but never
        // started: a job posted over HTTP, or a crash before the first attempt) it is
        // admitted; a task resumed mid-flight was admitted already, and keeps the
        // restriction to its tenant's own accounts that admission recorded.
        let Admission {
            refuse,
            cached,
            stale,
            flight,
            own_accounts,
        } = match refuse {
            _ if task.status != TaskStatus::Pending => Admission {
                own_accounts: if task.own_accounts_only {
                    OwnAccounts::Only
                } else {
                    self.limits.own_accounts(command.tenant.as_str()).await
                },
                ..Admission::default()
            },
            Some(refuse) => Admission {
                refuse: Some(refuse),
                ..Admission::default()
            },
            None => self.admit(&command, cache_key).await?,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let own_accounts_only = own_accounts == OwnAccounts::Only;
        let submission = Submission {
            command: command.clone(),
            lifecycle,
            announce,
            refuse,
            cached,
            stale,
            own_accounts,
        };
        let engine = &self.engine;
        let execute = async move {
            let mut emit = move |event: Event| {
                let _ = tx.send(event);
            };
            engine.execute(submission, &mut emit).await
        };
        let publish = self.publish_lifecycle(
            task.id,
            own_accounts_only,
            futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
        );
        // The terminal row is written as soon as the engine is done, alongside the
        // publishing of the lifecycle events.
        let finish = async {
            let outcome = execute.await;
            self.settle_row(task.id, &command, outcome.terminal, outcome.raw_response)
                .await
        };
        let (published, finished) = tokio::join!(publish, finish);
        // Lifecycle events that did not all go out: no terminal event now; the command
        // comes back, and its redelivery publishes the stored terminal event.
        published?;
        let Settled {
            terminal,
            encoded,
            won,
            ..
        } = finished?;
        if won {
            // Identical requests waiting for this one get its answer (#18 §6).
            self.land(&command, cache_key, flight, &terminal);
            self.publish_terminal(&terminal, &encoded, reply_to.as_deref())
                .await?;
        } else {
            tracing::info!(
                request_id = %command.request_id,
                "another process finished this task first; its terminal event stands"
            );
        }
        Ok(())
    }

    /// Publishes a request's lifecycle events (the terminal one is skipped: it goes
    /// out after its row), in order, without waiting for each stream ack; the acks are
    /// awaited together at the end. Each `started` is recorded in the task row, with
    /// whether admission restricted the request to its tenant's own accounts.
    pub(super) async fn publish_lifecycle(
        &self,
        task_id: i64,
        own_accounts_only: bool,
        events: impl futures_util::Stream<Item = Event>,
    ) -> Result<(), HandleError> {
        let mut events = std::pin::pin!(events);
        let mut pending = Vec::new();
        let mut failure: Option<BusError> = None;
        while let Some(event) = events.next().await {
            if event.is_terminal() {
                continue;
            }
            if let EventBody::Started { attempt, provider } = &event.body
                && let Err(e) = self.writes.record_start(Start {
                    id: task_id,
                    config_id: provider.config_id,
                    attempt: i64::from(*attempt),
                    seq: i64::try_from(event.seq).unwrap_or(0),
                    own_accounts_only,
                })
            {
                tracing::warn!(error = %e, "cannot record the attempt start");
            }
            match self.bus.send_event(&event).await {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    tracing::warn!(error = %e, "event not published");
                    failure.get_or_insert(e);
                }
            }
        }
        for ack in pending {
            if let Err(e) = ack.wait().await {
                tracing::warn!(error = %e, "event not published");
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), |e| Err(HandleError::from(e)))
    }
}
