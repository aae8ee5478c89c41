//! `give_up`: a command the pipeline cannot finish the ordinary way still ends for its
//! subscribers (#14). Two ways lead here: its deliveries ran out while a failure
//! lasted (a database outage longer than the backoff spans), or the database refused
//! its values for good at a write other than the task insert (the insert's refusal is
//! answered by [`Pipeline::reject`], which can still store a row).
//!
//! Either way the request gets its one terminal `failed` event where that is possible,
//! and the failure is written to its task row as soon as the database takes it.
//!
//! **Which `seq`.** Earlier deliveries, in this process or another, may have published
//! events (`accepted`, `started` …) before the failure, and the task row that records
//! how far they got may be out of reach. The event stream is what subscribers saw, so
//! it is asked for the request's last event: the `failed` one comes after it, or at
//! `seq` 1 when there is none (nothing was published, as when the task insert never
//! succeeded). A terminal event there means the request has ended already, and nothing
//! more is published. When the stream cannot be read either, nothing is published: its
//! `seq` would be a guess (the DLQ still gets the command).
//!
//! **Exactly once.** The message is terminated (never redelivered). The failure goes
//! into the task row as its terminal event, at once if the database answers, else from
//! a background task that retries for up to [`RECORD_FOR`]; from then on a duplicate of
//! the command replays it instead of running. Hazard: a duplicate that comes (with a
//! new message id) before the row is written, or after the process died without
//! writing it, runs as a new request, and its subscribers see a second terminal event.
//! A row another run still holds a live claim on is left to that run (its answer is
//! never overwritten), but the `failed` event has gone out by then: a delivery that
//! gave up while another process ran the task ends it twice for subscribers.

use std::time::Duration;

use switchyard_core::{
    Command, CommandEnvelope, ErrorCode, ErrorInfo, Event, EventBody, Lifecycle,
};

use super::{HandleError, Pipeline};
use crate::{
    bus::{BusError, Delivery},
    store::{Failure, GroupCommitError, NewTask, Refusal, StoredJson, TaskInsert},
};

/// How long a given-up command's failure is retried into its task row.
const RECORD_FOR: Duration = Duration::from_secs(3600);
/// The longest wait between two tries of that write.
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What failed, as far as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Database,
    Bus,
    Lifecycle,
}

impl Cause {
    fn of(error: &HandleError) -> Self {
        match error {
            HandleError::Store(_) | HandleError::Writer(_) => Cause::Database,
            HandleError::Bus(_) => Cause::Bus,
            HandleError::Lifecycle(_) => Cause::Lifecycle,
        }
    }

    /// The metric label.
    fn label(self) -> &'static str {
        match self {
            Cause::Database => "database",
            Cause::Bus => "bus",
            Cause::Lifecycle => "lifecycle",
        }
    }

    /// The event's message: what happened, never the error's own text (a driver
    /// error may carry SQL, a host name or a connection URL).
    fn message(self, deliveries: u64) -> String {
        let what = match self {
            Cause::Database => "the gateway's database was unavailable",
            Cause::Bus => "the gateway's message bus failed",
            Cause::Lifecycle => "the gateway's stored state of this request is out of step",
        };
        format!("{what}; the command was given up after {deliveries} deliveries")
    }

    /// An outage passes; a request whose stored state is out of step fails again.
    fn retryable(self) -> bool {
        self != Cause::Lifecycle
    }
}

/// A request ended by this module: its failure, published, still to be written to its
/// task row.
struct Ended {
    envelope: CommandEnvelope,
    subject: String,
    payload: bytes::Bytes,
    event: Event,
    encoded: StoredJson,
    error: ErrorInfo,
}

