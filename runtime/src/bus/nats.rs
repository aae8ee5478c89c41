//! `nats://…`: JetStream. At connect, the command stream (work queue, de-duplication
//! window ≥ 120 s), the event stream (limits retention, max age) and the shared durable
//! pull consumer are created if missing, and never deleted.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
        message::PublishMessage as Publish,
        stream::{self as js_stream, RetentionPolicy},
    },
};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use switchyard_core::{Event, RequestId, Subjects, Tenant};

mod ack;

pub(super) use ack::NatsAcker;
pub use ack::PendingAck;

use super::{Acker, BusError, Deliveries, Delivery, EventFilter, Events};

/// NATS connection and JetStream settings.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Name of the shared durable pull consumer.
    pub consumer: String,
    /// How long events are kept.
    pub event_max_age: Duration,
    /// How long a delivered command may go without ack or progress before redelivery.
    pub ack_wait: Duration,
    /// Deliveries of one command at most.
    pub max_deliver: i64,
    /// Commands pulled and not yet acked, per consumer.
    pub max_ack_pending: i64,
    /// Auth token, if any.
    pub token: Option<String>,
    /// User and password, if any.
    pub user_password: Option<(String, String)>,
    /// A `.creds` file, if any.
    pub credentials_file: Option<std::path::PathBuf>,
    /// An nkey seed, if any.
    pub nkey: Option<String>,
    /// Require TLS.
    pub tls: bool,
    /// A private CA's PEM file for the servers' certificates.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key PEM files (mutual TLS).
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            consumer: "switchyard-runtime".to_owned(),
            event_max_age: Duration::from_secs(24 * 3600),
            ack_wait: Duration::from_secs(30),
            max_deliver: 20,
            max_ack_pending: 1024,
            token: None,
            user_password: None,
            credentials_file: None,
            nkey: None,
            tls: false,
            tls_ca_file: None,
            tls_client: None,
        }
    }
}

/// The JetStream bus.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
    options: NatsOptions,
}

fn js_error(e: impl std::fmt::Display) -> BusError {
    BusError::JetStream(e.to_string())
}

impl NatsBus {
    /// Deletes this prefix's command and event streams.
    pub(super) async fn delete_streams(&self) -> Result<(), BusError> {
        for name in [self.subjects.command_stream(), self.subjects.event_stream()] {
            self.js
                .delete_stream(&name)
                .await
                .map_err(|e| BusError::JetStream(format!("delete stream {name}: {e}")))?;
        }
        Ok(())
    }

