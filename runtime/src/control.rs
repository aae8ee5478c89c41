//! The NATS micro service `switchyard` (`$SRV.PING/INFO/STATS.switchyard`), endpoints
//! under `<prefix>.ctl.`: `status` (live provider state and applied config versions)
//! and `reload` (reload every config from the database in this process).

use async_nats::service::ServiceExt;
use futures_util::StreamExt;
use switchyard_core::Subjects;
use switchyard_tasks::Tasks;

use crate::{bus::Bus, engine::Engine, reloader::ReloadHandle};

/// Why the control service could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the NATS control service: {0}")]
pub struct ControlError(String);

/// The running control service.
pub struct Control {
    tasks: Tasks,
}

impl Control {
    /// Stops answering.
    pub async fn stop(self) {
        self.tasks.shutdown(std::time::Duration::from_secs(5)).await;
    }
}

/// Starts the service on `bus`; `None` on a bus no other process shares (memory://),
/// where nobody could call it.
///
/// # Errors
/// [`ControlError`] when NATS refuses the service or an endpoint.
pub async fn start(
    bus: &Bus,
    engine: Engine,
    reload: ReloadHandle,
) -> Result<Option<Control>, ControlError> {
    let Some(client) = bus.nats_client().cloned() else {
        return Ok(None);
    };
    let subjects: Subjects = bus.subjects().clone();
    let stats_engine = engine.clone();
    let service = client
        .service_builder()
        .description("Switchyard runtime: live provider status and reload")
        // `$SRV.STATS` carries the config version each instance of this process runs,
        // so an operator can see every replica converge.
        .stats_handler(move |_endpoint, _stats| {
            let versions: std::collections::BTreeMap<String, i64> = stats_engine
                .status()
                .into_iter()
                .map(|s| (s.config_id.to_string(), s.version))
                .collect();
            serde_json::json!({ "config_versions": versions })
        })
        .start("switchyard", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| ControlError(e.to_string()))?;
    let group = service.group(subjects.control());
    let mut status = group
        .endpoint("status")
        .await
        .map_err(|e| ControlError(e.to_string()))?;
    let mut reloads = group
        .endpoint("reload")
        .await
        .map_err(|e| ControlError(e.to_string()))?;
    let tasks = Tasks::new("control");
    tasks.spawn("control-service", async move {
        // The service lives as long as this task holds it.
        let _service = service;
        loop {
            tokio::select! {
                Some(request) = status.next() => {
                    let body = serde_json::to_vec(&engine.status()).unwrap_or_default();
                    if let Err(e) = request.respond(Ok(body.into())).await {
                        tracing::warn!(error = %e, "control reply failed");
                    }
                }
                Some(request) = reloads.next() => {
                    let body = match reload.reload_all().await {
                        Ok(report) => serde_json::to_vec(&report).unwrap_or_default(),
                        Err(e) => serde_json::to_vec(&serde_json::json!({"error": e.to_string()})).unwrap_or_default(),
                    };
                    if let Err(e) = request.respond(Ok(body.into())).await {
                        tracing::warn!(error = %e, "control reply failed");
                    }
                }
                else => break,
            }
        }
    });
    Ok(Some(Control { tasks }))
}
