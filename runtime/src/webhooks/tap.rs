//! The tap: takes the events of tenants with webhooks off the bus and queues one
//! delivery per endpoint that asked for the event's type, then acknowledges the
//! event. On NATS it pulls from one durable consumer of the event stream, shared by
//! every process and filtered to those tenants' subjects, so each event is queued by
//! one process, and an event whose deliveries were not yet written (a crash, a
//! database outage) is delivered to the tap again. Queueing twice is a no-op.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use switchyard_core::{Event, Tenant};
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
    loop {
        let tenants = registry.snapshot().tenants();
        // On NATS only those tenants' events are pulled (none: nothing is); in process
        // every event is looked at, so no subscription gap follows a change.
        let filters: Vec<String> = if !bus.is_shared() {
            vec![bus.subjects().all_events()]
        } else {
            tenants
                .iter()
                .filter_map(|t| Tenant::new(t.as_str()).ok())
                .map(|t| bus.subjects().tenant_events(&t))
                .collect()
        };
        if filters.is_empty() {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = stopped(&mut shutdown) => return,
            }
            continue;
        }
        let mut queue = match bus.event_queue(CONSUMER, filters).await {
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
                    if bus.is_shared() && registry.snapshot().tenants() != tenants {
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
    let event_id = event_msg_id(&event);
    let deliveries: Vec<NewDelivery> = snapshot
        .hooks_for(event.tenant.as_str(), event_type)
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

/// Resolves once `shutdown` says stop (holding no borrow of it across awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