impl Pipeline {
    /// Gives a command up after its last delivery failed with `error`: its `failed`
    /// event (`internal`), the DLQ, term; the failure is recorded in the background.
    pub(super) async fn give_up(&self, delivery: Delivery, error: HandleError) {
        let cause = Cause::of(&error);
        metrics::counter!("switchyard_commands_given_up_total", "cause" => cause.label())
            .increment(1);
        metrics::counter!("switchyard_commands_dlq_total").increment(1);
        tracing::error!(%error, subject = %delivery.subject, deliveries = delivery.delivered,
            cause = cause.label(), "command given up after repeated failures; sent to the DLQ");
        let info = ErrorInfo {
            retryable: cause.retryable(),
            ..ErrorInfo::new(ErrorCode::Internal, cause.message(delivery.delivered))
        };
        let ended = match self.end(&delivery, info).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(error = %e, "the given-up command's failed event was not published");
                None
            }
        };
        // The operator's record keeps the error itself.
        let reason = format!(
            "gave up after {} deliveries ({}): {error}",
            delivery.delivered,
            cause.label()
        );
        if let Err(e) = self
            .bus
            .publish_dlq(&delivery.subject, &delivery.payload, &reason)
            .await
        {
            tracing::error!(error = %e, "DLQ publish failed");
        }
        delivery.term().await;
        if let Some(ended) = ended {
            self.record_later(ended);
        }
    }

    /// Ends a command whose values the database refused for good (`refusal`, at a
    /// write after the task insert): one `failed` event (`invalid_request`), acked,
    /// never retried. Only if that event cannot be published is it delivered again.
    pub(super) async fn refuse(&self, delivery: Delivery, error: &HandleError, refusal: &Refusal) {
        metrics::counter!("switchyard_commands_refused_by_database_total", "kind" => refusal.kind.as_str())
            .increment(1);
        tracing::warn!(%error, code = %refusal.code, subject = %delivery.subject,
            "the database refused the command's values for good; it fails as invalid_request");
        let info = ErrorInfo::new(
            ErrorCode::InvalidRequest,
            format!("the command holds {}", refusal.kind.describe()),
        );
        match self.end(&delivery, info).await {
            Ok(ended) => {
                delivery.ack().await;
                if let Some(ended) = ended {
                    self.record_later(ended);
                }
            }
            Err(e) if delivery.delivered < self.max_deliveries => {
                tracing::warn!(error = %e, "the refused command's failed event was not published; it will be redelivered");
                let backoff = self.first_backoff.saturating_mul(2);
                delivery.nak(Some(backoff)).await;
            }
            Err(e) => self.give_up(delivery, HandleError::Bus(e)).await,
        }
    }

    /// Publishes the request's terminal `failed` event with `error`, after the last
    /// event the stream holds for it (module docs). `None` when none is due: the
    /// stream holds a terminal event already, or the body names no request.
    async fn end(&self, delivery: &Delivery, error: ErrorInfo) -> Result<Option<Ended>, BusError> {
        let Ok(mut envelope) = CommandEnvelope::parse(&delivery.payload) else {
            return Ok(None);
        };
        let last = self
            .bus
            .last_event(&envelope.tenant, &envelope.request_id)
            .await?;
        let mut lifecycle = match &last {
            Some(event) if event.is_terminal() => return Ok(None),
            Some(event) => Lifecycle::resume(
                envelope.request_id.clone(),
                envelope.tenant.clone(),
                event.seq,
            ),
            None => Lifecycle::new(envelope.request_id.clone(), envelope.tenant.clone()),
        };
        let body = EventBody::Failed {
            error: error.clone(),
            attempts: Vec::new(),
            routing: None,
            // Unknown: when it was accepted is in the task row, out of reach.
            latency_ms: 0,
            chunks_delivered: None,
        };
        let Ok(event) = lifecycle.next(body, chrono::Utc::now()) else {
            return Ok(None);
        };
        let encoded = StoredJson::encode(&event)?;
        // A refused reply_to is never published to (intake refuses the command for it).
        if envelope
            .reply_to
            .as_deref()
            .is_some_and(|reply_to| self.reply_to.check(reply_to).is_err())
        {
            envelope.reply_to = None;
        }
        self.publish_terminal(&event, &encoded, envelope.reply_to.as_deref())
            .await?;
        Ok(Some(Ended {
            envelope,
            subject: delivery.subject.clone(),
            payload: delivery.payload.clone(),
            event,
            encoded,
            error,
        }))
    }

    /// Writes `ended`'s failure to its task row in the background, retrying while the
    /// database fails (up to [`RECORD_FOR`]).
    fn record_later(&self, ended: Ended) {
        let pipeline = self.clone();
        self.tasks.spawn("record-given-up", async move {
            let until = tokio::time::Instant::now() + RECORD_FOR;
            let mut wait = Duration::from_secs(1);
            loop {
                match pipeline.record(&ended).await {
                    Ok(()) => {
                        metrics::counter!("switchyard_given_up_recorded_total", "outcome" => "written")
                            .increment(1);
                        return;
                    }
                    // A refusal and a stopped writer are for good; anything else is
                    // retried until the time is up.
                    Err(e)
                        if e.refusal().is_some()
                            || matches!(e, GroupCommitError::Stopped)
                            || tokio::time::Instant::now() >= until =>
                    {
                        tracing::error!(error = %e, request_id = %ended.event.request_id,
                            "a given-up command's failure could not be written to its task row");
                        metrics::counter!("switchyard_given_up_recorded_total", "outcome" => "lost")
                            .increment(1);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the given-up command's failure waits for the database");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RECORD_BACKOFF_MAX);
                    }
                }
            }
        });
    }

    /// One try of that write: the task row (created if it is missing, held by a claim
    /// of its own so no delivery runs it meanwhile) gets the failure as its terminal
    /// event, unless it has one already.
    async fn record(&self, ended: &Ended) -> Result<(), GroupCommitError> {
        let run = format!("{}-{}", self.owner, crate::secrets::random_alphanumeric(8));
        let claim = self.claim(0, &run);
        let kind_token = self.kind_token(&ended.subject);
        let invalid = || {
            NewTask::invalid(
                &ended.envelope.request_id,
                &ended.envelope.tenant,
                &kind_token,
                &ended.payload,
            )
            .claimed_by(claim.owner.clone(), claim.until_ms)
        };
        let command = self
            .bus
            .subjects()
            .kind_of_command_subject(&ended.subject)
            .and_then(Result::ok)
            .and_then(|kind| Command::parse_and_validate(&ended.payload, Some(kind)).ok());
        let inserted = match command {
            Some(command) => {
                let row =
                    NewTask::from_command(&command).claimed_by(claim.owner.clone(), claim.until_ms);
                match self.writes.create_task(row).await {
                    // Its values are what the database refused: keep the raw body.
                    Err(e) if e.refusal().is_some() => self.writes.create_task(invalid()).await?,
                    other => other?,
                }
            }
            None => self.writes.create_task(invalid()).await?,
        };
        let (task, existing) = match inserted {
            TaskInsert::Created(task) => (task, false),
            TaskInsert::Existing(task) => (task, true),
        };
        if task.status.is_terminal() {
            tracing::warn!(
                task_id = task.id,
                "a given-up command's task had ended meanwhile; its row is kept"
            );
            return Ok(());
        }
        // A row that was there already may be running elsewhere (a duplicate delivery
        // gave up while another process holds the task's claim): that run settles it,
        // and its answer is never overwritten by this failure.
        if existing && !self.writes.claim_task(self.claim(task.id, &run)).await? {
            tracing::warn!(
                task_id = task.id,
                "a given-up command's task runs elsewhere; its run settles the row"
            );
            return Ok(());
        }
        self.writes
            .fail_task(Failure {
                id: task.id,
                config_id: None,
                attempts: task.attempts,
                code: ended.error.code,
                message: ended.error.message.clone(),
                terminal_event: ended.encoded.clone(),
                usage: None,
                // An earlier delivery may have been admitted: release what it holds.
                held: true,
                attempt_log: Vec::new(),
            })
            .await?;
        Ok(())
    }
}
