//! `memory://`: the bus inside one process, with the NATS backend's semantics where
//! they matter: a work queue with ack/nak, `Nats-Msg-Id` de-duplication within a
//! window, event fan-out, and replay of a request's earlier events.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use switchyard_core::{Event, RequestId, Subjects, Tenant};
use switchyard_tasks::Tasks;
use tokio::sync::{broadcast, mpsc};

use super::{Acker, BusError, Deliveries, Delivery, EventFilter, Events, subject_matches};

const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
const HISTORY: usize = 65_536;

#[derive(Debug)]
struct MemMsg {
    subject: String,
    payload: Bytes,
    delivered: u64,
}

/// Acknowledges a memory delivery: ack drops it, nak puts it back in the queue.
pub(super) struct MemoryAcker {
    requeue: mpsc::UnboundedSender<MemMsg>,
    delayed: Tasks,
    msg: MemMsg,
}

impl MemoryAcker {
    pub(super) fn ack(self) {}

    pub(super) fn nak(self, delay: Option<Duration>) {
        let mut msg = self.msg;
        msg.delivered += 1;
        match delay {
            None => {
                let _ = self.requeue.send(msg);
            }
            Some(delay) => {
                self.delayed.spawn("memory-bus-redelivery", async move {
                    tokio::time::sleep(delay).await;
                    let _ = self.requeue.send(msg);
                });
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.delayed.cancel();
    }
}

#[derive(Debug)]
struct Inner {
    queue_tx: mpsc::UnboundedSender<MemMsg>,
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<MemMsg>>,
    dedupe: Mutex<HashMap<String, Instant>>,
    fanout: broadcast::Sender<(String, Bytes)>,
    history: Mutex<VecDeque<(String, Bytes)>>,
    /// Delayed redeliveries (a nak with a delay); cancelled when the last clone of
    /// the bus is dropped.
    delayed: Tasks,
}

/// The in-process bus.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
    subjects: Subjects,
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new(subjects: Subjects) -> Self {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (fanout, _) = broadcast::channel(HISTORY);
        Self {
            inner: Arc::new(Inner {
                queue_tx,
                queue_rx: tokio::sync::Mutex::new(queue_rx),
                dedupe: Mutex::new(HashMap::new()),
                fanout,
                history: Mutex::new(VecDeque::new()),
                delayed: Tasks::new("memory-bus"),
            }),
            subjects,
        }
    }

    pub(super) fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Enqueues a command; returns true when it was a duplicate within the window.
    pub(super) fn publish_command(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> bool {
        if let Some(id) = msg_id
            && let Ok(mut seen) = self.inner.dedupe.lock()
        {
            let now = Instant::now();
            // Prune now and then, not on every publish (that would be O(n) each time).
            if seen.len() % 4096 == 4095 {
                seen.retain(|_, at| now.duration_since(*at) < DUPLICATE_WINDOW);
            }
            if seen
                .get(id)
                .is_some_and(|at| now.duration_since(*at) < DUPLICATE_WINDOW)
            {
                return true;
            }
            seen.insert(id.to_owned(), now);
        }
        let _ = self.inner.queue_tx.send(MemMsg {
            subject: subject.to_owned(),
            payload,
            delivered: 1,
        });
        false
    }

    pub(super) fn publish_event(
        &self,
        subject: String,
        payload: Bytes,
        _msg_id: String,
        _terminal: bool,
    ) {
        if let Ok(mut history) = self.inner.history.lock() {
            if history.len() >= HISTORY {
                history.pop_front();
            }
            history.push_back((subject.clone(), payload.clone()));
        }
        let _ = self.inner.fanout.send((subject, payload));
    }

    pub(super) fn publish_core(&self, subject: &str, payload: Bytes) {
        let _ = self.inner.fanout.send((subject.to_owned(), payload));
    }

    /// In one process the terminal event is published right after the task row is
    /// written; a crash in between loses the memory bus with it, so a stored terminal
    /// task was always published.
    pub(super) fn terminal_published(&self, _tenant: &Tenant, _request_id: &RequestId) -> bool {
        true
    }

    /// The last of a request's events still in the history (it keeps the latest
    /// [`HISTORY`] events of the process).
    /// A last message that is no event is [`BusError::Unreadable`].
    pub(super) fn last_event(
        &self,
        tenant: &Tenant,
        request_id: &RequestId,
    ) -> Result<Option<Event>, BusError> {
        let pattern = self.subjects.request_events(tenant, request_id);
        let Ok(history) = self.inner.history.lock() else {
            return Err(BusError::Unreadable { subject: pattern });
        };
        let Some((subject, payload)) = history
            .iter()
            .rev()
            .find(|(subject, _)| subject_matches(&pattern, subject))
        else {
            return Ok(None);
        };
        serde_json::from_slice::<Event>(payload)
            .map(Some)
            .map_err(|_| BusError::Unreadable {
                subject: subject.clone(),
            })
    }

    pub(super) fn commands(&self) -> Deliveries {
        let inner = self.inner.clone();
        Box::pin(stream::unfold(inner, |inner| async move {
            let msg = inner.queue_rx.lock().await.recv().await?;
            let delivery = Delivery {
                subject: msg.subject.clone(),
                payload: msg.payload.clone(),
                delivered: msg.delivered,
                acker: Acker::Memory(MemoryAcker {
                    requeue: inner.queue_tx.clone(),
                    delayed: inner.delayed.clone(),
                    msg,
                }),
            };
            Some((delivery, inner))
        }))
    }

    pub(super) fn subscribe_core(
        &self,
        subject: &str,
    ) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>> {
        Box::pin(self.subscribe_messages(subject).map(|(_, payload)| payload))
    }

    pub(super) fn subscribe_messages(
        &self,
        subject: &str,
    ) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = (String, Bytes)> + Send>> {
        let filter = subject.to_owned();
        let rx = self.inner.fanout.subscribe();
        Box::pin(
            stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(item) => return Some((item, rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .filter_map(move |(subject, payload)| {
                let keep = subject_matches(&filter, &subject);
                async move { keep.then_some((subject, payload)) }
            }),
        )
    }

    pub(super) fn event_queue(&self, filters: Vec<String>) -> Deliveries {
        Box::pin(
            self.subscribe_messages(&self.subjects.all_events())
                .filter_map(move |(subject, payload)| {
                    let keep = filters.iter().any(|f| subject_matches(f, &subject));
                    async move {
                        keep.then_some(Delivery {
                            subject,
                            payload,
                            delivered: 1,
                            acker: Acker::Nothing,
                        })
                    }
                }),
        )
    }

    pub(super) fn events(&self, filter: EventFilter) -> Events {
        let pattern = match &filter {
            EventFilter::All => self.subjects.all_events(),
            EventFilter::Tenant(tenant) => self.subjects.tenant_events(tenant),
            EventFilter::Request(tenant, id) => self.subjects.request_events(tenant, id),
        };
        // Subscribe before reading history, so nothing falls between the two.
        let live = self.subscribe_core(&pattern);
        let replay: Vec<Bytes> = match filter {
            EventFilter::Request(..) => self
                .inner
                .history
                .lock()
                .map(|h| {
                    h.iter()
                        .filter(|(s, _)| subject_matches(&pattern, s))
                        .map(|(_, p)| p.clone())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut seen_max = 0u64;
        Box::pin(
            stream::iter(replay)
                .chain(live)
                .filter_map(|payload| async move { serde_json::from_slice::<Event>(&payload).ok() })
                .filter(move |event| {
                    // A replayed event may also arrive live; keep each seq once.
                    let fresh =
                        event.seq > seen_max || matches!(filter_kind(&pattern), FilterKind::Wide);
                    if fresh {
                        seen_max = seen_max.max(event.seq);
                    }
                    async move { fresh }
                }),
        )
    }
}

enum FilterKind {
    Wide,
    Request,
}

fn filter_kind(pattern: &str) -> FilterKind {
    if pattern.split('.').count() >= 5 {
        FilterKind::Request
    } else {
        FilterKind::Wide
    }
}
