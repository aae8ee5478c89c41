//! The request lifecycle as pure state (PROTOCOL.md §3): which event may come next and
//! the `seq` it gets. Only the pipeline builds events, and it builds every one through a
//! [`Lifecycle`], so these rules hold on every path:
//!
//! - `accepted` comes first, at `seq` 1, and only once; the one exception is a command
//!   refused at intake (invalid), whose only event is its `failed` at `seq` 1 (§3.3);
//! - `seq` runs 1, 2, 3 … without gaps, also across processes: a request resumed
//!   elsewhere continues after the last `seq` its task row recorded;
//! - exactly one terminal event (`completed` or `failed`), and nothing after it.

use chrono::{DateTime, Utc};

use crate::{
    ids::{RequestId, Tenant},
    protocol::{Event, EventBody, EventType, PROTOCOL_VERSION},
};

/// Why an event may not come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The request already had its terminal event.
    #[error("the request already ended; no {0:?} event may follow")]
    AfterTerminal(EventType),
    /// `accepted` may only be the first event.
    #[error("accepted may only be the first event (seq 1), not seq {0}")]
    AcceptedLate(u64),
    /// Anything but `accepted` or a refusal (`failed`) needs an `accepted` before it.
    #[error("a {0:?} event needs the request accepted first")]
    NotAccepted(EventType),
}

/// An event the lifecycle refused, with its body handed back.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The rule it broke.
    pub error: LifecycleError,
    /// The body that was offered.
    pub body: EventBody,
}

/// Where one request's event sequence stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    request_id: RequestId,
    tenant: Tenant,
    last_seq: u64,
    ended: bool,
}

impl Lifecycle {
    /// A request no event has been published for yet: the next is `accepted`, seq 1.
    pub fn new(request_id: RequestId, tenant: Tenant) -> Self {
        Self::resume(request_id, tenant, 0)
    }

    /// A request whose events up to `last_seq` are out (recorded on its task row);
    /// `last_seq` 0 means none.
    pub fn resume(request_id: RequestId, tenant: Tenant, last_seq: u64) -> Self {
        Self {
            request_id,
            tenant,
            last_seq,
            ended: false,
        }
    }

    /// The `seq` of the last event built (0: none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether the terminal event was built.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Checks that an event of type `next` may come now, and returns its `seq`
    /// without recording it.
    ///
    /// # Errors
    /// [`LifecycleError`] naming the broken rule.
    pub fn check(&self, next: EventType) -> Result<u64, LifecycleError> {
        if self.ended {
            return Err(LifecycleError::AfterTerminal(next));
        }
        let seq = self.last_seq + 1;
        match next {
            EventType::Accepted if seq != 1 => Err(LifecycleError::AcceptedLate(seq)),
            EventType::Accepted | EventType::Failed => Ok(seq),
            other if seq == 1 => Err(LifecycleError::NotAccepted(other)),
            _ => Ok(seq),
        }
    }

    /// The next event, made at `time` with this body.
    ///
    /// # Errors
    /// [`Refused`], which hands the body back, when it may not come now; nothing is
    /// recorded then.
    pub fn next(&mut self, body: EventBody, time: DateTime<Utc>) -> Result<Event, Box<Refused>> {
        let event_type = body.event_type();
        let seq = match self.check(event_type) {
            Ok(seq) => seq,
            Err(error) => return Err(Box::new(Refused { error, body })),
        };
        self.last_seq = seq;
        self.ended = event_type.is_terminal();
        Ok(Event {
            v: PROTOCOL_VERSION,
            request_id: self.request_id.clone(),
            tenant: self.tenant.clone(),
            seq,
            time,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, ErrorInfo, Kind};

    fn lifecycle(last_seq: u64) -> Lifecycle {
        Lifecycle::resume(
            RequestId::new("r1").unwrap(),
            Tenant::new("acme").unwrap(),
            last_seq,
        )
    }

    fn accepted() -> EventBody {
        EventBody::Accepted {
            task_id: 7,
            kind: Kind::TextGenerate,
        }
    }

    fn chunk(index: u32) -> EventBody {
        EventBody::Chunk {
            index,
            delta: "x".into(),
        }
    }

    fn failed() -> EventBody {
        EventBody::Failed {
            error: ErrorInfo::new(ErrorCode::Timeout, "late"),
            attempts: Vec::new(),
            routing: None,
            latency_ms: 0,
            chunks_delivered: None,
        }
    }

    #[test]
    fn seq_runs_from_one_without_gaps_and_ends_once() {
        let mut life = lifecycle(0);
        let now = Utc::now();
        let seqs: Vec<u64> = [accepted(), chunk(0), chunk(1), failed()]
            .into_iter()
            .map(|body| life.next(body, now).unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert!(life.is_ended());
        assert_eq!(
            life.next(chunk(2), now).map_err(|r| r.error),
            Err(LifecycleError::AfterTerminal(EventType::Chunk))
        );
        assert_eq!(
            life.next(failed(), now).map_err(|r| r.error),
            Err(LifecycleError::AfterTerminal(EventType::Failed))
        );
        assert_eq!(life.last_seq(), 4, "a refused event records nothing");
    }

    #[test]
    fn accepted_only_first_and_only_a_refusal_without_it() {
        let now = Utc::now();
        assert_eq!(
            lifecycle(0).next(chunk(0), now).map_err(|r| r.error),
            Err(LifecycleError::NotAccepted(EventType::Chunk))
        );
        let completed = EventBody::Completed {
            output: crate::Output::default(),
            usage: crate::Usage::default(),
            provider: crate::ProviderRef {
                config_id: crate::ConfigId(1),
                name: "m".into(),
                provider_type: crate::ProviderType::Mock,
                model: None,
            },
            attempts: Vec::new(),
            routing: None,
            latency_ms: 0,
            cached: false,
            stale: false,
        };
        let refused = lifecycle(0).next(completed.clone(), now).unwrap_err();
        assert_eq!(
            refused.error,
            LifecycleError::NotAccepted(EventType::Completed)
        );
        assert_eq!(refused.body, completed, "the body comes back");
        // A command refused at intake has only its `failed`, at seq 1.
        assert_eq!(lifecycle(0).next(failed(), now).map(|e| e.seq), Ok(1));
        assert_eq!(
            lifecycle(3).next(accepted(), now).map_err(|r| r.error),
            Err(LifecycleError::AcceptedLate(4))
        );
    }

    #[test]
    fn a_resumed_request_continues_after_its_last_recorded_seq() {
        let mut life = lifecycle(1);
        let event = life.next(failed(), Utc::now()).unwrap();
        assert_eq!(
            (event.seq, event.request_id.as_str(), event.tenant.as_str()),
            (2, "r1", "acme")
        );
        assert_eq!(event.v, PROTOCOL_VERSION);
    }
}
