//! Integration tests of the `switchyard` package: one test binary (linking is the cost
//! that dominates on 2 cores). Storage tests run against SQLite and the real
//! PostgreSQL server, each PostgreSQL test in its own schema.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test's helper tasks end with the test"
)]

mod abuse;
mod architecture;
mod artifacts;
mod batches;
mod bus;
mod cache;
mod calls;
mod cli;
mod cli_tenants;
mod cluster;
mod connections;
mod fallback;
mod guard;
mod jobs;
mod limits;
mod metrics;
mod multimodal;
mod oauth2;
mod oauth2_vault;
mod object_store;
mod openai;
mod outage;
mod own_accounts;
mod own_accounts_resume;
mod plans;
mod plugins;
mod presets;
mod priority;
mod protocol;
mod providers;
mod quotas;
mod reload;
mod retention;
mod schema;
mod secrets;
mod stats;
mod storage;
mod support;
mod templates;
mod usage_report;
mod webhooks;
