//! `settle`: the terminal transition, written once (the single writer that wins it
//! publishes), then the terminal event on the stream and to `reply_to`; and the replay
//! of a finished request's stored terminal event to a duplicate.

use bytes::Bytes;
use switchyard_core::{
    Command, CommandEnvelope, ErrorCode, ErrorInfo, Event, EventBody, Lifecycle, ProviderRef, Usage,
};

use super::{HandleError, Pipeline};
use crate::{
    bus::BusError,
    store::{Completion, Failure, NewTaskResult, Refusal, StoredJson, Task, UsageRecord},
};

/// A terminal row written (see [`Pipeline::settle_row`]).
pub(super) struct Settled {
    /// The terminal event the row holds.
    pub(super) terminal: Event,
    /// Its encoding, for the stream and `reply_to`.
    pub(super) encoded: StoredJson,
    /// Whether this run's transition won (only the winner publishes).
    pub(super) won: bool,
}

impl Pipeline {
    /// A duplicate of a finished command: runs nothing.
    pub(super) async fn replay(
        &self,
        task: &Task,
        envelope: &CommandEnvelope,
    ) -> Result<(), HandleError> {
        let Some(event) = task
            .terminal_event
            .as_ref()
            .and_then(|v| serde_json::from_value::<Event>(v.clone()).ok())
        else {
            return Ok(());
        };
        if !self
            .bus
            .terminal_published(&event.tenant, &event.request_id)
            .await?
        {
            // The process that finished it died before publishing: publish it now.
            self.bus.publish_event(&event).await?;
        }
        if let Some(reply_to) = &envelope.reply_to {
            self.bus
                .publish_core(
                    reply_to,
                    Bytes::from(serde_json::to_vec(&event).map_err(BusError::Encode)?),
                )
                .await?;
        }
        metrics::counter!("switchyard_commands_duplicate_total").increment(1);
        Ok(())
    }

