//! The request pipeline: every request, whatever it came in on (a NATS command,
//! `POST /v1/jobs`, an OpenAI-compatible call, the demo), takes the one path
//!
//! ```text
//! intake → persist → admit → run → settle
//! ```
//!
//! - [`intake`]: pulls deliveries from the bus (up to a concurrency limit) and
//!   acknowledges each exactly once: ack, term, or nak with backoff (DLQ at the end).
//! - [`persist`]: the task row, written through the group-commit writer; its insert is
//!   the idempotency check on `(tenant, request_id)`.
//! - [`admit`]: the one seam for tenant policy before the first attempt (cache,
//!   quotas; per-tenant limits, `reply_to` rules and priority lanes go here).
//! - [`run`]: the engine executes the request while its lifecycle events go out.
//! - [`settle`]: the single terminal transition, then the terminal event.
//! - `call`: a synchronous call (its client waits on the connection) runs on this
//!   process's engine with no bus round trip and no row first; `write_behind` writes
//!   its record after the answer.
//! - `standby`: a delivery of a task another run holds waits for that run.
//! - `give_up`: a command whose deliveries ran out (a long database outage) or whose
//!   values the database refused for good still gets its one terminal event.
//!
//! Invariants (PROTOCOL.md §3):
//! - Only the pipeline builds events, each through a [`switchyard_core::Lifecycle`]
//!   (`seq` without gaps, one terminal event), and only the pipeline writes task rows,
//!   always through the group-commit writer.
//! - A command is acked only after its terminal event is published and its task row
//!   is durable. Order: task row → events, and the terminal row (the single terminal
//!   transition decides who publishes) while their stream acks come in → terminal
//!   event → ack.
//! - Idempotency on `(tenant, request_id)`: a duplicate of a finished command runs
//!   nothing; its stored terminal event goes to its `reply_to` only (and to the event
//!   subjects only if a crash had kept it from ever getting there). A command whose task
//!   was mid-flight when a process died is resumed, continuing the event sequence.
//! - Bad input never crashes or blocks the consumer: unparseable → DLQ and terminated;
//!   parseable but invalid → exactly one `failed` event with `invalid_request`; a value
//!   the database refuses for good (a permanent error, not an outage) → the same,
//!   acked at once instead of retried.
//! - A command that fails at every delivery (a database outage longer than the
//!   backoff spans) ends with one `failed` event (`internal`, retryable) after the last
//!   event its subscribers saw, then goes to the DLQ; the failure reaches its task row
//!   once the database answers.

mod admit;
mod batch;
mod blocked;
mod cache_tier;
mod cached;
mod call;
mod enqueue;
mod fair;
mod flight;
mod give_up;
mod intake;
mod persist;
mod run;
mod settle;
mod standby;
mod write_behind;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use switchyard_core::{
    Command, CommandEnvelope, ErrorCode, ErrorInfo, LifecycleError, ReplyToPolicy,
};
use switchyard_tasks::Tasks;

use crate::{
    bus::{Bus, BusError, Delivery},
    engine::Engine,
    limits::Limits,
    quota::Quotas,
    settings::OverLimit,
    store::{GroupCommit, GroupCommitError, NewTask, QueryError, Store, TaskInsert, TenantLimits},
    templates::{TemplateError, Templates},
};

pub use admit::STALE_MAX_AGE;

/// How far intake pulls ahead of the commands running: the commands it holds, pulled
/// but not started, are ordered by priority (then tenants in turn), so an urgent
/// command behind up to this many starts at the next free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeWindow {
    /// Commands held at most.
    pub count: usize,
    /// Their bytes at most.
    pub bytes: usize,
}

impl Default for IntakeWindow {
    fn default() -> Self {
        Self {
            count: 8192,
            bytes: 64 << 20,
        }
    }
}
pub use batch::BatchStepError;
pub use call::CallError;
pub use enqueue::{EnqueueError, Enqueued};
pub use intake::{Readiness, run_intake};
pub use write_behind::ShuttingDown;

