//! One request's run: plan the route against the routing-table snapshot, offer each
//! attempt to a provider actor, fall back by the route's rules, and build every event
//! through the request's [`Lifecycle`].

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use switchyard_core::{
    Attempt, AttemptResult, Command, ConfigId, ErrorCode, ErrorInfo, Event, EventBody, Lifecycle,
    Output, OutputImage, ProviderConfig, ProviderRef, Routing, SkipReason, Skipped, Usage,
    protocol::PROTOCOL_VERSION,
    routing::{NoProvider, RouteRequest, plan_route},
};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{CachedAnswer, Engine, RequestOutcome, Submission};
use crate::{
    actors::{Admission, CallRequest, Instance, ProviderMsg},
    providers::{AdapterOutput, AdapterRequest, AdapterUpdate, AttemptError, InputImages},
};

impl Engine {
    /// Runs a command in the caller's task, handing each event to `emit` as it happens.
    pub async fn execute(
        &self,
        submission: Submission,
        emit: &mut (dyn FnMut(Event) + Send),
    ) -> RequestOutcome {
        let command = submission.command.clone();
        let span = tracing::info_span!(
            "request",
            request_id = %command.request_id,
            tenant = %command.tenant,
            kind = %command.kind,
        );
        let mut run = Run {
            engine: self,
            command: command.clone(),
            lifecycle: submission.lifecycle,
            emit,
            attempts: Vec::new(),
            routing: None,
            chunks: 0,
            accepted_at: tokio::time::Instant::now(),
            raw: None,
            inputs: Arc::default(),
            own_accounts: submission.own_accounts,
        };
        if let Some(task_id) = submission.announce {
            run.send(EventBody::Accepted {
                task_id,
                kind: command.kind,
            });
        }
        let deadline = command
            .deadline_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| run.accepted_at + Duration::from_millis(ms));
        let terminal = match (submission.refuse, submission.cached, deadline) {
            (Some(error), _, _) => run.failure(error),
            (None, Some(answer), _) => run.cached(answer, false),
            (None, None, Some(deadline)) => {
                match tokio::time::timeout_at(deadline, run.attempt_all(deadline).instrument(span))
                    .await
                {
                    Ok(body) => body,
                    Err(_) => run.failure(ErrorInfo::new(
                        ErrorCode::Timeout,
                        format!(
                            "not done within deadline_ms = {}",
                            command.deadline_ms.unwrap_or_default()
                        ),
                    )),
                }
            }
            (None, None, None) => {
                let wait_until = run.accepted_at + self.inner.default_wait;
                run.attempt_all(wait_until).instrument(span).await
            }
        };
        // Every provider failed: an earlier answer, if the route asked for one (#18 §5).
        let terminal = match (terminal, submission.stale) {
            (EventBody::Failed { error, .. }, Some(answer))
                if (error.retryable || error.code == ErrorCode::NoProvider) && run.chunks == 0 =>
            {
                metrics::counter!("switchyard_stale_answers_total").increment(1);
                run.cached(answer, true)
            }
            (terminal, _) => terminal,
        };
        let code = match &terminal {
            EventBody::Failed { error, .. } => error.code.as_str(),
            _ => "ok",
        };
        metrics::counter!("switchyard_requests_total", "kind" => command.kind.as_str(), "code" => code).increment(1);
        crate::telemetry::record_generation(command.kind.as_str(), &terminal);
        let terminal = run.send(terminal);
        RequestOutcome {
            terminal,
            raw_response: run.raw,
        }
    }
}

/// One request's progress.
pub(super) struct Run<'a> {
    pub(super) engine: &'a Engine,
    pub(super) command: Arc<Command>,
    pub(super) lifecycle: Lifecycle,
    pub(super) emit: &'a mut (dyn FnMut(Event) + Send),
    pub(super) attempts: Vec<Attempt>,
    pub(super) routing: Option<Routing>,
    pub(super) chunks: u32,
    pub(super) accepted_at: tokio::time::Instant,
    pub(super) raw: Option<serde_json::Value>,
    pub(super) inputs: Arc<InputImages>,
    pub(super) own_accounts: switchyard_core::routing::OwnAccounts,
}

/// How one offer to one instance ended.
enum Offer {
    Rejected(SkipReason, Option<u64>),
    Done(Result<AdapterOutput, AttemptError>),
}

