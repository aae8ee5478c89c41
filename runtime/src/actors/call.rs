//! What is offered to a provider actor and what it answers: a call with its
//! admission and result channels, the actor's messages, and the wait-queue order.

use std::cmp::Ordering as CmpOrdering;

use switchyard_core::{ErrorCode, SkipReason};
use tokio::sync::oneshot;

use crate::providers::{AdapterOutput, AdapterRequest, AttemptError};

/// One call offered to an instance.
#[derive(Debug)]
pub struct CallRequest {
    /// The attempt's input.
    pub request: AdapterRequest,
    /// 1 = urgent … 10 = background: order in the wait queue.
    pub priority: u8,
    /// The tokens it will probably use (input plus output; 0 for images): reserved
    /// from the instance's `tpm` budget before it starts.
    pub tokens: u64,
    /// Whether to queue when the limiter or the concurrency cap is full (else reject).
    pub may_wait: bool,
    /// Give up waiting at this instant.
    pub wait_until: tokio::time::Instant,
    /// Answered once: admitted, or rejected with the reason.
    pub admission: oneshot::Sender<Admission>,
    /// Answered with the outcome once an admitted call ends.
    pub result: oneshot::Sender<Result<AdapterOutput, AttemptError>>,
}

/// The admission decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The call is running.
    Admitted,
    /// The call was not started.
    Rejected {
        /// Why.
        reason: SkipReason,
        /// When the instance may be free (Unix ms), if known.
        until_ms: Option<u64>,
    },
}

/// Messages of the provider actor.
#[derive(Debug)]
pub enum ProviderMsg {
    /// Offer a call.
    Call(Box<CallRequest>),
    /// A call task ended.
    Finished(Finished),
    /// Re-examine the wait queue (timer).
    Wake,
    /// Retired by a reload: finish in-flight and queued calls (and any offered during
    /// a short grace period by requests routed on the old table), then stop.
    Drain,
    /// The number of live replicas changed: take 1/n of the account's limits.
    SetShare(u32),
    /// Tell the router the latencies gathered since the last report (timer).
    Report,
}

/// The outcome summary a call task reports back.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub(super) code: Option<ErrorCode>,
    pub(super) retry_after_ms: Option<u64>,
    pub(super) latency_ms: u64,
    /// What it reserved from the `tpm` budget, and what it used.
    pub(super) tokens: (u64, u64),
}

pub(super) struct Waiter {
    pub(super) priority: u8,
    pub(super) seq: u64,
    pub(super) call: Box<CallRequest>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// The max-heap pops the most urgent (lowest priority number), then the oldest.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other
            .priority
            .cmp(&self.priority)
            .then(other.seq.cmp(&self.seq))
    }
}
