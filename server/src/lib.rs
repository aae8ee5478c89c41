//! The serving process, composed: the runtime (actor system, reloader, command
//! consumer, replicas, control service) with the HTTP front in front of it. This is
//! the composition root; the runtime knows nothing of HTTP and the HTTP crate nothing
//! of how the process starts.

mod logging;

pub use logging::init_tracing;

use std::{future::Future, time::Duration};

use tokio::sync::watch;

use switchyard_runtime::{
    InitError, Runtime,
    artifacts::ArtifactStore,
    bus::Bus,
    facade::{Gateway, GatewayParts},
    pipeline::{Pipeline, Readiness, run_intake},
    settings::HttpSettings,
};
use switchyard_tasks::Tasks;

/// A runtime serving in its own task.
#[derive(Debug)]
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<Result<(), InitError>>>,
    _tasks: Tasks,
}

impl Running {
    /// Shuts the runtime down and waits until it has stopped.
    ///
    /// # Errors
    /// The runtime's own error, or [`InitError::Stopped`] if its task died.
    pub async fn stop(self) -> Result<(), InitError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| InitError::Stopped(e.to_string()))?
            .unwrap_or_else(|| Err(InitError::Stopped("the runtime task panicked".into())))
    }
}

/// Serving a prepared [`Runtime`].
pub trait Serve {
    /// Runs until `shutdown` resolves: the actor system, the bus consumer, the HTTP
    /// server and the NATS control service. On shutdown it stops pulling commands,
    /// hands back unstarted ones, lets running ones finish, and closes the database.
    ///
    /// # Errors
    /// [`InitError`] for start-up failures.
    fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Result<(), InitError>> + Send;
    /// Runs in a task of its own on `bus` (which the caller keeps using, e.g. the demo's
    /// in-process bus); [`Running::stop`] shuts it down cleanly.
    fn spawn_with_bus(self, bus: Bus) -> Running;
    /// [`Serve::run`] on a bus the caller already holds.
    ///
    /// # Errors
    /// [`InitError`] for start-up failures.
    fn run_with_bus(
        self,
        bus: Bus,
        shutdown: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Result<(), InitError>> + Send;
}

impl Serve for Runtime {
    /// Runs until `shutdown` resolves: the actor system, the bus consumer, the HTTP
    /// server and the NATS control service. On shutdown it stops pulling commands,
    /// hands back unstarted ones, lets running ones finish, and closes the database.
    ///
    /// # Errors
    /// [`InitError`] for start-up failures.
    async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), InitError> {
        let bus = self.connect_bus().await?;
        self.run_with_bus(bus, shutdown).await
    }

