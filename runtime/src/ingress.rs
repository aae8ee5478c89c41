//! Ingress: turns delivered commands into tasks, runs them on the engine and publishes
//! their events, with the guarantees of PROTOCOL.md §3:
//!
//! - A command is acked only after its terminal event is published and its task row
//!   is durable. Order: task row → events, and the terminal row (the single terminal
//!   transition decides who publishes) while their stream acks come in → terminal
//!   event → ack.
//! - Idempotency on `(tenant, request_id)`: a duplicate of a finished command runs
//!   nothing; its stored terminal event goes to its `reply_to` only (and to the event
//!   subjects only if a crash had kept it from ever getting there). A command whose task
//!   was mid-flight when a process died is resumed, continuing the event sequence.
//! - Bad input never crashes or blocks the consumer: unparseable → DLQ and terminated;
//!   parseable but invalid → exactly one `failed` event with `invalid_request`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_core::{
    Command, CommandEnvelope, ErrorCode, ErrorInfo, Event, EventBody, protocol::PROTOCOL_VERSION,
};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::{
    bus::{Bus, BusError, Delivery},
    engine::{CachedAnswer, Engine, Submission},
    quota::{Ask, Quotas},
    store::{
        Completion, Failure, GroupCommit, NewTask, NewTaskResult, Store, StoreError, StoredJson,
        Task, TaskInsert, TaskStatus, UsageRecord,
    },
};

/// Why a delivery could not be handled now (it is nak'ed and comes back).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Deliveries of one command before it is given up (sent to the DLQ); below the
/// consumer's own `max_deliver`, so the DLQ always learns of it.
const MAX_DELIVERIES: u64 = 15;

/// How old a result may be to answer a `cache: true` command.
pub const CACHE_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

enum Disposition {
    Ack,
    Term,
}

/// Handles commands, whatever bus they came on.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    /// Reads (cached results).
    store: Store,
    /// Group commit of the task writes (one writer task per handler).
    writes: GroupCommit,
    quotas: Quotas,
    engine: Engine,
    bus: Bus,
    progress_every: Duration,
}

impl CommandHandler {
    /// A handler over a store, an engine and a bus.
    pub fn new(store: Store, engine: Engine, bus: Bus) -> Self {
        Self {
            quotas: Quotas::new(store.clone()),
            writes: GroupCommit::start(store.clone()),
            store,
            engine,
            bus,
            progress_every: Duration::from_secs(10),
        }
    }

