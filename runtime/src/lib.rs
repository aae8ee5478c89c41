//! Switchyard's runtime: everything that touches the world.
//!
//! Code map:
//! - [`settings`]: process settings from `config/switchyard.toml` and `SWITCHYARD_*`
//!   env (figment), validated at start with messages that name the key.
//! - [`secrets`]: the master key and AES-256-GCM encryption of API keys at rest.
//! - [`store`]: one repository API over PostgreSQL and SQLite (sqlx): provider configs,
//!   tasks, results, parameters, usage, quotas; migrations and config-file seeding.
//! - [`actors`]: supervised provider actors (rate limiter, breaker, cool-down) and the
//!   routing table they publish.
//! - [`engine`]: submit a command, get its events; routing, fallback, artifacts.
//! - [`providers`]: the `ProviderAdapter` port, the real HTTP adapters (one module per
//!   provider type, sharing [`providers::wire`]) and the `mock` adapter.
//! - [`inputs`]: `image.edit` input images (URL, artifact id, base64) resolved once.
//! - [`artifacts`]: content-addressed image storage over `object_store`.
//! - [`bus`]: commands in, events out — `memory://` and NATS JetStream behind one type.
//! - [`pipeline`]: the one request path (intake → persist → admit → run → settle) and
//!   its delivery guarantees (task row, events, one terminal event, ack).
//! - [`quota`]: per-tenant quotas, checked before a request runs.
//! - [`reloader`]: the only writer of the live provider set; follows change notices,
//!   PostgreSQL NOTIFY and a fingerprint poll.
//! - [`replicas`]: NATS heartbeats; each process takes 1/n of every account's limits;
//!   breaker openings are shared.
//! - [`control`]: the NATS micro service (status, reload, stats).
//! - [`telemetry`]: the Prometheus recorder.
//! - [`facade`]: the runtime as the HTTP front sees it ([`facade::Gateway`] and the
//!   types it answers with); `switchyard-http` names nothing else of the runtime.
//! - [`serve`]: start-up (open, migrate and seed the database; start the engine and the
//!   reloader). HTTP lives in `switchyard-http`, the composed process in
//!   `switchyard-server`.
//!
//! Invariants:
//! - API keys are stored only encrypted, and leave the store only as
//!   [`switchyard_core::ApiKey`], which masks itself everywhere but `expose()`.
//! - Settings are fixed for the process lifetime; provider configs live in the database.

pub mod actors;
pub mod artifact_urls;
pub mod artifacts;
pub mod batches;
pub mod bus;
pub mod clock;
pub mod control;
pub mod engine;
pub mod facade;
pub mod inputs;
pub mod limits;
pub mod oauth_vault;
pub mod pipeline;
pub mod plugins;
pub mod quota;
pub mod reloader;
pub mod replicas;
pub mod retention;
pub mod serve;
pub mod settings;
pub mod telemetry;
pub mod templates;
pub mod usage_report;
pub mod webhooks;

pub use switchyard_guard as guard;
pub use switchyard_providers as providers;
pub use switchyard_store::{self as store, secrets};

pub use engine::{Engine, EngineError, EngineOptions, RequestOutcome, Submission};
pub use secrets::{MasterKey, SecretError};
pub use serve::{InitError, Runtime, open_store, prepare};
pub use settings::{Settings, SettingsError};
pub use store::{OpenError, Store};