impl Run<'_> {
    /// Emits the next event, as the lifecycle numbers it. An event the lifecycle
    /// refuses (a broken rule: a bug, never input) is logged, counted and not emitted.
    pub(super) fn send(&mut self, body: EventBody) -> Event {
        match self.lifecycle.next(body, Utc::now()) {
            Ok(event) => {
                (self.emit)(event.clone());
                event
            }
            Err(refused) => {
                tracing::error!(error = %refused.error, "lifecycle rule broken: event not emitted");
                metrics::counter!("switchyard_lifecycle_refusals_total").increment(1);
                Event {
                    v: PROTOCOL_VERSION,
                    request_id: self.command.request_id.clone(),
                    tenant: self.command.tenant.clone(),
                    seq: self.lifecycle.last_seq(),
                    time: Utc::now(),
                    body: refused.body,
                }
            }
        }
    }

    fn latency_ms(&self) -> u64 {
        u64::try_from(self.accepted_at.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The completion of a request answered from the cache: no attempts and no usage;
    /// a streamed text arrives as one chunk.
    /// The terminal body of an earlier answer: asked for (`cache: true`), or `stale`
    /// when every provider failed (its attempts and routing are kept then).
    pub(super) fn cached(&mut self, answer: CachedAnswer, stale: bool) -> EventBody {
        if self.command.input.stream == Some(true)
            && let Some(text) = &answer.output.text
        {
            self.chunks += 1;
            self.send(EventBody::Chunk {
                index: 0,
                delta: text.clone(),
            });
        }
        EventBody::Completed {
            output: answer.output,
            usage: Usage::default(),
            provider: answer.provider,
            attempts: if stale {
                self.attempts.clone()
            } else {
                Vec::new()
            },
            routing: if stale { self.routing.clone() } else { None },
            latency_ms: self.latency_ms(),
            cached: true,
            stale,
        }
    }

    pub(super) fn failure(&self, error: ErrorInfo) -> EventBody {
        EventBody::Failed {
            error,
            attempts: self.attempts.clone(),
            routing: self.routing.clone(),
            latency_ms: self.latency_ms(),
            chunks_delivered: (self.chunks > 0).then_some(self.chunks),
        }
    }

    fn skip(&mut self, config_id: ConfigId, reason: SkipReason, until_ms: Option<u64>) {
        if let Some(routing) = &mut self.routing
            && routing.skipped.len() < switchyard_core::routing::MAX_SKIPPED
        {
            routing.skipped.push(Skipped {
                config_id,
                reason,
                until: until_ms.and_then(|ms| {
                    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
                }),
            });
        }
    }

    /// Tries candidates in plan order, then waits for a rate-limit slot if every one was
    /// full; returns the terminal event's body.
    pub(super) async fn attempt_all(&mut self, wait_until: tokio::time::Instant) -> EventBody {
        if self.command.input.images.is_some() || self.command.input.mask.is_some() {
            match crate::inputs::resolve(
                &self.command,
                &self.engine.inner.artifacts,
                &self.engine.inner.outbound,
            )
            .await
            {
                Ok(inputs) => self.inputs = Arc::new(inputs),
                Err(error) => return self.failure(error),
            }
        }
        let inner = &self.engine.inner;
        let table = inner.table.load_full();
        let command = self.command.clone();
        let route = &command.route;
        let estimated_tokens = super::estimate::tokens(&command);
        let request = RouteRequest {
            kind: command.kind,
            route,
            size: command.input.size.as_deref(),
            n: command.image_count(),
            estimated_tokens,
            tenant: command.tenant.as_str(),
            own_accounts: self.own_accounts,
            carried: command.carried(),
        };
        let disabled: Vec<(ConfigId, &str, Option<&str>)> = table
            .disabled
            .iter()
            .map(|(id, name, owner)| (*id, name.as_str(), owner.as_deref()))
            .collect();
        let counter = table.ticket();
        let seed = counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // A fallback chain of models (#18 §5) is planned model by model.
        let planned = plan_route(
            &request,
            &table.instances,
            &disabled,
            inner.clock.now_ms(),
            counter,
            seed,
        );
        let plan = match planned {
            Ok(plan) => plan,
            Err(NoProvider::UnknownConfig(what)) => {
                return self.failure(ErrorInfo::new(
                    ErrorCode::InvalidRequest,
                    format!("route.config_id {what} names no provider config"),
                ));
            }
            Err(NoProvider::None { message, skipped }) => {
                self.routing = Some(Routing {
                    strategy: route.strategy,
                    candidates: Vec::new(),
                    skipped,
                });
                return self.failure(ErrorInfo::new(ErrorCode::NoProvider, message));
            }
        };
        self.routing = Some(plan.routing());
        let max_attempts = usize::try_from(route.max_attempts).unwrap_or(1).max(1);
        let mut last_error: Option<(ErrorInfo, bool)> = None;
        let mut full: Vec<(&Instance, Option<u64>)> = Vec::new();
        let mut refused = 0usize;

        for instance in plan.candidates.iter().copied() {
            if self.attempts.len() >= max_attempts {
                break;
            }
            let span = tracing::info_span!("attempt", config_id = %instance.config.id);
            match self
                .offer(instance, false, wait_until)
                .instrument(span)
                .await
            {
                Offer::Rejected(reason, until) => {
                    self.skip(instance.config.id, reason, until);
                    refused += 1;
                    if reason == SkipReason::LimiterFull {
                        full.push((instance, until));
                    }
                }
                Offer::Done(result) => match self.conclude(instance, result).await {
                    Ok(done) => return done,
                    Err((error, retry)) => {
                        last_error = Some((error, retry));
                        if !retry {
                            break;
                        }
                    }
                },
            }
        }
        // Every remaining candidate was rate limited: wait for the earliest free slot,
        // in the instance's priority-ordered queue, up to the deadline.
        while last_error.as_ref().is_none_or(|(_, retry)| *retry)
            && self.attempts.len() < max_attempts
            && !full.is_empty()
        {
            let (index, _) = full
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, until))| until.unwrap_or(0))
                .unwrap_or((0, &full[0]));
            let (instance, _) = full.swap_remove(index);
            let span =
                tracing::info_span!("attempt", config_id = %instance.config.id, waited = true);
            match self
                .offer(instance, true, wait_until)
                .instrument(span)
                .await
            {
                Offer::Rejected(reason, until) => self.skip(instance.config.id, reason, until),
                Offer::Done(result) => match self.conclude(instance, result).await {
                    Ok(done) => return done,
                    Err(error) => last_error = Some(error),
                },
            }
        }
        match last_error {
            Some((error, _)) => self.failure(error),
            None if refused > 0
                && self.routing.as_ref().is_some_and(|r| {
                    r.skipped
                        .iter()
                        .any(|s| s.reason == SkipReason::LimiterFull)
                }) =>
            {
                self.failure(ErrorInfo::new(
                    ErrorCode::RateLimited,
                    "every candidate's rate limit stayed full until the deadline",
                ))
            }
            None => self.failure(ErrorInfo::new(
                ErrorCode::NoProvider,
                "every candidate refused the request (breaker open, cooling down or restarting)",
            )),
        }
    }

    /// Offers the call to one instance and, if admitted, waits for its outcome while
    /// forwarding streamed chunks.
    async fn offer(
        &mut self,
        instance: &Instance,
        may_wait: bool,
        wait_until: tokio::time::Instant,
    ) -> Offer {
        let Some(actor) = &instance.actor else {
            return Offer::Rejected(SkipReason::Failed, None);
        };
        let (admission_tx, admission_rx) = oneshot::channel();
        let (result_tx, result_rx) = oneshot::channel();
        let (updates_tx, mut updates) = mpsc::unbounded_channel();
        let attempt = u32::try_from(self.attempts.len() + 1).unwrap_or(u32::MAX);
        // The instance's presets fill in what the request leaves out (#18 §3).
        let command = instance
            .config
            .spec
            .defaults
            .apply(&self.command)
            .map_or_else(|| self.command.clone(), Arc::new);
        let tokens = if command.kind.is_image() {
            0
        } else {
            super::estimate::tokens(&command)
        };
        let call = CallRequest {
            request: AdapterRequest {
                command,
                attempt,
                inputs: self.inputs.clone(),
                updates: Some(updates_tx),
            },
            priority: u8::try_from(self.command.priority.clamp(1, 10)).unwrap_or(5),
            tokens,
            may_wait,
            wait_until,
            admission: admission_tx,
            result: result_tx,
        };
        if actor.cast(ProviderMsg::Call(Box::new(call))).is_err() {
            return Offer::Rejected(SkipReason::Failed, None);
        }
        match admission_rx.await {
            Err(_) => return Offer::Rejected(SkipReason::Failed, None),
            Ok(Admission::Rejected { reason, until_ms }) => {
                return Offer::Rejected(reason, until_ms);
            }
            Ok(Admission::Admitted) => {}
        }
        self.send(EventBody::Started {
            attempt,
            provider: provider_ref(&instance.config),
        });
        let started = tokio::time::Instant::now();
        let mut result_rx = result_rx;
        let result = loop {
            tokio::select! {
                biased;
                Some(update) = updates.recv() => self.update(instance, update),
                result = &mut result_rx => {
                    while let Ok(update) = updates.try_recv() {
                        self.update(instance, update);
                    }
                    break result;
                }
            }
        };
        let result = result.unwrap_or_else(|_| {
            Err(AttemptError::new(
                ErrorCode::ProviderUnavailable,
                "the provider instance crashed during the call",
            ))
        });
        self.attempts.push(Attempt {
            config_id: instance.config.id,
            outcome: if result.is_ok() {
                AttemptResult::Succeeded
            } else {
                AttemptResult::Failed
            },
            error_code: result.as_ref().err().map(|e| e.code),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        Offer::Done(result)
    }

    fn update(&mut self, instance: &Instance, update: AdapterUpdate) {
        match update {
            AdapterUpdate::Chunk(delta) => {
                let index = self.chunks;
                self.chunks += 1;
                self.send(EventBody::Chunk { index, delta });
            }
            AdapterUpdate::Progress(progress) => {
                self.send(EventBody::Progress {
                    progress,
                    provider: provider_ref(&instance.config),
                });
            }
        }
    }

    /// Turns an attempt's result into the terminal body (`Ok`), or the error and
    /// whether to try the next candidate (`Err`).
    async fn conclude(
        &mut self,
        instance: &Instance,
        result: Result<AdapterOutput, AttemptError>,
    ) -> Result<EventBody, (ErrorInfo, bool)> {
        let provider = provider_ref(&instance.config);
        match result {
            Err(error) => {
                let mut info = ErrorInfo::new(error.code, error.message);
                info.provider = Some(provider);
                // A stream that already delivered text cannot be replayed elsewhere.
                let retry =
                    error.code.is_retryable() && self.command.route.fallback && self.chunks == 0;
                Err((info, retry))
            }
            Ok(output) => {
                let mut images = Vec::with_capacity(output.images.len());
                for image in &output.images {
                    match self.engine.inner.artifacts.put(&image.bytes).await {
                        Ok(meta) => images.push(OutputImage {
                            url: self
                                .engine
                                .inner
                                .artifact_urls
                                .image_url(
                                    &meta.id,
                                    &self.command.tenant,
                                    self.engine.inner.clock.now_ms(),
                                )
                                .await,
                            artifact_id: meta.id,
                            mime: meta.mime,
                            bytes: meta.bytes,
                            sha256: meta.sha256,
                            width: meta.width,
                            height: meta.height,
                            seed: image.seed,
                            revised_prompt: image.revised_prompt.clone(),
                        }),
                        Err(e) => {
                            let code =
                                if matches!(e, crate::artifacts::ArtifactError::NotAnImage(_)) {
                                    ErrorCode::ProviderError
                                } else {
                                    ErrorCode::Internal
                                };
                            let mut info =
                                ErrorInfo::new(code, format!("cannot store the image: {e}"));
                            info.provider = Some(provider);
                            return Err((info, code.is_retryable() && self.command.route.fallback));
                        }
                    }
                }
                let count = u32::try_from(images.len()).unwrap_or(u32::MAX);
                let cost = instance.config.spec.cost.estimate(
                    count,
                    self.command.input.size.as_deref(),
                    output.input_tokens,
                    output.output_tokens,
                );
                self.raw = output.raw;
                Ok(EventBody::Completed {
                    output: Output {
                        images,
                        text: output.text,
                    },
                    usage: Usage {
                        images: count,
                        input_tokens: output.input_tokens,
                        output_tokens: output.output_tokens,
                        cost_usd: cost,
                    },
                    provider,
                    attempts: self.attempts.clone(),
                    routing: self.routing.clone(),
                    latency_ms: self.latency_ms(),
                    cached: false,
                    stale: false,
                })
            }
        }
    }
}

fn provider_ref(config: &ProviderConfig) -> ProviderRef {
    ProviderRef {
        config_id: config.id,
        name: config.spec.name.clone(),
        provider_type: config.spec.provider,
        model: config.spec.model.clone(),
    }
}
