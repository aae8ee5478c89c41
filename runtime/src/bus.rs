//! The bus: commands in, events out (PROTOCOL.md §1–3), behind one interface with two
//! backends — `nats://…` (JetStream) and `memory://` (the embedded default, the same
//! semantics inside one process). The command handler never knows which it talks to.

mod memory;
mod nats;

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures_util::Stream;
use switchyard_core::{Command, Event, RequestId, Subjects, Tenant};

pub use memory::MemoryBus;
pub use nats::{NatsBus, NatsOptions, PendingAck};

/// The stream acknowledgement of a sent event, still to come.
#[derive(Debug)]
pub enum EventAck {
    /// Already durable (the in-process bus).
    Done,
    /// The stream's answer, still to come (JetStream).
    Stream(PendingAck),
}

impl EventAck {
    /// Waits until the event is durable in the stream.
    ///
    /// # Errors
    /// [`BusError::Publish`] when the stream refused it or did not answer.
    pub async fn wait(self) -> Result<(), BusError> {
        match self {
            EventAck::Done => Ok(()),
            EventAck::Stream(ack) => ack.wait().await,
        }
    }
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL is not usable.
    #[error("bad bus url: {0}")]
    BadUrl(String),
    /// Connecting to NATS failed.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// Creating or reading a stream or consumer failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// Publishing failed.
    #[error("publish to {subject} failed: {reason}")]
    Publish {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// Encoding an event failed.
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
    /// The operation makes no sense on this backend.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A message on the stream is not what it should be (no event this build reads, or
    /// one whose subject is not its own): what it says cannot be believed.
    #[error("unreadable event on {subject}")]
    Unreadable {
        /// Its subject.
        subject: String,
    },
}

/// A stream of command deliveries.
pub type Deliveries = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// A stream of events.
pub type Events = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// One delivered command, to be acknowledged exactly once.
pub struct Delivery {
    /// The subject it came on.
    pub subject: String,
    /// The raw body.
    pub payload: Bytes,
    /// How many times it has been delivered (1 = first time).
    pub delivered: u64,
    acker: Acker,
}

enum Acker {
    Nats(nats::NatsAcker),
    Memory(memory::MemoryAcker),
    /// A live event of the in-process bus: nothing to acknowledge.
    Nothing,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("bytes", &self.payload.len())
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Delivery {
    /// Done: never deliver again.
    pub async fn ack(self) {
        match self.acker {
            Acker::Nats(m) => m.ack().await,
            Acker::Memory(m) => m.ack(),
            Acker::Nothing => {}
        }
    }

    /// Not now: deliver again after `delay`.
    pub async fn nak(self, delay: Option<Duration>) {
        match self.acker {
            Acker::Nats(m) => m.nak(delay).await,
            Acker::Memory(m) => m.nak(delay),
            Acker::Nothing => {}
        }
    }

    /// Poison: never deliver again (after it went to the DLQ).
    pub async fn term(self) {
        match self.acker {
            Acker::Nats(m) => m.term().await,
            Acker::Memory(m) => m.ack(),
            Acker::Nothing => {}
        }
    }

    /// Still working: extend the ack deadline.
    pub async fn progress(&self) {
        if let Acker::Nats(m) = &self.acker {
            m.progress().await;
        }
    }
}

/// Which events to watch.
#[derive(Debug, Clone)]
pub enum EventFilter {
    /// Every event from now on.
    All,
    /// One tenant's events from now on.
    Tenant(Tenant),
    /// One request's events, from its first (including those already published).
    Request(Tenant, RequestId),
}

/// The bus, either backend.
#[derive(Debug, Clone)]
pub enum Bus {
    /// In-process.
    Memory(MemoryBus),
    /// NATS JetStream.
    Nats(Box<NatsBus>),
}

impl Bus {
    /// Connects by URL: `memory://` or `nats://host:port[,nats://…]`; for NATS, creates
    /// the streams and the durable consumer if missing.
    ///
    /// # Errors
    /// [`BusError`] when the server cannot be reached or the streams not created.
    pub async fn connect(url: &str, prefix: &str, options: NatsOptions) -> Result<Self, BusError> {
        let subjects = Subjects::new(prefix);
        if url == "memory://" {
            Ok(Bus::Memory(MemoryBus::new(subjects)))
        } else if url.starts_with("nats://") || url.starts_with("tls://") {
            Ok(Bus::Nats(Box::new(
                NatsBus::connect(url, subjects, options).await?,
            )))
        } else {
            Err(BusError::BadUrl(switchyard_core::redact_url(url)))
        }
    }

