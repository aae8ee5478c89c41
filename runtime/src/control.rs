//! The NATS micro service `switchyard` (`$SRV.PING/INFO/STATS.switchyard`), endpoints
//! under `<prefix>.ctl.`: live provider status now; reload arrives with hot reload.

use async_nats::service::ServiceExt;
use futures_util::StreamExt;
use switchyard_core::Subjects;

use crate::{engine::Engine, serve::InitError};

/// The running control service.
pub struct Control {
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    /// Stops answering.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Starts the service on `client`.
///
/// # Errors
/// [`InitError::Control`].
pub async fn start(
    client: async_nats::Client,
    subjects: Subjects,
    engine: Engine,
) -> Result<Control, InitError> {
    let service = client
        .service_builder()
        .description("Switchyard runtime: live provider status")
        .start("switchyard", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| InitError::Control(e.to_string()))?;
    let group = service.group(subjects.control());
    let mut status = group
        .endpoint("status")
        .await
        .map_err(|e| InitError::Control(e.to_string()))?;
    let task = tokio::spawn(async move {
        // The service lives as long as this task holds it.
        let _service = service;
        while let Some(request) = status.next().await {
            let body = serde_json::to_vec(&engine.status()).unwrap_or_default();
            if let Err(e) = request.respond(Ok(body.into())).await {
                tracing::warn!(error = %e, "control reply failed");
            }
        }
    });
    Ok(Control { task })
}
