//! The engine: one entry point used by the bus and by HTTP. Submit a command, get the
//! stream of its events (PROTOCOL.md §3): `seq` without gaps and exactly one terminal
//! event. Routing runs in the request's own task against the published routing table;
//! attempts go straight to provider actors; fallback follows the route's rules.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use chrono::Utc;
use ractor::{Actor, ActorRef};
use switchyard_core::{
    Attempt, AttemptResult, Command, ConfigId, ErrorCode, ErrorInfo, Event, EventBody, Lifecycle,
    Output, OutputImage, ProviderConfig, ProviderRef, Routing, SkipReason, Skipped, Usage,
    protocol::PROTOCOL_VERSION,
    routing::{NoProvider, RouteRequest, plan},
};
use switchyard_tasks::Tasks;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::{
    actors::{
        Admission, ApplyReport, BreakerOpened, CallRequest, Instance, InstanceStatus, ProviderMsg,
        RestartPolicy, RoutingTable, StartFailure, Supervisor, SupervisorArgs, SupervisorMsg,
    },
    artifacts::ArtifactStore,
    clock::Clock,
    providers::{AdapterOutput, AdapterRequest, AdapterUpdate, AttemptError, InputImages},
};

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where images are stored.
    pub artifacts: ArtifactStore,
    /// Base of artifact URLs in events, e.g. `http://127.0.0.1:8080`.
    pub artifact_base_url: String,
    /// How crashed provider actors are restarted.
    pub restart_policy: RestartPolicy,
    /// How long a request may wait for a rate-limit slot when it has no `deadline_ms`.
    pub default_wait: Duration,
    /// The WASM plugin host, for `wasm` provider configs (none: they cannot start).
    pub plugins: Option<Arc<crate::plugins::PluginRegistry>>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The supervisor actor could not be spawned.
    #[error("cannot start the supervisor: {0}")]
    Spawn(String),
    /// The supervisor did not answer.
    #[error("the supervisor did not answer: {0}")]
    Supervisor(String),
}

/// One command to run, whose task row the caller keeps.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The validated command.
    pub command: Arc<Command>,
    /// Where the request's events stand: new (nothing out yet) or resumed after the
    /// last `seq` its task row recorded. Every event the engine emits is built by it.
    pub lifecycle: Lifecycle,
    /// Emit `accepted` first, with this task row id; `None` when resuming a request
    /// another process accepted, or when the caller publishes `accepted` itself.
    pub announce: Option<i64>,
    /// Fail at once with this error, calling no provider: a request refused before it
    /// runs (a tenant over its quota).
    pub refuse: Option<ErrorInfo>,
    /// Complete at once with this earlier result (`cached: true`), calling no provider.
    pub cached: Option<CachedAnswer>,
}

/// An identical earlier request's result, answered instead of calling a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// What that request made (its images stay where they are stored).
    pub output: Output,
    /// The instance that made it.
    pub provider: ProviderRef,
}

impl Submission {
    /// A new request: `accepted` first, seq from 1.
    pub fn new(command: Arc<Command>, task_id: i64) -> Self {
        Self {
            lifecycle: Lifecycle::new(command.request_id.clone(), command.tenant.clone()),
            command,
            announce: Some(task_id),
            refuse: None,
            cached: None,
        }
    }
}

/// What a finished request leaves besides its events.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// The terminal event (also emitted).
    pub terminal: Event,
    /// The provider's raw answer (secrets removed), for the task row.
    pub raw_response: Option<serde_json::Value>,
}

/// The running engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Arc<ArcSwap<RoutingTable>>,
    supervisor: ActorRef<SupervisorMsg>,
    artifacts: ArtifactStore,
    base_url: String,
    clock: Clock,
    counter: AtomicU64,
    default_wait: Duration,
    breaker_notices: std::sync::Mutex<Option<mpsc::UnboundedReceiver<BreakerOpened>>>,
    plugins: Option<Arc<crate::plugins::PluginRegistry>>,
    /// Owns the requests started with [`Engine::submit`] and the provider calls.
    tasks: Tasks,
}