    /// Writes the terminal row of `terminal`; when the database refuses the answer for
    /// good (#14) — a run again would be refused again, after another provider call —
    /// the failure standing in for it is written instead, and that is the terminal
    /// event from then on.
    pub(super) async fn settle_row(
        &self,
        task: i64,
        command: &Command,
        terminal: Event,
        raw_response: Option<serde_json::Value>,
    ) -> Result<Settled, HandleError> {
        // Encoded once: the same bytes go to the row, the event stream and `reply_to`.
        let encoded = StoredJson::encode(&terminal).map_err(BusError::Encode)?;
        let written = self
            .write_terminal(task, command, &terminal, &encoded, raw_response, None)
            .await;
        match written {
            Ok(won) => Ok(Settled {
                terminal,
                encoded,
                won,
            }),
            Err(HandleError::Writer(error))
                if let Some(refusal) = error.refusal()
                    && let Some(replacement) = unstorable(&terminal, &refusal) =>
            {
                metrics::counter!("switchyard_commands_refused_by_database_total", "kind" => refusal.kind.as_str())
                    .increment(1);
                tracing::warn!(%error, code = %refusal.code, request_id = %command.request_id,
                    "the database refused the request's result for good; it fails instead");
                // The provider answered, and was paid: its usage still counts.
                let paid = match &terminal.body {
                    EventBody::Completed {
                        usage,
                        provider,
                        cached: false,
                        ..
                    } => Some(usage_row(
                        task,
                        command,
                        provider,
                        usage,
                        self.charged(provider, command),
                    )),
                    _ => None,
                };
                let encoded = StoredJson::encode(&replacement).map_err(BusError::Encode)?;
                let won = self
                    .write_terminal(task, command, &replacement, &encoded, None, paid)
                    .await?;
                Ok(Settled {
                    terminal: replacement,
                    encoded,
                    won,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the terminal row (with results and usage); true if this run's
    /// transition won. `paid` is the usage of a failure whose provider answered (and
    /// was paid) all the same.
    pub(super) async fn write_terminal(
        &self,
        task: i64,
        command: &Command,
        terminal: &Event,
        encoded: &StoredJson,
        raw_response: Option<serde_json::Value>,
        paid: Option<UsageRecord>,
    ) -> Result<bool, HandleError> {
        let won = match &terminal.body {
            EventBody::Completed {
                output,
                usage,
                provider,
                attempts,
                cached,
                ..
            } => {
                let mut results: Vec<NewTaskResult> = output
                    .images
                    .iter()
                    .map(|image| NewTaskResult {
                        artifact_id: Some(image.artifact_id.clone()),
                        url: Some(image.url.clone()),
                        content_type: Some(image.mime.clone()),
                        bytes: i64::try_from(image.bytes).ok(),
                        width: Some(i64::from(image.width)),
                        height: Some(i64::from(image.height)),
                        sha256: Some(image.sha256.clone()),
                        model: provider.model.clone(),
                        seed: image.seed,
                        revised_prompt: image.revised_prompt.clone(),
                        text: None,
                    })
                    .collect();
                if let Some(text) = &output.text {
                    results.push(NewTaskResult {
                        model: provider.model.clone(),
                        text: Some(text.clone()),
                        ..NewTaskResult::default()
                    });
                }
                self.writes
                    .complete_task(Completion {
                        id: task,
                        config_id: Some(provider.config_id),
                        attempts: i64::try_from(attempts.len()).unwrap_or(0),
                        raw_response,
                        results,
                        terminal_event: encoded.clone(),
                        // A cached answer used no provider: nothing to count.
                        usage: (!cached).then(|| {
                            usage_row(
                                task,
                                command,
                                provider,
                                usage,
                                self.charged(provider, command),
                            )
                        }),
                        held: self.quotas.may_hold(command.tenant.as_str()),
                        attempt_log: attempt_log(command, attempts),
                    })
                    .await?
            }
            EventBody::Failed {
                error, attempts, ..
            } => {
                self.writes
                    .fail_task(Failure {
                        id: task,
                        config_id: error.provider.as_ref().map(|p| p.config_id),
                        attempts: i64::try_from(attempts.len()).unwrap_or(0),
                        code: error.code,
                        message: error.message.clone(),
                        terminal_event: encoded.clone(),
                        usage: paid,
                        held: self.quotas.may_hold(command.tenant.as_str()),
                        attempt_log: attempt_log(command, attempts),
                    })
                    .await?
            }
            _ => false,
        };
        Ok(won)
    }

    /// Publishes a terminal event (already encoded) to the stream, awaiting the
    /// stream's ack, then to `reply_to` (best effort).
    pub(super) async fn publish_terminal(
        &self,
        event: &Event,
        encoded: &StoredJson,
        reply_to: Option<&str>,
    ) -> Result<(), BusError> {
        let payload = Bytes::copy_from_slice(encoded.get().as_bytes());
        self.bus
            .send_encoded_event(event, payload.clone())
            .await?
            .wait()
            .await?;
        if let Some(reply_to) = reply_to
            && let Err(e) = self.bus.publish_core(reply_to, payload).await
        {
            tracing::warn!(error = %e, "reply_to not reached");
        }
        Ok(())
    }
}

/// The terminal event that stands in for `terminal` when the database refused to
/// store it for good (`refusal`): a provider's answer holding what the database cannot
/// hold, such as a NUL in its text or its error message. It is a `failed` event at
/// the same `seq`, without the provider's content: `provider_error` for an answer
/// (another attempt may answer differently), the original code for a failure. `None`
/// for a `terminal` that is no terminal event.
pub(super) fn unstorable(terminal: &Event, refusal: &Refusal) -> Option<Event> {
    let message = format!(
        "the provider's answer holds {}; it was not kept",
        refusal.kind.describe()
    );
    let body = match &terminal.body {
        EventBody::Completed {
            provider,
            attempts,
            routing,
            latency_ms,
            ..
        } => EventBody::Failed {
            error: ErrorInfo {
                provider: Some(provider.clone()),
                ..ErrorInfo::new(ErrorCode::ProviderError, message)
            },
            attempts: attempts.clone(),
            routing: routing.clone(),
            latency_ms: *latency_ms,
            chunks_delivered: None,
        },
        EventBody::Failed {
            error,
            attempts,
            routing,
            latency_ms,
            chunks_delivered,
        } => EventBody::Failed {
            error: ErrorInfo {
                message,
                ..error.clone()
            },
            attempts: attempts.clone(),
            routing: routing.clone(),
            latency_ms: *latency_ms,
            chunks_delivered: *chunks_delivered,
        },
        _ => return None,
    };
    // The lifecycle the terminal event came from, one step before it.
    Lifecycle::resume(
        terminal.request_id.clone(),
        terminal.tenant.clone(),
        terminal.seq.checked_sub(1)?,
    )
    .next(body, terminal.time)
    .ok()
}

impl Pipeline {
    /// Whether usage on `provider` counts against its tenant's quotas: not when it
    /// is the tenant's own account (bring your own key).
    fn charged(&self, provider: &ProviderRef, command: &Command) -> bool {
        !self
            .engine
            .is_own_account(provider.config_id, command.tenant.as_str())
    }
}

/// The usage row of task `task`'s answer by `provider`.
pub(super) fn usage_row(
    task: i64,
    command: &Command,
    provider: &ProviderRef,
    usage: &Usage,
    charged: bool,
) -> UsageRecord {
    UsageRecord {
        charged,
        task_id: Some(task),
        tenant: command.tenant.to_string(),
        user: command.user.clone(),
        config_id: Some(provider.config_id),
        provider: provider.provider_type.as_str().to_owned(),
        model: provider.model.clone(),
        kind: command.kind,
        images: i64::from(usage.images),
        input_tokens: i64::try_from(usage.input_tokens).unwrap_or(i64::MAX),
        output_tokens: i64::try_from(usage.output_tokens).unwrap_or(i64::MAX),
        cost_usd: usage.cost_usd,
    }
}

pub(super) fn error_message(event: &Event) -> &str {
    match &event.body {
        EventBody::Failed { error, .. } => &error.message,
        _ => "",
    }
}

/// The attempts of a request, as `attempt_log` rows for the statistics.
fn attempt_log(
    command: &Command,
    attempts: &[switchyard_core::protocol::Attempt],
) -> Vec<crate::store::AttemptRow> {
    attempts
        .iter()
        .map(|a| crate::store::AttemptRow {
            tenant: command.tenant.to_string(),
            kind: command.kind.as_str().to_owned(),
            config_id: a.config_id.0,
            succeeded: a.outcome == switchyard_core::protocol::AttemptResult::Succeeded,
            error_code: a.error_code.map(|c| c.as_str().to_owned()),
            latency_ms: i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
        })
        .collect()
}
