//! The tap: takes events off the bus while any tenant has a webhook, and queues one
//! delivery per endpoint of the event's tenant that asked for its type, then
//! acknowledges the event. On NATS it pulls from one durable consumer of the event
//! stream, shared by every process and filtered to the event types an endpoint may
//! ask for (the same filter everywhere), so each event is queued by one process, and
//! an event whose deliveries were not yet written (a crash, a database outage) is
//! delivered to the tap again. Queueing twice is a no-op.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use switchyard_core::Event;
use tokio::sync::{Notify, watch};

use super::registry::Registry;
use crate::{
    bus::{Bus, Delivery, event_msg_id},
    store::{NewDelivery, Store},
};

/// The durable consumer's name (one per event stream).
const CONSUMER: &str = "webhooks";

/// Runs until `shutdown`.
pub(super) async fn run(
    bus: Bus,
    store: Store,
    registry: Registry,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = registry.subscribe();
    // On NATS, the event types an endpoint may ask for (never the streamed chunks),
    // the same filter in every process, so no process narrows another's; in process,
    // every event (looked at here).
    let filters: Vec<String> = if bus.is_shared() {
        super::EVENT_TYPES
            .iter()
            .map(|&t| bus.subjects().events_of_type(t))
            .collect()
    } else {
        vec![bus.subjects().all_events()]
    };
    loop {
        // Nothing is pulled while no tenant has an endpoint (a registration later
        // skips what came before it).
        if registry.snapshot().is_empty() {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = stopped(&mut shutdown) => return,
            }
            continue;
        }
        let mut queue = match bus.event_queue(CONSUMER, filters.clone()).await {
            Ok(queue) => queue,
            Err(error) => {
                tracing::warn!(%error, "cannot take events for webhooks; trying again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stopped(&mut shutdown) => return,
                }
            }
        };
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if registry.snapshot().is_empty() {
                        break;
                    }
                }
                delivery = queue.next() => match delivery {
                    Some(delivery) => take(&bus, &store, &registry, &wake, delivery).await,
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                },
            }
        }
    }
}

/// Queues the deliveries of one event, then acknowledges it.
async fn take(bus: &Bus, store: &Store, registry: &Registry, wake: &Notify, delivery: Delivery) {
    let Ok(event) = serde_json::from_slice::<Event>(&delivery.payload) else {
        // Nothing this build reads: nothing to send.
        delivery.ack().await;
        return;
    };
    // Believed only on its own subject (a body naming another tenant is forged).
    let expected = bus
        .subjects()
        .event(&event.tenant, &event.request_id, event.event_type());
    if delivery.subject != expected {
        delivery.ack().await;
        return;
    }
    let snapshot = registry.snapshot();
    let event_type = event.event_type().as_str();
    let Ok(payload) = std::str::from_utf8(&delivery.payload) else {
        delivery.ack().await;
        return;
    };
    let event_id = webhook_id(&event);
    let deliveries: Vec<NewDelivery> = snapshot
        .hooks_for(event.tenant.as_str(), event_type)
        // An endpoint hears of what happened after it was registered.
        .filter(|hook| event.time >= hook.created_at)
        .map(|hook| NewDelivery {
            webhook_id: hook.id,
            tenant: hook.tenant.clone(),
            event_id: event_id.clone(),
            event_type: event_type.to_owned(),
            request_id: event.request_id.to_string(),
            payload: payload.to_owned(),
        })
        .collect();
    if deliveries.is_empty() {
        delivery.ack().await;
        return;
    }
    let now = chrono::Utc::now().timestamp_millis();
    match store.queue_deliveries(&deliveries, now).await {
        Ok(_) => {
            delivery.ack().await;
            wake.notify_one();
        }
        Err(error) => {
            tracing::warn!(%error, tenant = %event.tenant, request_id = %event.request_id, "cannot queue webhook deliveries; the event comes again");
            if !bus.is_shared() {
                // The in-process bus does not deliver it again.
                metrics::counter!("switchyard_webhook_events_lost_total").increment(1);
            }
            delivery.nak(Some(Duration::from_secs(1))).await;
        }
    }
}

/// An event's `webhook-id`: its message id and its time in Unix ms, the same for
/// every delivery of that event, and new for a request id used again after its task
/// was deleted by retention.
fn webhook_id(event: &Event) -> String {
    format!("{}:{}", event_msg_id(event), event.time.timestamp_millis())
}

/// Resolves once `shutdown` says stop (holding no borrow of it across awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