impl Engine {
    /// The WASM plugin host, if this engine has one.
    pub fn plugins(&self) -> Option<&Arc<crate::plugins::PluginRegistry>> {
        self.inner.plugins.as_ref()
    }

    /// Starts the supervisor and one provider actor per config in `configs`.
    /// Configs whose adapter cannot start are reported, not fatal.
    ///
    /// # Errors
    /// [`EngineError`] when the actor system itself cannot start.
    pub async fn start(
        configs: Vec<ProviderConfig>,
        disabled: Vec<(ConfigId, String)>,
        options: EngineOptions,
    ) -> Result<(Self, Vec<StartFailure>), EngineError> {
        let clock = Clock::new();
        let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let tasks = Tasks::new("engine");
        let (supervisor, _) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                table: table.clone(),
                clock,
                policy: options.restart_policy,
                breaker_notices: Some(notice_tx),
                plugins: options.plugins.clone(),
                calls: tasks.child("provider-calls"),
            },
        )
        .await
        .map_err(|e| EngineError::Spawn(e.to_string()))?;
        let engine = Self {
            inner: Arc::new(Inner {
                table,
                supervisor,
                artifacts: options.artifacts,
                base_url: options.artifact_base_url.trim_end_matches('/').to_owned(),
                clock,
                counter: AtomicU64::new(0),
                default_wait: options.default_wait,
                breaker_notices: std::sync::Mutex::new(Some(notice_rx)),
                plugins: options.plugins,
                tasks,
            }),
        };
        let report = engine.apply(configs, disabled).await?;
        Ok((engine, report.failures))
    }

    /// Makes the live instances match `configs` (the enabled, valid configs), touching
    /// only what changed. Requests in flight are never failed by it.
    ///
    /// # Errors
    /// [`EngineError::Supervisor`] when the supervisor is gone.
    pub async fn apply(
        &self,
        configs: Vec<ProviderConfig>,
        disabled: Vec<(ConfigId, String)>,
    ) -> Result<ApplyReport, EngineError> {
        ractor::call!(self.inner.supervisor, |reply| SupervisorMsg::Apply {
            configs: configs.into_iter().map(Arc::new).collect(),
            disabled,
            reply,
        })
        .map_err(|e| EngineError::Supervisor(e.to_string()))
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.inner.table.load_full()
    }

    /// The runtime clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Live status of every instance.
    pub fn status(&self) -> Vec<InstanceStatus> {
        let now = self.inner.clock.now_ms();
        self.inner
            .table
            .load()
            .instances
            .iter()
            .map(|i| i.status(now))
            .collect()
    }

    /// Runs a command in a new task; its events arrive on the returned channel, which
    /// closes after the terminal event.
    pub fn submit(&self, submission: Submission) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = self.clone();
        self.inner.tasks.spawn("request", async move {
            engine
                .execute(submission, &mut |event| {
                    let _ = tx.send(event);
                })
                .await;
        });
        rx
    }

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
            (None, Some(answer), _) => run.cached(answer),
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
        let code = match &terminal {
            EventBody::Failed { error, .. } => error.code.as_str(),
            _ => "ok",
        };
        metrics::counter!("switchyard_requests_total", "kind" => command.kind.as_str(), "code" => code).increment(1);
        let terminal = run.send(terminal);
        RequestOutcome {
            terminal,
            raw_response: run.raw,
        }
    }

    /// The stream of this process's breakers that open (taken once, by whoever
    /// announces them to other replicas).
    pub fn take_breaker_notices(&self) -> Option<mpsc::UnboundedReceiver<BreakerOpened>> {
        self.inner
            .breaker_notices
            .lock()
            .ok()
            .and_then(|mut n| n.take())
    }

    /// Another replica saw this instance's breaker open: route around it here too.
    pub fn mark_breaker_open(&self, notice: &BreakerOpened) {
        let table = self.inner.table.load();
        if let Some(instance) = table
            .instances
            .iter()
            .find(|i| i.config.id == notice.config_id && i.config.version == notice.version)
        {
            instance.state.set_remote_open_until(notice.until_ms);
        }
    }

    /// Tells every provider actor that `replicas` runtime processes share each
    /// account's `rpm`, `burst` and `max_concurrency`.
    pub fn set_replicas(&self, replicas: u32) {
        let _ = self
            .inner
            .supervisor
            .cast(SupervisorMsg::SetShare(replicas));
    }

    /// Stops every actor and cancels the requests and calls still running.
    pub fn shutdown(&self) {
        self.inner.supervisor.stop(None);
        self.inner.tasks.cancel();
    }

    /// Asks the supervisor for status (through its mailbox; mainly for tests that want
    /// to be sure earlier messages were handled).
    ///
    /// # Errors
    /// When the supervisor is gone.
    pub async fn supervisor_status(&self) -> Result<Vec<InstanceStatus>, EngineError> {
        ractor::call!(self.inner.supervisor, SupervisorMsg::Status)
            .map_err(|e| EngineError::Supervisor(e.to_string()))
    }
}