    /// Connects (several URLs may be given, comma separated), reconnecting with backoff
    /// forever, and makes sure the streams and consumer exist.
    ///
    /// # Errors
    /// [`BusError::Connect`] or [`BusError::JetStream`].
    pub async fn connect(
        url: &str,
        subjects: Subjects,
        options: NatsOptions,
    ) -> Result<Self, BusError> {
        let mut connect = async_nats::ConnectOptions::new()
            .name("switchyard")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("nats disconnected; reconnecting")
                    }
                    async_nats::Event::Connected => tracing::info!("nats connected"),
                    other => tracing::debug!(event = %other, "nats event"),
                }
            });
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        if let Some((user, password)) = &options.user_password {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(nkey) = &options.nkey {
            connect = connect.nkey(nkey.clone());
        }
        if let Some(path) = &options.credentials_file {
            connect = connect.credentials_file(path).await.map_err(|e| {
                BusError::Connect(format!("credentials file {}: {e}", path.display()))
            })?;
        }
        if let Some(ca) = &options.tls_ca_file {
            connect = connect.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &options.tls_client {
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        if options.tls {
            connect = connect.require_tls(true);
        }
        let addresses: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| BusError::BadUrl(format!("{}: {e}", redact_all(url))))?;
        let client = tokio::time::timeout(Duration::from_secs(15), connect.connect(addresses))
            .await
            .map_err(|_| {
                BusError::Connect(format!(
                    "no NATS server answered at {} within 15 s",
                    redact_all(url)
                ))
            })?
            .map_err(|e| BusError::Connect(e.to_string()))?;
        let js = jetstream::new(client.clone());
        let bus = Self {
            client,
            js,
            subjects,
            options,
        };
        bus.ensure_streams().await?;
        Ok(bus)
    }

    async fn ensure_streams(&self) -> Result<(), BusError> {
        let s = &self.subjects;
        self.js
            .get_or_create_stream(js_stream::Config {
                name: s.command_stream(),
                subjects: vec![s.all_commands()],
                retention: RetentionPolicy::WorkQueue,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        self.js
            .get_or_create_stream(js_stream::Config {
                name: s.event_stream(),
                subjects: vec![s.all_events(), s.dlq()],
                retention: RetentionPolicy::Limits,
                max_age: self.options.event_max_age,
                duplicate_window: Duration::from_secs(600),
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        Ok(())
    }

    pub(super) fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub(super) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub(super) async fn publish_command(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<bool, BusError> {
        let mut publish = Publish::build().payload(payload);
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        let ack = self
            .js
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(|e| publish_error(subject, e))?
            .await
            .map_err(|e| publish_error(subject, e))?;
        Ok(ack.duplicate)
    }

    /// Sends an event; the stream's acknowledgement comes with the returned future.
    pub(super) async fn send_event(
        &self,
        subject: String,
        payload: Bytes,
        msg_id: String,
    ) -> Result<super::EventAck, BusError> {
        let publish = Publish::build().payload(payload).message_id(msg_id);
        let ack = self
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| publish_error(&subject, e))?;
        Ok(super::EventAck::Stream(PendingAck::new(ack, subject)))
    }

    pub(super) async fn publish_durable(
        &self,
        subject: &str,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.js
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|e| publish_error(subject, e))?
            .await
            .map_err(|e| publish_error(subject, e))?;
        Ok(())
    }

    pub(super) async fn publish_core(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.client
            .publish_with_headers(subject.to_owned(), HeaderMap::new(), payload)
            .await
            .map_err(|e| publish_error(subject, e))
    }

    pub(super) async fn terminal_published(
        &self,
        tenant: &Tenant,
        request_id: &RequestId,
    ) -> Result<bool, BusError> {
        let stream = self
            .js
            .get_stream(self.subjects.event_stream())
            .await
            .map_err(js_error)?;
        for event_type in [
            switchyard_core::EventType::Completed,
            switchyard_core::EventType::Failed,
        ] {
            let subject = self.subjects.event(tenant, request_id, event_type);
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == js_stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(js_error(e)),
            }
        }
        Ok(false)
    }

    /// The stream's last message on any of the request's event subjects (the server
    /// answers a last-by-subject request with a wildcard filter), if its body matches
    /// the subject it is on.
    pub(super) async fn last_event(
        &self,
        tenant: &Tenant,
        request_id: &RequestId,
    ) -> Result<Option<Event>, BusError> {
        let stream = self
            .js
            .get_stream(self.subjects.event_stream())
            .await
            .map_err(js_error)?;
        let message = match stream
            .get_last_raw_message_by_subject(&self.subjects.request_events(tenant, request_id))
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == js_stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None);
            }
            Err(e) => return Err(js_error(e)),
        };
        let unreadable = || BusError::Unreadable {
            subject: message.subject.to_string(),
        };
        let event = serde_json::from_slice::<Event>(&message.payload).map_err(|_| unreadable())?;
        let expected = self
            .subjects
            .event(&event.tenant, &event.request_id, event.event_type());
        if message.subject.as_str() != expected {
            return Err(unreadable());
        }
        Ok(Some(event))
    }

    pub(super) async fn commands(&self) -> Result<Deliveries, BusError> {
        let stream = self
            .js
            .get_stream(self.subjects.command_stream())
            .await
            .map_err(js_error)?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.options.consumer,
                pull::Config {
                    durable_name: Some(self.options.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.options.ack_wait,
                    max_deliver: self.options.max_deliver,
                    max_ack_pending: self.options.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(js_error)?;
        let messages = consumer.messages().await.map_err(js_error)?;
        Ok(deliveries(messages, "command consumer"))
    }

    pub(super) async fn event_queue(
        &self,
        name: &str,
        filters: Vec<String>,
    ) -> Result<Deliveries, BusError> {
        let stream = self
            .js
            .get_stream(self.subjects.event_stream())
            .await
            .map_err(js_error)?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subjects: filters,
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 1_000,
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        let messages = consumer.messages().await.map_err(js_error)?;
        Ok(deliveries(messages, "event queue"))
    }

    pub(super) async fn events(&self, filter: EventFilter) -> Result<Events, BusError> {
        let (subject, deliver_policy) = match &filter {
            EventFilter::All => (self.subjects.all_events(), DeliverPolicy::New),
            EventFilter::Tenant(tenant) => {
                (self.subjects.tenant_events(tenant), DeliverPolicy::New)
            }
            EventFilter::Request(tenant, id) => {
                (self.subjects.request_events(tenant, id), DeliverPolicy::All)
            }
        };
        let stream = self
            .js
            .get_stream(self.subjects.event_stream())
            .await
            .map_err(js_error)?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        let messages = consumer.messages().await.map_err(js_error)?;
        let subjects = self.subjects.clone();
        Ok(Box::pin(messages.filter_map(move |m| {
            let subjects = subjects.clone();
            async move {
                let m = m.ok()?;
                let event = serde_json::from_slice::<Event>(&m.payload).ok()?;
                // An event is believed only on its own subject: a payload naming another
                // tenant or request than the subject it came on is forged or misrouted.
                let expected =
                    subjects.event(&event.tenant, &event.request_id, event.event_type());
                if m.subject.as_str() != expected {
                    tracing::warn!(subject = %m.subject, %expected, "event dropped: its body does not match its subject");
                    metrics::counter!("switchyard_events_mismatched_total").increment(1);
                    return None;
                }
                Some(event)
            }
        })))
    }

    pub(super) async fn subscribe_core(
        &self,
        subject: &str,
    ) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>>, BusError> {
        let subscriber = self.subscriber(subject).await?;
        Ok(Box::pin(stream::StreamExt::map(subscriber, |m| m.payload)))
    }

    pub(super) async fn subscribe_messages(
        &self,
        subject: &str,
    ) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = (String, Bytes)> + Send>>, BusError>
    {
        let subscriber = self.subscriber(subject).await?;
        Ok(Box::pin(stream::StreamExt::map(subscriber, |m| {
            (m.subject.to_string(), m.payload)
        })))
    }

    async fn subscriber(&self, subject: &str) -> Result<async_nats::Subscriber, BusError> {
        self.client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| BusError::JetStream(e.to_string()))
    }
}