    /// Checks quotas with this checker (shared with the admin API, which tells it
    /// when quotas change).
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Sends in-progress acks this often while a command runs (keep it well below the
    /// consumer's ack wait).
    pub fn with_progress_every(mut self, every: Duration) -> Self {
        self.progress_every = every.max(Duration::from_millis(100));
        self
    }

    /// Handles one delivery and acknowledges it (ack, term, or nak on failure).
    pub async fn handle(&self, delivery: Delivery) {
        let result = {
            let work = self.process(&delivery);
            tokio::pin!(work);
            let mut ticker = tokio::time::interval(self.progress_every);
            ticker.tick().await;
            loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = ticker.tick() => delivery.progress().await,
                }
            }
        };
        match result {
            Ok(Disposition::Ack) => delivery.ack().await,
            Ok(Disposition::Term) => delivery.term().await,
            Err(error) if delivery.delivered >= MAX_DELIVERIES => {
                tracing::error!(%error, subject = %delivery.subject, deliveries = delivery.delivered,
                    "command given up after repeated failures; sent to the DLQ");
                let reason = format!("gave up after {} deliveries: {error}", delivery.delivered);
                if let Err(e) = self
                    .bus
                    .publish_dlq(&delivery.subject, &delivery.payload, &reason)
                    .await
                {
                    tracing::error!(error = %e, "DLQ publish failed");
                }
                delivery.term().await;
            }
            Err(error) => {
                tracing::warn!(%error, subject = %delivery.subject, "command not handled; it will be redelivered");
                let backoff = Duration::from_millis(250 * (1 << delivery.delivered.min(5)));
                delivery.nak(Some(backoff)).await;
            }
        }
    }

    async fn process(&self, delivery: &Delivery) -> Result<Disposition, HandleError> {
        let envelope = match CommandEnvelope::parse(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::warn!(subject = %delivery.subject, %reason, "unparseable command sent to the DLQ");
                metrics::counter!("switchyard_commands_dlq_total").increment(1);
                self.bus
                    .publish_dlq(&delivery.subject, &delivery.payload, &reason)
                    .await?;
                return Ok(Disposition::Term);
            }
        };
        let subject_kind = self
            .bus
            .subjects()
            .kind_of_command_subject(&delivery.subject);
        let kind_token = delivery
            .subject
            .strip_prefix(&format!("{}.cmd.", self.bus.subjects().prefix()))
            .unwrap_or("unknown")
            .to_owned();
        let parsed: Result<Command, String> = match subject_kind {
            None => Err(format!("'{}' is not a command subject", delivery.subject)),
            Some(Err(e)) => Err(e),
            Some(Ok(kind)) => Command::parse_and_validate(&delivery.payload, Some(kind))
                .map_err(|e| e.to_string()),
        };
        let command = match parsed {
            Ok(command) => command,
            Err(message) => return self.reject(&envelope, &kind_token, delivery, message).await,
        };
        // The idempotency check: the insert tells a new request from a duplicate.
        let new_task = NewTask::from_command(&command);
        let cache_key = new_task.cache_key.clone();
        let (task, resumed) = match self.writes.create_task(new_task).await? {
            TaskInsert::Created(task) => (task, false),
            TaskInsert::Existing(task) => (task, true),
        };
        if task.status.is_terminal() {
            self.replay(&task, &envelope).await?;
            return Ok(Disposition::Ack);
        }
        self.run(&task, command, resumed, cache_key.as_deref())
            .await?;
        Ok(Disposition::Ack)
    }

    /// A command that parses but is invalid: stored, and one `failed` event.
    async fn reject(
        &self,
        envelope: &CommandEnvelope,
        kind_token: &str,
        delivery: &Delivery,
        message: String,
    ) -> Result<Disposition, HandleError> {
        let new_task = NewTask::invalid(
            envelope.request_id.as_str(),
            envelope.tenant.as_str(),
            kind_token,
            &delivery.payload,
        );
        let task = match self.writes.create_task(new_task).await? {
            TaskInsert::Created(task) | TaskInsert::Existing(task) => task,
        };
        if task.status.is_terminal() {
            self.replay(&task, envelope).await?;
            return Ok(Disposition::Ack);
        }
        let event = Event {
            v: PROTOCOL_VERSION,
            request_id: envelope.request_id.clone(),
            tenant: envelope.tenant.clone(),
            seq: u64::try_from(task.last_seq).unwrap_or(0) + 1,
            time: chrono::Utc::now(),
            body: EventBody::Failed {
                error: ErrorInfo::new(ErrorCode::InvalidRequest, message),
                attempts: Vec::new(),
                routing: None,
                latency_ms: 0,
                chunks_delivered: None,
            },
        };
        let encoded = StoredJson::encode(&event).map_err(BusError::Encode)?;
        let won = self
            .writes
            .fail_task(Failure {
                id: task.id,
                config_id: None,
                attempts: 0,
                code: ErrorCode::InvalidRequest,
                message: error_message(&event).to_owned(),
                terminal_event: encoded.clone(),
            })
            .await?;
        if won {
            self.publish_terminal(&event, &encoded, envelope.reply_to.as_deref())
                .await?;
        }
        Ok(Disposition::Ack)
    }

    /// A duplicate of a finished command: runs nothing.
    async fn replay(&self, task: &Task, envelope: &CommandEnvelope) -> Result<(), HandleError> {
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

    /// Runs a command on the engine and publishes its events. The terminal row is
    /// written as soon as the engine is done, while the stream acks of the lifecycle
    /// events are still coming; the terminal event goes out once both are in.
    ///
    /// `cache_key` is the command's [`crate::store::cache_key`] when it has `cache: true`.
    async fn run(
        &self,
        task: &Task,
        command: Command,
        resumed: bool,
        cache_key: Option<&str>,
    ) -> Result<(), HandleError> {
        let command = Arc::new(command);
        let reply_to = command.reply_to.clone();
        // A new task starts its events at 1 (`accepted`); a resumed one continues after
        // the last recorded.
        let (first_seq, announce) = if resumed {
            (u64::try_from(task.last_seq).unwrap_or(0), None)
        } else {
            (0, Some(task.id))
        };
        // Before a request's first attempt — for a new task, and for one stored but
        // never started (a job posted over HTTP, or a crash before the first attempt)
        // — a `cache: true` command may be answered from an identical earlier request,
        // and otherwise its tenant's quotas are checked. A task resumed mid-flight was
        // admitted already.
        let (mut refuse, mut cached) = (None, None);
        if task.status == TaskStatus::Pending {
            if let Some(key) = cache_key {
                cached = self.cached_answer(command.tenant.as_str(), key).await?;
                let outcome = if cached.is_some() { "hit" } else { "miss" };
                metrics::counter!("switchyard_cache_lookups_total", "outcome" => outcome)
                    .increment(1);
            }
            if cached.is_none() {
                refuse = self
                    .quotas
                    .check(Ask {
                        tenant: command.tenant.as_str(),
                        user: command.user.as_deref(),
                        images: command.images_asked(),
                    })
                    .await?
                    .map(|message| ErrorInfo::new(ErrorCode::QuotaExceeded, message));
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let submission = Submission {
            command: command.clone(),
            first_seq,
            announce,
            refuse,
            cached,
        };
        let engine = &self.engine;
        let execute = async move {
            let mut emit = move |event: Event| {
                let _ = tx.send(event);
            };
            engine.execute(submission, &mut emit).await
        };
        let publish = async {
            let mut pending = Vec::new();
            let mut failure: Option<BusError> = None;
            while let Some(event) = rx.recv().await {
                if event.is_terminal() {
                    continue;
                }
                if let EventBody::Started { attempt, provider } = &event.body
                    && let Err(e) = self.writes.record_start(
                        task.id,
                        provider.config_id,
                        i64::from(*attempt),
                        i64::try_from(event.seq).unwrap_or(0),
                    )
                {
                    tracing::warn!(error = %e, "cannot record the attempt start");
                }
                // Sent in order without waiting for each stream ack; the acks are
                // awaited together before the terminal event is published.
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
        };
        // The terminal row is written as soon as the engine is done, alongside the
        // publishing of the lifecycle events.
        let finish = async {
            let outcome = execute.await;
            let terminal = outcome.terminal;
            // Encoded once: the same bytes go to the row, the event stream and `reply_to`.
            let encoded = StoredJson::encode(&terminal).map_err(BusError::Encode)?;
            let won = self
                .write_terminal(task.id, &command, &terminal, &encoded, outcome.raw_response)
                .await?;
            Ok::<_, HandleError>((terminal, encoded, won))
        };
        let (published, finished) = tokio::join!(publish, finish);
        // Lifecycle events that did not all go out: no terminal event now; the command
        // comes back, and its redelivery publishes the stored terminal event.
        published?;
        let (terminal, encoded, won) = finished?;
        if won {
            if let EventBody::Completed {
                usage,
                cached: false,
                ..
            } = &terminal.body
            {
                self.quotas.record(
                    command.tenant.as_str(),
                    command.user.as_deref(),
                    i64::from(usage.images),
                    usage.cost_usd,
                );
            }
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

    /// The result of the latest identical request of the tenant that completed within
    /// [`CACHE_MAX_AGE`], if any.
    async fn cached_answer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<CachedAnswer>, HandleError> {
        let since = chrono::Utc::now() - CACHE_MAX_AGE;
        let Some(stored) = self.store.cached_result(tenant, key, since).await? else {
            return Ok(None);
        };
        Ok(match serde_json::from_value::<Event>(stored) {
            Ok(Event {
                body:
                    EventBody::Completed {
                        output, provider, ..
                    },
                ..
            }) => Some(CachedAnswer { output, provider }),
            _ => None,
        })
    }

    /// Writes the terminal row (with results and usage); true if this run's
    /// transition won.
    async fn write_terminal(
        &self,
        task: i64,
        command: &Command,
        terminal: &Event,
        encoded: &StoredJson,
        raw_response: Option<serde_json::Value>,
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
                let usage_row = UsageRecord {
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
                };
                self.writes
                    .complete_task(Completion {
                        id: task,
                        config_id: Some(provider.config_id),
                        attempts: i64::try_from(attempts.len()).unwrap_or(0),
                        raw_response,
                        results,
                        terminal_event: encoded.clone(),
                        // A cached answer used no provider: nothing to count.
                        usage: (!cached).then_some(usage_row),
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
                    })
                    .await?
            }
            _ => false,
        };
        Ok(won)
    }

    async fn publish_terminal(
        &self,
        event: &Event,
        encoded: &StoredJson,
        reply_to: Option<&str>,
    ) -> Result<(), HandleError> {
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

fn error_message(event: &Event) -> &str {
    match &event.body {
        EventBody::Failed { error, .. } => &error.message,
        _ => "",
    }
}

/// Whether the command consumer is live (for `/readyz`).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// Pulls commands and handles up to `concurrency` at once until `shutdown` turns true;
/// then stops pulling, naks what was pulled but not started, and waits for running
/// commands to finish.
///
/// # Errors
/// [`BusError`] when the consumer cannot be created.
pub async fn run_ingress(
    handler: CommandHandler,
    concurrency: usize,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut deliveries = handler.bus.commands().await?;
    readiness.set(true);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            delivery = deliveries.next() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let handler = handler.clone();
        running.spawn(async move {
            handler.handle(delivery).await;
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    readiness.set(false);
    // Pulled but not started: hand back for redelivery. Only what is already buffered
    // (a short window), and with a delay, so the handed-back commands cannot come
    // straight back to this stopping consumer.
    let window = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(delivery)) = tokio::time::timeout_at(window, deliveries.next()).await {
        delivery.nak(Some(Duration::from_secs(1))).await;
    }
    while running.join_next().await.is_some() {}
    Ok(())
}