/// One request's progress.
struct Run<'a> {
    engine: &'a Engine,
    command: Arc<Command>,
    lifecycle: Lifecycle,
    emit: &'a mut (dyn FnMut(Event) + Send),
    attempts: Vec<Attempt>,
    routing: Option<Routing>,
    chunks: u32,
    accepted_at: tokio::time::Instant,
    raw: Option<serde_json::Value>,
    inputs: Arc<InputImages>,
}

/// How one offer to one instance ended.
enum Offer {
    Rejected(SkipReason, Option<u64>),
    Done(Result<AdapterOutput, AttemptError>),
}

impl Run<'_> {
    /// Emits the next event, as the lifecycle numbers it. An event the lifecycle
    /// refuses (a broken rule: a bug, never input) is logged, counted and not emitted.
    fn send(&mut self, body: EventBody) -> Event {
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
    fn cached(&mut self, answer: CachedAnswer) -> EventBody {
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
            attempts: Vec::new(),
            routing: None,
            latency_ms: self.latency_ms(),
            cached: true,
        }
    }

    fn failure(&self, error: ErrorInfo) -> EventBody {
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
    async fn attempt_all(&mut self, wait_until: tokio::time::Instant) -> EventBody {
        if self.command.input.images.is_some() || self.command.input.mask.is_some() {
            match crate::inputs::resolve(&self.command, &self.engine.inner.artifacts).await {
                Ok(inputs) => self.inputs = Arc::new(inputs),
                Err(error) => return self.failure(error),
            }
        }
        let inner = &self.engine.inner;
        let table = inner.table.load_full();
        let command = self.command.clone();
        let route = &command.route;
        let estimated_tokens = estimate_tokens(&command);
        let request = RouteRequest {
            kind: command.kind,
            route,
            size: command.input.size.as_deref(),
            n: command.image_count(),
            estimated_tokens,
        };
        let disabled: Vec<(ConfigId, &str)> = table
            .disabled
            .iter()
            .map(|(id, name)| (*id, name.as_str()))
            .collect();
        let counter = inner.counter.fetch_add(1, Ordering::Relaxed);
        let seed = counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let plan = match plan(
            &request,
            &table.instances,
            &disabled,
            inner.clock.now_ms(),
            counter,
            seed,
        ) {
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
        let call = CallRequest {
            request: AdapterRequest {
                command: self.command.clone(),
                attempt,
                inputs: self.inputs.clone(),
                updates: Some(updates_tx),
            },
            priority: u8::try_from(self.command.priority.clamp(1, 10)).unwrap_or(5),
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
                            url: format!("{}/v1/artifacts/{}", self.engine.inner.base_url, meta.id),
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

fn estimate_tokens(command: &Command) -> u64 {
    let input = &command.input;
    let chars: usize = input
        .messages
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|m| m.content.len())
        .sum::<usize>()
        + input.system.as_deref().map_or(0, str::len);
    (chars as u64).div_ceil(4)
        + input
            .max_tokens
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(256)
}

#[cfg(test)]
mod tests;