    /// Deletes this prefix's command and event streams (the load tool's clean-up; the
    /// runtime itself never deletes streams). Nothing to do on `memory://`.
    ///
    /// # Errors
    /// The first stream that could not be deleted.
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        if let Self::Nats(nats) = self {
            nats.delete_streams().await?;
        }
        Ok(())
    }

    /// The subjects in use.
    pub fn subjects(&self) -> &Subjects {
        match self {
            Bus::Memory(b) => b.subjects(),
            Bus::Nats(b) => b.subjects(),
        }
    }

    /// Publishes a raw command body (with `Nats-Msg-Id`, if given). Returns whether the
    /// server dropped it as a duplicate.
    ///
    /// # Errors
    /// [`BusError::Publish`].
    pub async fn publish_command_raw(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<bool, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.publish_command(subject, payload, msg_id)),
            Bus::Nats(b) => b.publish_command(subject, payload, msg_id).await,
        }
    }

    /// Publishes a command on `<prefix>.cmd.<kind>` with
    /// `Nats-Msg-Id: <tenant>:<request_id>` (PROTOCOL.md §1), so two tenants' equal
    /// request ids are never taken for one duplicate.
    ///
    /// # Errors
    /// [`BusError`].
    pub async fn publish_command(&self, command: &Command) -> Result<bool, BusError> {
        let subject = self.subjects().command(command.kind);
        let payload = Bytes::from(serde_json::to_vec(command)?);
        let msg_id = command_msg_id(&command.tenant, &command.request_id);
        self.publish_command_raw(&subject, payload, Some(&msg_id))
            .await
    }

    /// Publishes an event on its subject, durably (JetStream ack awaited), with a
    /// message id that makes a retry of the same event a no-op.
    ///
    /// # Errors
    /// [`BusError::Publish`].
    pub async fn publish_event(&self, event: &Event) -> Result<(), BusError> {
        self.send_event(event).await?.wait().await
    }

    /// Sends an event like [`Bus::publish_event`] but returns before the stream's
    /// acknowledgement: events of one request go out in order without a round trip
    /// each, and the caller awaits the acks together (before it writes the terminal
    /// row).
    ///
    /// # Errors
    /// [`BusError::Publish`] when the event could not be sent at all.
    pub async fn send_event(&self, event: &Event) -> Result<EventAck, BusError> {
        let payload = Bytes::from(serde_json::to_vec(event)?);
        self.send_encoded_event(event, payload).await
    }

    /// [`Bus::send_event`] with the event already encoded as `payload` (the caller
    /// keeps the bytes for the task row and `reply_to`).
    ///
    /// # Errors
    /// [`BusError::Publish`] when the event could not be sent at all.
    pub async fn send_encoded_event(
        &self,
        event: &Event,
        payload: Bytes,
    ) -> Result<EventAck, BusError> {
        let subject = self
            .subjects()
            .event(&event.tenant, &event.request_id, event.event_type());
        let msg_id = event_msg_id(event);
        match self {
            Bus::Memory(b) => {
                b.publish_event(subject, payload, msg_id, event.is_terminal());
                Ok(EventAck::Done)
            }
            Bus::Nats(b) => b.send_event(subject, payload, msg_id).await,
        }
    }

    /// Publishes on core NATS (no stream): replies to `reply_to`, change notices.
    ///
    /// # Errors
    /// [`BusError::Publish`].
    pub async fn publish_core(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        match self {
            Bus::Memory(b) => {
                b.publish_core(subject, payload);
                Ok(())
            }
            Bus::Nats(b) => b.publish_core(subject, payload).await,
        }
    }

    /// Sends an unparseable command to `<prefix>.dlq` with the reason.
    ///
    /// # Errors
    /// [`BusError::Publish`].
    pub async fn publish_dlq(
        &self,
        subject: &str,
        payload: &[u8],
        reason: &str,
    ) -> Result<(), BusError> {
        const KEEP: usize = 64 * 1024;
        let body = serde_json::json!({
            "reason": reason,
            "subject": subject,
            "payload": String::from_utf8_lossy(&payload[..payload.len().min(KEEP)]),
            "truncated": payload.len() > KEEP,
            "time": chrono::Utc::now(),
        });
        let dlq = self.subjects().dlq();
        let bytes = Bytes::from(serde_json::to_vec(&body)?);
        match self {
            Bus::Memory(b) => {
                b.publish_core(&dlq, bytes);
                Ok(())
            }
            Bus::Nats(b) => b.publish_durable(&dlq, bytes).await,
        }
    }

    /// Whether a terminal event of this request is already on the event subjects.
    ///
    /// # Errors
    /// [`BusError::JetStream`].
    pub async fn terminal_published(
        &self,
        tenant: &Tenant,
        request_id: &RequestId,
    ) -> Result<bool, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.terminal_published(tenant, request_id)),
            Bus::Nats(b) => b.terminal_published(tenant, request_id).await,
        }
    }

    /// The last event of a request on the event subjects, as a subscriber reading
    /// them from the start would end on: `None` when there is none (or none kept any
    /// more: the stream's max age, the memory bus's history).
    ///
    /// # Errors
    /// [`BusError::JetStream`]; [`BusError::Unreadable`] when the last message is no
    /// event this build reads, or not on its own subject (its `seq` is unknown).
    pub async fn last_event(
        &self,
        tenant: &Tenant,
        request_id: &RequestId,
    ) -> Result<Option<Event>, BusError> {
        match self {
            Bus::Memory(b) => b.last_event(tenant, request_id),
            Bus::Nats(b) => b.last_event(tenant, request_id).await,
        }
    }

    /// Commands to handle. Every process shares one durable consumer, so NATS spreads
    /// the work.
    ///
    /// # Errors
    /// [`BusError::JetStream`].
    pub async fn commands(&self) -> Result<Deliveries, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.commands()),
            Bus::Nats(b) => b.commands().await,
        }
    }

    /// Events matching `filter`.
    ///
    /// # Errors
    /// [`BusError::JetStream`].
    pub async fn events(&self, filter: EventFilter) -> Result<Events, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.events(filter)),
            Bus::Nats(b) => b.events(filter).await,
        }
    }

    /// The events on `filters` (event subject patterns) as deliveries to acknowledge.
    /// On NATS, one durable consumer `name` that every process pulls from, created or
    /// updated to these filters: each event is handled by one process of the cluster
    /// and delivered again until acknowledged, from the consumer's first creation on.
    /// On `memory://`, the live events of this process (nothing to acknowledge).
    ///
    /// # Errors
    /// [`BusError::JetStream`].
    pub async fn event_queue(
        &self,
        name: &str,
        filters: Vec<String>,
    ) -> Result<Deliveries, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.event_queue(filters)),
            Bus::Nats(b) => b.event_queue(name, filters).await,
        }
    }

    /// Messages on a core subject (replies, change notices, the DLQ on memory).
    ///
    /// # Errors
    /// [`BusError`].
    pub async fn subscribe_core(
        &self,
        subject: &str,
    ) -> Result<Pin<Box<dyn Stream<Item = Bytes> + Send>>, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.subscribe_core(subject)),
            Bus::Nats(b) => b.subscribe_core(subject).await,
        }
    }

    /// Messages on a core subject with the subject each came on (a wildcard
    /// subscription: live subscribers to event subjects).
    ///
    /// # Errors
    /// [`BusError`].
    pub async fn subscribe_messages(
        &self,
        subject: &str,
    ) -> Result<Pin<Box<dyn Stream<Item = (String, Bytes)> + Send>>, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.subscribe_messages(subject)),
            Bus::Nats(b) => b.subscribe_messages(subject).await,
        }
    }

    /// Waits until everything published so far has reached the server (call before a
    /// short-lived process exits).
    pub async fn flush(&self) {
        if let Bus::Nats(b) = self {
            let _ = b.client().flush().await;
        }
    }

    /// Whether other processes share this bus (NATS), so that replicas, change notices
    /// and the control service make sense; false for the in-process bus.
    pub fn is_shared(&self) -> bool {
        matches!(self, Bus::Nats(_))
    }
}

/// The `Nats-Msg-Id` of an event, `<tenant>:<request_id>:<seq>:<type>`: the same
/// for every publication of that event (also a webhook delivery's `webhook-id`).
pub fn event_msg_id(event: &Event) -> String {
    format!(
        "{}:{}:{}:{}",
        event.tenant,
        event.request_id,
        event.seq,
        event.event_type().as_str()
    )
}

/// The `Nats-Msg-Id` of a command: `<tenant>:<request_id>` (neither may contain `:`).
pub fn command_msg_id(tenant: &Tenant, request_id: &RequestId) -> String {
    format!("{tenant}:{request_id}")
}

pub use switchyard_core::protocol::subject_matches;
