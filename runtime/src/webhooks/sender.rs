//! The sender: claims due deliveries (one process at a time for each), POSTs each
//! event to its endpoint with a Standard Webhooks signature, and records the outcome:
//! delivered on a 2xx, else retried after a doubling wait until `retry_for_ms` after
//! the event, then given up. Every URL came from a tenant, so every attempt goes
//! through the outbound guard under the tenants' policy.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::{Notify, watch};

use super::{registry::Registry, sign};
use crate::{
    guard::Guard,
    settings::WebhookSettings,
    store::{AttemptOutcome, DueDelivery, Store},
};

/// Sends deliveries.
#[derive(Debug, Clone)]
pub(super) struct Sender {
    pub(super) store: Store,
    pub(super) registry: Registry,
    pub(super) settings: WebhookSettings,
    pub(super) guard: Guard,
}

impl Sender {
    /// Runs until `shutdown`: at once when woken (a new delivery), else every
    /// `poll_ms` for due retries.
    pub(super) async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.settings.poll_ms);
        loop {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            self.send_due().await;
        }
    }

    /// Sends what is due now, `concurrency` attempts at a time: a slot that frees is
    /// filled at once, so one slow endpoint holds up only its own attempts.
    async fn send_due(&self) {
        let slots = self.settings.concurrency as usize;
        let mut running = futures_util::stream::FuturesUnordered::new();
        loop {
            let free = slots - running.len();
            if free > 0 {
                let now = Utc::now().timestamp_millis();
                // Held long enough for one attempt; a process that dies frees it then.
                let hold = 2 * self.settings.timeout_ms + 5_000;
                let until = now + i64::try_from(hold).unwrap_or(i64::MAX / 4);
                let free = u32::try_from(free).unwrap_or(u32::MAX);
                match self.store.claim_deliveries(now, until, free).await {
                    Ok(due) => running.extend(due.into_iter().map(|d| self.attempt(d, until))),
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim webhook deliveries; trying again");
                    }
                }
            }
            if futures_util::StreamExt::next(&mut running).await.is_none() {
                return;
            }
        }
    }

    /// One attempt of `delivery` (claimed until `claimed_until`), recorded.
    async fn attempt(&self, delivery: DueDelivery, claimed_until: i64) {
        let mut hook = self.registry.snapshot().hook(delivery.webhook_id).cloned();
        if hook.is_none() {
            // Perhaps registered through another replica a moment ago. If the
            // endpoints cannot be read now, the claim runs out and it is tried later.
            if self.registry.refresh().await.is_err() {
                return;
            }
            hook = self.registry.snapshot().hook(delivery.webhook_id).cloned();
        }
        let outcome = match hook {
            None => AttemptOutcome::GaveUp {
                status: None,
                error: "the webhook is disabled".to_owned(),
            },
            Some(hook) => {
                let span = tracing::info_span!("webhook", tenant = %hook.tenant, webhook = hook.id, event = %delivery.event_id);
                let sent = tracing::Instrument::instrument(self.post(&hook, &delivery), span).await;
                match sent {
                    Ok(status) => AttemptOutcome::Delivered { status },
                    Err((status, error)) => self.after_failure(&delivery, status, error),
                }
            }
        };
        let what = match &outcome {
            AttemptOutcome::Delivered { .. } => "delivered",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::GaveUp { .. } => "failed",
        };
        metrics::counter!("switchyard_webhook_attempts_total", "outcome" => what).increment(1);
        match self
            .store
            .record_attempt(delivery.id, claimed_until, &outcome)
            .await
        {
            Ok(true) => {}
            // Its claim ran out and another process took it: that one records it.
            Ok(false) => {
                tracing::warn!(delivery = delivery.id, "webhook attempt outlived its claim")
            }
            // Its claim runs out and it is sent again (the receiver drops the
            // duplicate by its webhook-id).
            Err(error) => {
                tracing::warn!(%error, delivery = delivery.id, "cannot record a webhook attempt");
            }
        }
    }

    /// Retried after a doubling wait, or given up once `retry_for_ms` has passed.
    fn after_failure(
        &self,
        delivery: &DueDelivery,
        status: Option<u16>,
        error: String,
    ) -> AttemptOutcome {
        let wait = backoff(&self.settings, delivery.attempts);
        let next = Utc::now() + wait;
        let give_up_at = delivery.created_at
            + chrono::TimeDelta::milliseconds(
                i64::try_from(self.settings.retry_for_ms).unwrap_or(i64::MAX / 2),
            );
        if next > give_up_at {
            tracing::warn!(delivery = delivery.id, %error, "webhook delivery given up");
            AttemptOutcome::GaveUp { status, error }
        } else {
            AttemptOutcome::Retry {
                status,
                error,
                next_ms: next.timestamp_millis(),
            }
        }
    }

    /// POSTs the event; the endpoint's 2xx status, or what went wrong.
    async fn post(
        &self,
        hook: &super::registry::Hook,
        delivery: &DueDelivery,
    ) -> Result<u16, (Option<u16>, String)> {
        self.guard
            .check_tenant_url(&hook.url)
            .map_err(|e| (None, e.to_string()))?;
        let timestamp = Utc::now().timestamp();
        let body = delivery.payload.as_bytes();
        let signature = sign::sign(&hook.key, &delivery.event_id, timestamp, body);
        let answer = self
            .guard
            .provider_client()
            .post(hook.url.clone())
            .timeout(Duration::from_millis(self.settings.timeout_ms))
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await
            .map_err(|e| (None, self.guard.transport_error(&hook.url, &e).to_string()))?;
        let status = answer.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err((
                Some(status.as_u16()),
                format!("the endpoint answered {status}"),
            ))
        }
    }
}

/// The wait after the `attempts`+1-th failed attempt: `first_retry_ms` doubled per
/// attempt before, at most `max_retry_ms`, less up to a tenth at random (so many
/// deliveries that failed together do not come back together).
fn backoff(settings: &WebhookSettings, attempts: i64) -> chrono::TimeDelta {
    let doublings = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
    let wait = settings
        .first_retry_ms
        .saturating_mul(1u64 << doublings)
        .min(settings.max_retry_ms);
    let jitter = rand::random::<u64>() % (wait / 10 + 1);
    chrono::TimeDelta::milliseconds(i64::try_from(wait - jitter).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let settings = WebhookSettings {
            first_retry_ms: 1_000,
            max_retry_ms: 10_000,
            ..WebhookSettings::default()
        };
        let ms = |attempts| backoff(&settings, attempts).num_milliseconds();
        assert!((900..=1_000).contains(&ms(0)), "{}", ms(0));
        assert!((1_800..=2_000).contains(&ms(1)), "{}", ms(1));
        assert!((7_200..=8_000).contains(&ms(3)), "{}", ms(3));
        assert!((9_000..=10_000).contains(&ms(4)), "{}", ms(4));
        assert!((9_000..=10_000).contains(&ms(1_000)), "{}", ms(1_000));
    }
}