impl Pipeline {
    /// The `<kind>` token of a command subject, as sent (`unknown` for another
    /// subject): what an invalid command's task row records as its kind.
    fn kind_token(&self, subject: &str) -> String {
        subject
            .strip_prefix(self.bus.subjects().prefix())
            .and_then(|rest| rest.strip_prefix(".cmd."))
            .unwrap_or("unknown")
            .to_owned()
    }

    /// For a body that may name a template: the command its task stored, if the task
    /// exists (a redelivery is not rendered again); `None` otherwise.
    async fn stored_render(
        &self,
        envelope: &switchyard_core::CommandEnvelope,
        payload: &[u8],
    ) -> Result<Option<Command>, HandleError> {
        if !crate::templates::may_name_a_template(payload) {
            return Ok(None);
        }
        let Some(task) = self
            .store
            .find_task(&envelope.tenant, &envelope.request_id)
            .await?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_str::<Command>(task.command.get()).ok())
    }

    /// The claim of run `run` on task `id`, for one lease from now.
    fn claim(&self, id: i64, run: &str) -> crate::store::Claim {
        let now = chrono::Utc::now().timestamp_millis();
        crate::store::Claim {
            id,
            owner: run.to_owned(),
            until_ms: now + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2),
            now_ms: now,
        }
    }
}

