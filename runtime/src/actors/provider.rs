//! `ProviderActor`: one per live provider config. It decides admission (cool-down,
//! breaker, rate limiter, concurrency cap, priority queue), starts the adapter call as a
//! task, and learns from the outcome. A handler never awaits the network.

use std::{
    collections::BinaryHeap, num::NonZeroU32, panic::AssertUnwindSafe, sync::Arc, time::Duration,
};

use futures_util::FutureExt;
use governor::{
    Quota, RateLimiter,
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use switchyard_core::{
    ErrorCode, ProviderConfig, SkipReason,
    resilience::{Breaker, BreakerState, CallOutcome, TokenBudget},
};

pub use super::call::{Admission, CallRequest, Finished, ProviderMsg};
use super::{
    call::Waiter,
    instance_state::InstanceState,
    observation::{BreakerOpened, Observation},
};
use switchyard_tasks::Tasks;

use crate::{
    clock::Clock,
    providers::{AttemptError, ProviderAdapter},
};

type Limiter = RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<Duration>>;

/// The provider actor (stateless handler; its state lives in `ProviderState`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderActor;

/// What a provider actor is started with. The supervisor keeps these to rebuild the
/// actor after a crash.
#[derive(Debug, Clone)]
pub struct ProviderArgs {
    /// The config served.
    pub config: Arc<ProviderConfig>,
    /// The adapter (shared across restarts).
    pub adapter: Arc<dyn ProviderAdapter>,
    /// Where live state is published.
    pub state: Arc<InstanceState>,
    /// The runtime clock.
    pub clock: Clock,
    /// How many runtime processes share this account's limits (this one gets 1/share).
    pub share: u32,
    /// The router, as far as it hears from provider actors: told each call's latency
    /// and that this instance's breaker opened.
    pub router: DerivedActorRef<Observation>,
    /// Owns the in-flight calls. They outlive this actor when it is replaced (a call
    /// started on the old config finishes there) and end with the engine.
    pub calls: Tasks,
}

/// Latencies are told to the router in batches: at most this many wait…
const REPORT_BATCH: usize = 64;
/// …and none longer than this. One router message per call would cost every call a
/// trip through the router's mailbox (measured ~10 % of in-process throughput).
const REPORT_EVERY: Duration = Duration::from_millis(50);

/// How long a retired actor keeps accepting calls routed on an older table snapshot.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The actor's private state.
pub struct ProviderState {
    args: ProviderArgs,
    limiter: Limiter,
    /// `rate_limit.tpm`, this process's part.
    budget: Option<TokenBudget>,
    breaker: Breaker,
    in_flight: u32,
    waiting: BinaryHeap<Waiter>,
    seq: u64,
    cooling_until: u64,
    wake_at: Option<tokio::time::Instant>,
    /// Last values given to the gauges (they are set only on change).
    gauges: (u32, u8),
    /// Set by `Drain`: stop once idle after this instant.
    draining_until: Option<tokio::time::Instant>,
    /// Call latencies not yet told to the router, oldest first.
    latencies: Vec<f64>,
}

/// This process's part of an account's limit shared by `share` replicas (at least 1).
fn part(limit: u32, share: u32) -> u32 {
    (limit / share.max(1)).max(1)
}

fn budget_for(config: &ProviderConfig, clock: Clock, share: u32) -> Option<TokenBudget> {
    config
        .spec
        .rate_limit
        .tpm
        .map(|tpm| TokenBudget::new(u64::from(part(tpm, share)), clock.now_ms()))
}

fn limiter_for(config: &ProviderConfig, clock: Clock, share: u32) -> Limiter {
    let limits = config.spec.rate_limit;
    let rpm = NonZeroU32::new(part(limits.rpm, share)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(part(limits.burst, share)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(Quota::per_minute(rpm).allow_burst(burst), clock)
}

impl Actor for ProviderActor {
    type Msg = ProviderMsg;
    type State = ProviderState;
    type Arguments = ProviderArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ProviderArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let limiter = limiter_for(&args.config, args.clock, args.share);
        let budget = budget_for(&args.config, args.clock, args.share);
        let breaker = Breaker::new(args.config.spec.breaker);
        args.state.set_breaker(None, false);
        args.state.set_in_flight(0, 0);
        Ok(ProviderState {
            args,
            limiter,
            budget,
            breaker,
            in_flight: 0,
            waiting: BinaryHeap::new(),
            seq: 0,
            cooling_until: 0,
            wake_at: None,
            gauges: (u32::MAX, u8::MAX),
            draining_until: None,
            latencies: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProviderMsg::Call(call) => state.offer(&myself, call),
            ProviderMsg::Finished(finished) => {
                state.finish(finished);
                state.drain(&myself);
                state.schedule_report(&myself);
            }
            ProviderMsg::Report => state.report(),
            ProviderMsg::Wake => {
                state.wake_at = None;
                state.drain(&myself);
            }
            ProviderMsg::SetShare(share) => {
                if share != state.args.share {
                    state.args.share = share;
                    state.limiter = limiter_for(&state.args.config, state.args.clock, share);
                    // The tokens budget keeps what was spent; the rate limiter starts
                    // afresh (governor's state cannot be resized).
                    let now_ms = state.args.clock.now_ms();
                    state.budget = match (
                        state.budget.take(),
                        budget_for(&state.args.config, state.args.clock, share),
                    ) {
                        (Some(mut old), Some(new)) => {
                            old.rescale(new.per_minute(), now_ms);
                            Some(old)
                        }
                        (_, new) => new,
                    };
                    state.drain(&myself);
                }
            }
            ProviderMsg::Drain => {
                let until = tokio::time::Instant::now() + DRAIN_GRACE;
                state.draining_until = Some(until);
                myself.send_after(DRAIN_GRACE, || ProviderMsg::Wake);
            }
        }
        if state.draining_until.is_some_and(|until| {
            tokio::time::Instant::now() >= until && state.in_flight == 0 && state.waiting.is_empty()
        }) {
            myself.stop(Some("drained after reload".to_owned()));
            return Ok(());
        }
        state.publish();
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.report();
        // Queued calls go back to their routers, which try elsewhere.
        for waiter in state.waiting.drain() {
            let _ = waiter.call.admission.send(Admission::Rejected {
                reason: SkipReason::Failed,
                until_ms: None,
            });
        }
        Ok(())
    }
}

/// Why a call cannot start right now.
enum Busy {
    /// Wait this long for a limiter token.
    Limiter(Duration),
    /// Wait for a running call to end.
    Concurrency,
}

impl ProviderState {
    fn now_ms(&self) -> u64 {
        self.args.clock.now_ms()
    }

    fn offer(&mut self, myself: &ActorRef<ProviderMsg>, call: Box<CallRequest>) {
        let now = self.now_ms();
        if now < self.cooling_until {
            reject(call, SkipReason::CoolingDown, Some(self.cooling_until));
            return;
        }
        if let BreakerState::Open { until_ms } = self.breaker.state(now) {
            reject(call, SkipReason::BreakerOpen, Some(until_ms));
            return;
        }
        // Fairness: a newcomer may not overtake calls already queued.
        if self.waiting.is_empty() {
            if let Err((call, busy)) = self.try_start(myself, call) {
                self.queue_or_reject(myself, call, busy);
            }
        } else {
            self.queue_or_reject(myself, call, Busy::Concurrency);
            self.drain(myself);
        }
    }

    fn queue_or_reject(
        &mut self,
        myself: &ActorRef<ProviderMsg>,
        call: Box<CallRequest>,
        busy: Busy,
    ) {
        if !call.may_wait {
            let until = match busy {
                Busy::Limiter(wait) => {
                    Some(self.now_ms() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
                }
                Busy::Concurrency => None,
            };
            reject(call, SkipReason::LimiterFull, until);
            return;
        }
        self.args
            .state
            .count_limiter_wait(&self.args.config.spec.name);
        self.seq += 1;
        self.waiting.push(Waiter {
            priority: call.priority,
            seq: self.seq,
            call,
        });
        if let Busy::Limiter(wait) = busy {
            self.schedule_wake(myself, tokio::time::Instant::now() + wait);
        }
        self.schedule_earliest_deadline(myself);
    }

    /// Starts the call if breaker, limiter and concurrency allow; else hands it back.
    fn try_start(
        &mut self,
        myself: &ActorRef<ProviderMsg>,
        call: Box<CallRequest>,
    ) -> Result<(), (Box<CallRequest>, Busy)> {
        let now = self.now_ms();
        if self.in_flight
            >= part(
                self.args.config.spec.rate_limit.max_concurrency,
                self.args.share,
            )
        {
            return Err((call, Busy::Concurrency));
        }
        if self.breaker.try_acquire(now).is_err() {
            // Half-open with every probe out: behave like a busy slot.
            return Err((call, Busy::Concurrency));
        }
        let reserved = match self
            .budget
            .as_mut()
            .map(|b| b.try_reserve(call.tokens, now))
        {
            None => 0,
            Some(Ok(reserved)) => reserved,
            Some(Err(wait_ms)) => {
                self.breaker.record(now, CallOutcome::Ignored, 0);
                return Err((call, Busy::Limiter(Duration::from_millis(wait_ms))));
            }
        };
        if let Err(not_until) = self.limiter.check() {
            self.breaker.record(now, CallOutcome::Ignored, 0);
            if let Some(budget) = &mut self.budget {
                budget.settle(reserved, 0, now);
            }
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.args.clock));
            return Err((call, Busy::Limiter(wait)));
        }
        self.start(myself, call, reserved);
        Ok(())
    }

    #[expect(
        clippy::boxed_local,
        reason = "calls travel boxed through the mailbox and the queue"
    )]
    fn start(&mut self, myself: &ActorRef<ProviderMsg>, call: Box<CallRequest>, reserved: u64) {
        let CallRequest {
            request,
            admission,
            result,
            ..
        } = *call;
        if admission.send(Admission::Admitted).is_err() {
            // The router gave up (deadline) before we could start: free the token's slot.
            let now = self.now_ms();
            self.breaker.record(now, CallOutcome::Ignored, 0);
            if let Some(budget) = &mut self.budget {
                budget.settle(reserved, 0, now);
            }
            return;
        }
        self.in_flight += 1;
        let config = &self.args.config;
        let timeout = Duration::from_millis(config.spec.timeout_ms);
        // Building the future runs adapter code in this handler: a panic here crashes
        // the actor, which its supervisor restarts.
        let future = self.args.adapter.generate(request);
        let reply_to = myself.clone();
        let started = tokio::time::Instant::now();
        self.args.calls.spawn_bounded("provider-call", async move {
            let outcome = match tokio::time::timeout(
                timeout,
                AssertUnwindSafe(future).catch_unwind(),
            )
            .await
            {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_panic)) => Err(AttemptError::new(
                    ErrorCode::ProviderError,
                    "the adapter failed unexpectedly during the call",
                )),
                Err(_) => Err(AttemptError::new(
                    ErrorCode::Timeout,
                    format!("no answer within {} ms", timeout.as_millis()),
                )),
            };
            // A failed call is taken to have used nothing (providers bill answers).
            let used = outcome
                .as_ref()
                .map_or(0, |o| o.input_tokens.saturating_add(o.output_tokens));
            let finished = Finished {
                code: outcome.as_ref().err().map(|e| e.code),
                retry_after_ms: outcome.as_ref().err().and_then(|e| e.retry_after_ms),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                tokens: (reserved, used),
            };
            let message = outcome.as_ref().err().map(|e| e.message.clone());
            let _ = result.send(outcome);
            // The actor may have been replaced meanwhile; the caller has its answer.
            if reply_to.cast(ProviderMsg::Finished(finished)).is_err() {
                drop(message);
            }
        });
    }

    /// Reports now when a batch is full; else makes sure a report comes within
    /// [`REPORT_EVERY`] of the first sample waiting.
    fn schedule_report(&mut self, myself: &ActorRef<ProviderMsg>) {
        if self.latencies.len() >= REPORT_BATCH {
            self.report();
        } else if self.latencies.len() == 1 {
            myself.send_after(REPORT_EVERY, || ProviderMsg::Report);
        }
    }

    /// Tells the router the latencies gathered so far (the router folds them into the
    /// instance's EWMA, in order).
    fn report(&mut self) {
        if self.latencies.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut self.latencies);
        let _ = self.args.router.send_message(Observation::Latency {
            state: self.args.state.clone(),
            samples,
        });
    }

    fn finish(&mut self, finished: Finished) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let now = self.now_ms();
        if let Some(budget) = &mut self.budget {
            let (reserved, used) = finished.tokens;
            budget.settle(reserved, used, now);
        }
        let outcome = match finished.code {
            None => CallOutcome::Success,
            Some(code) if code.counts_against_breaker() => CallOutcome::Failure,
            Some(_) => CallOutcome::Ignored,
        };
        let was_open = matches!(self.breaker.state(now), BreakerState::Open { .. });
        self.breaker.record(now, outcome, finished.latency_ms);
        if let (false, BreakerState::Open { until_ms }) = (was_open, self.breaker.state(now)) {
            let _ = self
                .args
                .router
                .send_message(Observation::BreakerOpened(BreakerOpened {
                    config_id: self.args.config.id,
                    version: self.args.config.version,
                    until_ms,
                }));
        }
        if finished.code == Some(ErrorCode::RateLimited) {
            let wait = finished.retry_after_ms.unwrap_or(1_000);
            self.cooling_until = self.cooling_until.max(now + wait);
            self.args.state.set_cooling_until(self.cooling_until);
        } else {
            // Latency says how the instance answers; a 429 answers nothing.
            self.latencies.push(finished.latency_ms as f64);
        }
        let error = finished.code.map(|c| c.as_str().to_owned());
        self.args.state.count(error);
        let name = self.args.config.spec.name.clone();
        metrics::counter!("switchyard_provider_calls_total", "config" => name.clone(),
            "code" => finished.code.map_or("ok", ErrorCode::as_str))
        .increment(1);
        metrics::histogram!("switchyard_provider_latency_seconds", "config" => name)
            .record(finished.latency_ms as f64 / 1000.0);
    }

    /// Starts queued calls while capacity allows; rejects those past their wait.
    fn drain(&mut self, myself: &ActorRef<ProviderMsg>) {
        let now_instant = tokio::time::Instant::now();
        // Expired waiters first, wherever they are in the queue.
        if self
            .waiting
            .iter()
            .any(|w| w.call.wait_until <= now_instant)
        {
            let (expired, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|w| w.call.wait_until <= now_instant);
            self.waiting = keep.into_iter().collect();
            for waiter in expired {
                reject(waiter.call, SkipReason::LimiterFull, None);
            }
        }
        let now = self.now_ms();
        if now < self.cooling_until || matches!(self.breaker.state(now), BreakerState::Open { .. })
        {
            let until = self.cooling_until.max(match self.breaker.state(now) {
                BreakerState::Open { until_ms } => until_ms,
                _ => 0,
            });
            self.schedule_wake(myself, self.args.clock.instant_at(until));
        } else {
            while let Some(waiter) = self.waiting.pop() {
                let (priority, seq) = (waiter.priority, waiter.seq);
                match self.try_start(myself, waiter.call) {
                    Ok(()) => {}
                    Err((call, busy)) => {
                        self.waiting.push(Waiter {
                            priority,
                            seq,
                            call,
                        });
                        if let Busy::Limiter(wait) = busy {
                            self.schedule_wake(myself, tokio::time::Instant::now() + wait);
                        }
                        break;
                    }
                }
            }
        }
        self.schedule_earliest_deadline(myself);
    }

    fn schedule_earliest_deadline(&mut self, myself: &ActorRef<ProviderMsg>) {
        if let Some(earliest) = self.waiting.iter().map(|w| w.call.wait_until).min() {
            self.schedule_wake(myself, earliest);
        }
    }

    fn schedule_wake(&mut self, myself: &ActorRef<ProviderMsg>, at: tokio::time::Instant) {
        if self.wake_at.is_some_and(|existing| existing <= at) {
            return;
        }
        self.wake_at = Some(at);
        let delay = at.saturating_duration_since(tokio::time::Instant::now());
        myself.send_after(delay, || ProviderMsg::Wake);
    }

    fn publish(&mut self) {
        let now = self.now_ms();
        let state = &self.args.state;
        // Gauge value: 0 closed, 1 half-open, 2 open.
        let breaker = match self.breaker.state(now) {
            BreakerState::Open { until_ms } => {
                state.set_breaker(Some(until_ms), false);
                2
            }
            BreakerState::HalfOpen => {
                state.set_breaker(None, true);
                1
            }
            BreakerState::Closed => {
                state.set_breaker(None, false);
                0
            }
        };
        state.set_in_flight(
            self.in_flight,
            u32::try_from(self.waiting.len()).unwrap_or(u32::MAX),
        );
        if self.gauges != (self.in_flight, breaker) {
            let name = self.args.config.spec.name.clone();
            metrics::gauge!("switchyard_provider_in_flight", "config" => name.clone())
                .set(f64::from(self.in_flight));
            metrics::gauge!("switchyard_provider_breaker_state", "config" => name)
                .set(f64::from(breaker));
            self.gauges = (self.in_flight, breaker);
        }
    }
}

#[expect(
    clippy::boxed_local,
    reason = "calls travel boxed through the mailbox and the queue"
)]
fn reject(call: Box<CallRequest>, reason: SkipReason, until_ms: Option<u64>) {
    let _ = call
        .admission
        .send(Admission::Rejected { reason, until_ms });
}