impl super::Bus {
    /// The NATS client, when on NATS: for the control service (a NATS micro service)
    /// and for tools that measure raw JetStream. Declared here so that no NATS type is
    /// named outside the bus's NATS module except by those two.
    pub fn nats_client(&self) -> Option<&async_nats::Client> {
        match self {
            super::Bus::Memory(_) => None,
            super::Bus::Nats(b) => Some(b.client()),
        }
    }
}

/// A pull consumer's messages as deliveries to acknowledge; an error in the stream is
/// logged (naming `what`) and skipped.
fn deliveries(messages: jetstream::consumer::pull::Stream, what: &'static str) -> Deliveries {
    Box::pin(messages.filter_map(move |message| async move {
        match message {
            Ok(message) => {
                let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                Some(Delivery {
                    subject: message.subject.to_string(),
                    payload: message.payload.clone(),
                    delivered: u64::try_from(delivered).unwrap_or(1),
                    acker: Acker::Nats(NatsAcker::new(message)),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} error; continuing");
                None
            }
        }
    }))
}

fn publish_error(subject: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Publish {
        subject: subject.to_owned(),
        reason: e.to_string(),
    }
}

/// A comma-separated URL list with any passwords replaced, for error messages.
fn redact_all(urls: &str) -> String {
    urls.split(',')
        .map(|u| switchyard_core::redact_url(u.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_urls_never_reach_errors() {
        assert_eq!(
            super::redact_all("nats://u:hunter2@a:4222, nats://b:4222"),
            "nats://u:***@a:4222,nats://b:4222"
        );
    }
}