/// Why a delivery could not be handled now (it is nak'ed and comes back).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] QueryError),
    /// A write through the group commit failed, or its writer stopped.
    #[error(transparent)]
    Writer(#[from] GroupCommitError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A task row's state allows no such event (a stored row out of step).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

impl HandleError {
    /// The permanent refusal behind this error, if the database refused a write's
    /// values for good: retrying the command cannot help.
    fn refusal(&self) -> Option<crate::store::Refusal> {
        match self {
            HandleError::Store(e) => e.refusal(),
            HandleError::Writer(e) => e.refusal(),
            HandleError::Bus(_) | HandleError::Lifecycle(_) => None,
        }
    }
}

/// Deliveries of one command before it is given up (sent to the DLQ); below the
/// consumer's own `max_deliver`, so the DLQ always learns of it.
const MAX_DELIVERIES: u64 = 15;

/// The first redelivery's backoff; each later one doubles it (up to 2^5 times, or 2^8
/// times while the database is down).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

enum Disposition {
    Ack,
    Term,
    /// Another run held the task's claim for as long as a delivery stands by: deliver
    /// again after this long.
    Busy(Duration),
}

/// The pipeline, whatever bus the commands come on. Cheap to clone: one reference
/// count (every synchronous call and command run takes a clone).
#[derive(Debug, Clone)]
pub struct Pipeline {
    parts: Arc<Parts>,
}

impl std::ops::Deref for Pipeline {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

/// What a [`Pipeline`] holds.
#[derive(Debug, Clone)]
pub struct Parts {
    /// Reads (cached results).
    store: Store,
    /// Group commit of the task writes (one writer task per handler).
    writes: GroupCommit,
    quotas: Quotas,
    /// Per-tenant limits at intake and on synchronous calls.
    limits: Limits,
    /// What a bus command over its tenant's limits does.
    over_limit: OverLimit,
    /// The longest a bus command waits for its tenant's turn.
    max_wait: Duration,
    /// How much intake pulls ahead of what runs.
    intake_window: IntakeWindow,
    engine: Engine,
    bus: Bus,
    progress_every: Duration,
    /// Which `reply_to` subjects commands may name.
    reply_to: Arc<ReplyToPolicy>,
    /// This process's part of the names in task claims (each run adds its own).
    owner: Arc<str>,
    /// How long a claim lasts unless renewed (renewed every third of it).
    lease: Duration,
    /// Told whether the database answers (for `/readyz`).
    readiness: Readiness,
    /// Deliveries of one command before it is given up.
    max_deliveries: u64,
    /// The first redelivery's backoff.
    first_backoff: Duration,
    /// The longest a delivery waits for another run of its task.
    max_standby: Duration,
    /// Owns the background writes of given-up commands' failures, synchronous calls
    /// and the write-behind worker.
    tasks: Tasks,
    /// The queue of synchronous calls' records, started with the first call.
    write_behind: Arc<OnceLock<write_behind::WriteBehind>>,
    /// Prompt templates, rendered at intake.
    templates: Templates,
    /// The in-memory tier of the answer cache, and its lifetimes per kind.
    cache_tier: cache_tier::CacheTier,
    /// `cache: true` requests in flight, each run once.
    flights: Arc<flight::Flights>,
}

impl Pipeline {
    /// The prompt templates commands are rendered with (the jobs API renders with the
    /// same, and the admin API tells it of changes).
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// A pipeline over a store, an engine and a bus, checking `quotas` (a checker
    /// shared with the admin API, which tells it when quotas change). It starts the
    /// group-commit writer that every task write goes through.
    pub fn new(store: Store, engine: Engine, bus: Bus, quotas: Quotas) -> Self {
        let limits = Limits::new(store.clone(), TenantLimits::default(), engine.clock());
        let parts = Parts {
            templates: Templates::new(store.clone()),
            quotas,
            limits,
            over_limit: OverLimit::default(),
            max_wait: Duration::from_secs(30),
            intake_window: IntakeWindow::default(),
            writes: GroupCommit::start(store.clone()),
            store,
            engine,
            reply_to: Arc::new(ReplyToPolicy::new(bus.subjects().prefix(), Vec::new())),
            bus,
            progress_every: Duration::from_secs(10),
            owner: crate::secrets::random_alphanumeric(16).into(),
            lease: Duration::from_secs(30),
            readiness: Readiness::default(),
            max_deliveries: MAX_DELIVERIES,
            first_backoff: FIRST_BACKOFF,
            max_standby: standby::MAX_STANDBY,
            tasks: Tasks::new("pipeline"),
            write_behind: Arc::default(),
            cache_tier: cache_tier::CacheTier::new(crate::settings::CacheSettings::default()),
            flights: Arc::default(),
        };
        Self {
            parts: Arc::new(parts),
        }
    }

    /// Its parts, to set while it is built (copied if a clone shares them).
    fn parts_mut(&mut self) -> &mut Parts {
        Arc::make_mut(&mut self.parts)
    }

    /// Holds tenants to `limits` (default: none): bus commands at intake, where one
    /// over them waits at most `max_wait` or fails at once (`over_limit`), and
    /// synchronous calls, which are refused at once.
    pub fn with_limits(
        mut self,
        limits: Limits,
        over_limit: OverLimit,
        max_wait: Duration,
    ) -> Self {
        let parts = self.parts_mut();
        parts.limits = limits;
        parts.over_limit = over_limit;
        parts.max_wait = max_wait;
        self
    }

    /// Lets intake pull up to `window` commands ahead of those running (default 8,192
    /// and 64 MiB), so that an urgent one behind that many starts next.
    pub fn with_intake_window(mut self, window: IntakeWindow) -> Self {
        self.parts_mut().intake_window = window;
        self
    }

    /// Gives a command up after this many deliveries that failed (default 15): its
    /// `failed` event goes out and it goes to the DLQ. Keep it below the consumer's
    /// `max_deliver`, or the bus drops the command before the pipeline gives it up.
    pub fn with_max_deliveries(mut self, deliveries: u64) -> Self {
        self.parts_mut().max_deliveries = deliveries.max(1);
        self
    }

    /// The backoff before the first redelivery of a command that failed (default
    /// 250 ms); each later one doubles it.
    pub fn with_first_backoff(mut self, backoff: Duration) -> Self {
        self.parts_mut().first_backoff = backoff;
        self
    }

    /// The longest a delivery of a task another run holds waits for that run (default
    /// 10 min) before it is delivered again later.
    pub fn with_max_standby(mut self, standby: Duration) -> Self {
        self.parts_mut().max_standby = standby;
        self
    }

    /// The write-behind queue of synchronous calls, its worker started on first use
    /// (after the builders, so in the pipeline's final tasks).
    fn write_behind(&self) -> &write_behind::WriteBehind {
        self.write_behind
            .get_or_init(|| write_behind::WriteBehind::start(self))
    }

    /// Waits, at most `grace`, until the record of every synchronous call answered so
    /// far is written. Call it at shutdown once no new call can come, before the
    /// pipeline's tasks stop. Returns whether all were written in time.
    pub async fn drain_calls(&self, grace: Duration) -> bool {
        match self.write_behind.get() {
            Some(queue) => queue.drain(grace).await,
            None => true,
        }
    }

    /// Runs the pipeline's background work (recording given-up commands once the
    /// database answers) as a child of `tasks`, so it stops when they shut down.
    pub fn with_tasks(mut self, tasks: &Tasks) -> Self {
        self.parts_mut().tasks = tasks.child("pipeline");
        self
    }

    /// Reports database failures of the pipeline's writes to `readiness` (so `/readyz`
    /// answers 503 while the database is down and load balancers move traffic away).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.parts_mut().readiness = readiness;
        self
    }

    /// With the answer cache's lifetimes per kind and in-memory tier (`[cache]`).
    #[must_use]
    pub fn with_cache(mut self, settings: crate::settings::CacheSettings) -> Self {
        self.parts_mut().cache_tier = cache_tier::CacheTier::new(settings);
        self
    }

    /// How long this pipeline's claim on a running task lasts unless renewed (it is
    /// renewed every third of it while the task runs). Use the bus's ack wait: a
    /// redelivery that finds a live claim waits, one that finds a lapsed claim (the
    /// process is gone) resumes the task.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.parts_mut().lease = lease.max(Duration::from_millis(300));
        self
    }

    /// Lets commands reply to subjects matching these filters (NATS wildcards), besides
    /// `_INBOX.…` (PROTOCOL.md §2).
    pub fn with_reply_to_allow(mut self, allow: Vec<String>) -> Self {
        let policy = ReplyToPolicy::new(self.bus.subjects().prefix(), allow);
        self.parts_mut().reply_to = Arc::new(policy);
        self
    }

    /// The per-tenant limiter (told by the admin API when limits change).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The `reply_to` rules commands are held to.
    pub fn reply_to_policy(&self) -> &ReplyToPolicy {
        &self.reply_to
    }

    /// Sends in-progress acks this often while a command runs (keep it well below the
    /// consumer's ack wait).
    pub fn with_progress_every(mut self, every: Duration) -> Self {
        self.parts_mut().progress_every = every.max(Duration::from_millis(100));
        self
    }

    /// Handles one delivery and acknowledges it (ack, term, or nak on failure).
    pub async fn handle(&self, delivery: Delivery) {
        self.handle_with(delivery, None).await;
    }

    /// Handles a delivery over its tenant's limits: it fails with `rate_limited`
    /// (through the whole pipeline: its row, its one `failed` event, its ack).
    pub(super) async fn handle_limited(&self, delivery: Delivery, message: String) {
        let refuse = ErrorInfo::new(ErrorCode::RateLimited, message);
        self.handle_with(delivery, Some(refuse)).await;
    }

    async fn handle_with(&self, delivery: Delivery, refuse: Option<ErrorInfo>) {
        let result = {
            let work = self.process(&delivery, refuse);
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
        // A refusal of the command's values is an answer: the database is up.
        let store_failed = matches!(&result, Err(e @ (HandleError::Store(_) | HandleError::Writer(_))) if e.refusal().is_none());
        self.readiness.set_store_down(store_failed);
        match result {
            Ok(Disposition::Ack) => delivery.ack().await,
            Ok(Disposition::Term) => delivery.term().await,
            Ok(Disposition::Busy(after)) => {
                tracing::debug!(subject = %delivery.subject, "the task runs elsewhere; delivered again later");
                delivery.nak(Some(after)).await;
            }
            // The database refused the command's values for good: a retry cannot help.
            Err(error) if let Some(refusal) = error.refusal() => {
                self.refuse(delivery, &error, &refusal).await;
            }
            Err(error) if delivery.delivered >= self.max_deliveries => {
                self.give_up(delivery, error).await;
            }
            Err(error) => {
                tracing::warn!(%error, subject = %delivery.subject, "command not handled; it will be redelivered");
                // A database outage gets a longer backoff (up to ~1 min, so the
                // deliveries span ~15 min of it); other failures retry sooner.
                let cap = if store_failed { 8 } else { 5 };
                let doublings = u32::try_from(delivery.delivered.min(cap)).unwrap_or(8);
                let backoff = self.first_backoff.saturating_mul(1 << doublings);
                delivery.nak(Some(backoff)).await;
            }
        }
    }

    /// `refuse`: intake refused the command already (its tenant is over a limit).
    async fn process(
        &self,
        delivery: &Delivery,
        refuse: Option<ErrorInfo>,
    ) -> Result<Disposition, HandleError> {
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
        let kind_token = self.kind_token(&delivery.subject);
        // A refused reply_to fails the request, and that failure goes to the event
        // stream only: nothing is ever published to the refused subject.
        if let Some(reply_to) = &envelope.reply_to
            && let Err(why) = self.reply_to.check(reply_to)
        {
            let envelope = CommandEnvelope {
                reply_to: None,
                ..envelope
            };
            let message = format!("reply_to: {why}");
            return self.reject(&envelope, &kind_token, delivery, message).await;
        }
        let parsed: Result<Command, String> = match subject_kind {
            None => Err(format!("'{}' is not a command subject", delivery.subject)),
            Some(Err(e)) => Err(e),
            // A template it names is rendered here, before the task row is written;
            // a redelivery of a task that exists runs the command as it was stored
            // (rendered once, whatever the template became since).
            Some(Ok(kind)) => match self.stored_render(&envelope, &delivery.payload).await? {
                Some(stored) => Ok(stored),
                None => match self
                    .templates
                    .parse_command(&delivery.payload, Some(kind))
                    .await
                {
                    Ok(command) => Ok(command),
                    Err(TemplateError::Invalid(message)) => Err(message),
                    Err(TemplateError::Database(e)) => return Err(e.into()),
                },
            },
        };
        let command = match parsed {
            Ok(command) => command,
            Err(message) => return self.reject(&envelope, &kind_token, delivery, message).await,
        };
        // One process runs a task at a time: the same command delivered twice (no
        // message id, or a redelivery while the first process still runs it) stands
        // by until that run ends or its lease lapses.
        // A new row is inserted already claimed by this run; an existing one is
        // claimed with a write of its own.
        let run = format!("{}-{}", self.owner, crate::secrets::random_alphanumeric(8));
        let new_claim = self.claim(0, &run);
        // The idempotency check: the insert tells a new request from a duplicate.
        let new_task =
            NewTask::from_command(&command).claimed_by(new_claim.owner, new_claim.until_ms);
        let cache_key = new_task.cache_key.clone();
        let inserted = match self.writes.create_task(new_task).await {
            // The database refused the command's values for good: an invalid request,
            // stored as one (its raw body, which the database takes as it is).
            Err(error) if let Some(refusal) = error.refusal() => {
                metrics::counter!("switchyard_commands_refused_by_database_total", "kind" => refusal.kind.as_str())
                    .increment(1);
                tracing::warn!(%error, code = %refusal.code, "the database refused the command's values for good");
                let message = match NewTask::refused_field(&refusal) {
                    Some(field) => format!("{field}: holds {}", refusal.kind.describe()),
                    None => format!("the command holds {}", refusal.kind.describe()),
                };
                return self.reject(&envelope, &kind_token, delivery, message).await;
            }
            other => other?,
        };
        let (task, resumed) = match inserted {
            TaskInsert::Created(task) => (task, false),
            TaskInsert::Existing(task) => (task, true),
        };
        if task.status.is_terminal() {
            self.replay(&task, &envelope).await?;
            return Ok(Disposition::Ack);
        }
        if resumed
            && !self.writes.claim_task(self.claim(task.id, &run)).await?
            && let standby::Standby::Settled(settled) =
                self.stand_by(&task, &run, &envelope).await?
        {
            return Ok(settled);
        }
        let renew = async {
            let mut every = tokio::time::interval(self.lease / 3);
            every.tick().await;
            loop {
                every.tick().await;
                match self.writes.claim_task(self.claim(task.id, &run)).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(task_id = task.id, "lost the task's claim"),
                    Err(e) => {
                        tracing::warn!(error = %e, task_id = task.id, "cannot renew the task's claim")
                    }
                }
            }
        };
        tokio::select! {
            ran = self.run(&task, command, resumed, cache_key.as_deref(), refuse) => ran?,
            () = renew => {}
        }
        Ok(Disposition::Ack)
    }
}
