//! JetStream's acknowledgements, behind types that carry no NATS type out of the bus:
//! the answer to a published event, and the ack of a delivered command.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, context::PublishAckFuture};

use crate::bus::BusError;

/// JetStream's answer to one published event, still to come.
#[derive(Debug)]
pub struct PendingAck {
    ack: PublishAckFuture,
    subject: String,
}

impl PendingAck {
    pub(in crate::bus) fn new(ack: PublishAckFuture, subject: String) -> Self {
        Self { ack, subject }
    }

    /// Waits until the stream has the event.
    pub(in crate::bus) async fn wait(self) -> Result<(), BusError> {
        match self.ack.await {
            Ok(_) => Ok(()),
            Err(e) => Err(BusError::Publish {
                subject: self.subject,
                reason: e.to_string(),
            }),
        }
    }
}

/// The ack handle of one delivered command.
pub struct NatsAcker(Box<jetstream::Message>);

impl NatsAcker {
    pub(in crate::bus) fn new(message: jetstream::Message) -> Self {
        Self(Box::new(message))
    }

    pub(in crate::bus) async fn ack(self) {
        // A plain ack: a lost one only means a redelivery, which the task row answers
        // without running anything (the row is durable by now).
        if let Err(e) = self.0.ack().await {
            tracing::warn!(error = %e, "command ack failed; it will be redelivered and answered from the task row");
        }
    }

    pub(in crate::bus) async fn nak(self, delay: Option<Duration>) {
        let _ = self.0.ack_with(AckKind::Nak(delay)).await;
    }

    pub(in crate::bus) async fn term(self) {
        let _ = self.0.ack_with(AckKind::Term).await;
    }

    pub(in crate::bus) async fn progress(&self) {
        let _ = self.0.ack_with(AckKind::Progress).await;
    }
}