    /// Runs in a task of its own on `bus` (which the caller keeps using, e.g. the demo's
    /// in-process bus); [`Running::stop`] shuts it down cleanly.
    fn spawn_with_bus(self, bus: Bus) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tasks = Tasks::new("running");
        let task = tasks.spawn_with_result("runtime", async move {
            self.run_with_bus(bus, async {
                let _ = stopped.await;
            })
            .await
        });
        Running {
            stop,
            task,
            _tasks: tasks,
        }
    }

    /// [`Runtime::run`] on a bus the caller already holds (the demo talks to the same
    /// in-process bus).
    ///
    /// # Errors
    /// [`InitError`] for start-up failures.
    async fn run_with_bus(
        self,
        bus: Bus,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), InitError> {
        let runtime = self;
        let token = runtime.admin_token()?;
        let readiness = Readiness::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        // Owns every background task of this process; stopped last, after a clean drain.
        let tasks = Tasks::new("serve");
        let shared_bus = bus.is_shared().then(|| bus.clone());
        let (engine, reload) = runtime
            .start_engine(shared_bus, stop_rx.clone(), &tasks)
            .await?;

        let listener = tokio::net::TcpListener::bind(&runtime.settings.http.listen)
            .await
            .map_err(|e| InitError::Listen(runtime.settings.http.listen.clone(), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| InitError::Listen(runtime.settings.http.listen.clone(), e))?;
        tracing::info!(listen = %local, bus = %switchyard_core::redact_url(&runtime.settings.bus.url), "serving");
        let membership = if bus.is_shared() {
            Some(
                switchyard_runtime::replicas::start(
                    bus.clone(),
                    engine.clone(),
                    stop_rx.clone(),
                    &tasks,
                )
                .await,
            )
        } else {
            None
        };
        let quotas = switchyard_runtime::quota::Quotas::new(runtime.store.clone());
        quotas.sweep(&tasks);
        switchyard_runtime::retention::Cleaner::new(
            runtime.store.clone(),
            ArtifactStore::open(&runtime.settings.artifacts.url)?,
            runtime.settings.retention.clone(),
        )
        .start(&tasks, stop_rx.clone());
        let webhooks = switchyard_runtime::webhooks::Webhooks::new(
            runtime.store.clone(),
            runtime.settings.webhooks.clone(),
            switchyard_runtime::guard::Guard::installed(),
        );
        webhooks.start(bus.clone(), &tasks, stop_rx.clone()).await;
        let pipeline = Pipeline::new(
            runtime.store.clone(),
            engine.clone(),
            bus.clone(),
            quotas.clone(),
        )
        .with_progress_every(Duration::from_millis(runtime.settings.bus.ack_wait_ms / 3))
        .with_reply_to_allow(runtime.settings.bus.reply_to_allow.clone())
        .with_lease(Duration::from_millis(runtime.settings.bus.ack_wait_ms))
        .with_readiness(readiness.clone())
        .with_cache(runtime.settings.cache.clone())
        .with_limits(
            switchyard_runtime::limits::Limits::new(
                runtime.store.clone(),
                runtime.settings.tenants.defaults(),
                engine.clock(),
            )
            .with_membership(membership.clone())
            .with_tasks(&tasks),
            runtime.settings.tenants.over_limit,
            Duration::from_millis(runtime.settings.tenants.max_wait_ms),
        )
        .with_intake_window(switchyard_runtime::pipeline::IntakeWindow {
            count: runtime.settings.bus.intake_window,
            bytes: runtime.settings.bus.intake_window_bytes,
        })
        .with_tasks(&tasks);
        let batches = switchyard_runtime::batches::Batches::new(
            runtime.store.clone(),
            pipeline.clone(),
            runtime.settings.batches.clone(),
        );
        batches.clone().start(&tasks, stop_rx.clone());
        let gateway = Gateway::new(GatewayParts {
            store: runtime.store.clone(),
            engine: engine.clone(),
            pipeline: pipeline.clone(),
            bus: bus.clone(),
            reload: reload.clone(),
            membership,
            quotas,
            artifacts: ArtifactStore::open(&runtime.settings.artifacts.url)?,
            retention: runtime.settings.retention.defaults(),
            webhooks: webhooks.clone(),
            batches,
        });
        let app = switchyard_http::router(switchyard_http::HttpState {
            gateway,
            readiness: readiness.clone(),
            metrics: switchyard_runtime::telemetry::prometheus(),
            admin: Some(switchyard_http::AdminState { token }),
            https: runtime
                .settings
                .http
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://")),
        });
        let mut http_stop = stop_rx.clone();
        let http = tasks.spawn_with_result(
            "http",
            switchyard_http::serve(
                listener,
                app,
                connection_policy(&runtime.settings.http),
                async move {
                    let _ = http_stop.wait_for(|s| *s).await;
                },
            ),
        );
        let control =
            switchyard_runtime::control::start(&bus, engine.clone(), reload.clone()).await?;
        let calls = pipeline.clone();
        let intake = tasks.spawn_with_result(
            "intake",
            run_intake(
                pipeline,
                runtime.settings.bus.concurrency,
                readiness,
                stop_rx,
            ),
        );

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        match intake.await {
            Ok(Some(Err(e))) => tracing::error!(error = %e, "command consumer failed"),
            Ok(None) | Err(_) => tracing::error!("command consumer panicked"),
            Ok(Some(Ok(()))) => {}
        }
        let _ = http.await;
        // No call can come now: the records of the answered ones are written.
        if !calls.drain_calls(Duration::from_secs(30)).await {
            tracing::error!("records of answered calls were still unwritten at shutdown");
        }
        if let Some(control) = control {
            control.stop().await;
        }
        engine.shutdown();
        tasks.shutdown(Duration::from_secs(5)).await;
        runtime.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The HTTP connection bounds the `[http]` settings describe.
fn connection_policy(http: &HttpSettings) -> switchyard_http::ConnectionPolicy {
    switchyard_http::ConnectionPolicy {
        header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(http.idle_timeout_ms),
        stall_timeout: Duration::from_millis(http.stall_timeout_ms),
        min_body_rate: http.min_body_rate,
        max_connections: http.max_connections,
        max_connections_per_ip: http.max_connections_per_ip,
        drain_grace: Duration::from_millis(http.drain_grace_ms),
    }
}
