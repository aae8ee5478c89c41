//! One repository API over PostgreSQL (production) and SQLite (embedded default).
//!
//! Each query is written once with `$N` placeholders, which both drivers accept, and
//! runs on whichever pool the URL chose: `on_pool!` expands the same code for each
//! driver so that types are checked per database. Column types are chosen so that one
//! Rust type decodes from both (`BIGINT`/`INTEGER` → `i64`, `JSONB`/`TEXT` → JSON,
//! `TIMESTAMPTZ`/`TEXT` → `DateTime<Utc>`).
//!
//! Errors are per operation family, each with only the variants its operations can
//! produce: [`OpenError`] (connecting, migrating, the master-key check),
//! [`ConfigWriteError`] and [`ConfigReadError`] (provider configs), [`PluginWriteError`]
//! (the plugin registry), [`GroupCommitError`] (the batched task writer) and
//! [`QueryError`] (every other query). [`QueryError::refusal`] tells a write whose
//! values the database refused for good (a [`Refusal`]: data exception, integrity
//! violation, index entry too large) from an error a retry may get past.
//!
//! Hazards: migrations live in two folders (`migrations/postgres`, `migrations/sqlite`)
//! that must stay in step; only the PostgreSQL one may hold NOTIFY triggers.

mod artifacts;
mod batch;
mod batches;
mod errors;
mod feedback;
mod keys;
mod leases;
mod limits;
mod oauth_tokens;
mod plans;
mod plugins;
mod providers;
mod quota_batch;
mod quota_holds;
mod quotas;
mod refusal;
mod retention;
pub mod secrets;
mod seed;
mod stats;
mod tasks;
mod templates;
mod usage;
mod usage_report;
mod webhooks;

use std::{str::FromStr, time::Duration};

use crate::secrets::MasterKey;
use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

pub use batch::{Claim, Completion, Failure, GroupCommit, GroupCommitError, MAX_BATCH, Start};
pub use batches::{
    Batch, BatchCounts, BatchInsert, BatchItem, BatchState, CancelledTask, DispatchedTask,
};
pub use errors::QueryError;
pub use feedback::{Feedback, MAX_COMMENT};
pub use keys::TenantKey;
pub use leases::lease_holder;
pub use limits::TenantLimits;
pub use plans::{Plan, PlanError};
pub use plugins::{Installed, PluginInfo, PluginWriteError};
pub use providers::{
    ConfigChange, ConfigListener, ConfigReadError, ConfigWriteError, ProviderFilter, ProviderRecord,
};
pub use quota_holds::HoldAsk;
pub use quotas::{CountedQuota, Left, Quota, QuotaPeriod, StoredQuota};
pub use refusal::{Refusal, RefusalKind};
pub use retention::{MAX_DAYS, MIN_USAGE_DAYS, Reference, RetentionField, RetentionPolicy, Scope};
pub use seed::SeedReport;
pub use stats::{AttemptRow, ConfigStats, StatsBucket, StatsBucketSize};
pub use tasks::{
    NewTask, NewTaskResult, StoredJson, Task, TaskInsert, TaskResult, TaskStatus, cache_key,
};
pub use templates::PromptTemplate;
pub use usage::{UsageRecord, UsageSummaryRow, UsageTotals};
pub use usage_report::{FailureDayRow, ReportScope, UsageDayRow, parse_day};
pub use webhooks::{
    AttemptOutcome, DeliveryRecord, DueDelivery, NewDelivery, NewWebhook, Webhook, WebhookTarget,
};

/// Runs `$body` with `$pool` bound to the concrete pool of whichever database is in use.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Postgres($pool) => $body,
            $crate::Pool::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Why the store could not be opened, migrated or checked (the operations of
/// [`Store::connect`], [`Store::migrate`], [`Store::check_master_key`],
/// [`Store::has_master_key_check`] and [`drop_schema`]).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL is not usable.
    #[error("bad database url: {0}")]
    BadUrl(String),
    /// The master key does not match the one the database was set up with.
    #[error(
        "the master key does not match the one this database's secrets were encrypted with; \
         restore the original key (secrets.master_key or secrets.master_key_file)"
    )]
    WrongMasterKey,
}

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// The repository: provider configs, tasks, results, parameters, usage and quotas.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    key: MasterKey,
    /// SQLite files: the background WAL checkpointer, stopped with the last clone.
    _checkpointer: Option<std::sync::Arc<Checkpointer>>,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `sqlite://path`, `sqlite::memory:` or `postgres://…`.
    pub url: String,
    /// PostgreSQL schema (created if missing).
    pub schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
}

impl Store {
    /// Connects (creating the SQLite file and its directory if needed) and applies
    /// pending migrations. Does not check the master key; see [`Store::check_master_key`].
    ///
    /// # Errors
    /// [`OpenError::BadUrl`], [`OpenError::Database`] or [`OpenError::Migrate`].
    pub async fn connect(options: &ConnectOptions, key: MasterKey) -> Result<Self, OpenError> {
        let (pool, checkpoint) = connect_pool(options).await?;
        let mut store = Self {
            pool,
            key,
            _checkpointer: None,
        };
        store.migrate().await?;
        // Only now: a second connection opening the file while the first sets it up
        // can be refused with "database is locked".
        store._checkpointer = checkpoint.map(|c| std::sync::Arc::new(Checkpointer::start(c)));
        Ok(store)
    }

    /// Applies pending migrations of this backend.
    ///
    /// # Errors
    /// [`OpenError::Migrate`].
    pub async fn migrate(&self) -> Result<(), OpenError> {
        match &self.pool {
            Pool::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await?,
            Pool::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Whether the database already holds a master-key check value (i.e. secrets may
    /// have been encrypted with some key).
    ///
    /// # Errors
    /// [`OpenError::Database`].
    pub async fn has_master_key_check(&self) -> Result<bool, OpenError> {
        Ok(self.meta(MASTER_KEY_CHECK).await?.is_some())
    }

    /// Verifies that this store's master key is the one the database was set up with,
    /// recording a check value on first use.
    ///
    /// # Errors
    /// [`OpenError::WrongMasterKey`] when it is not, or [`OpenError::Database`].
    pub async fn check_master_key(&self) -> Result<(), OpenError> {
        match self.meta(MASTER_KEY_CHECK).await? {
            Some(stored) => match self.key.decrypt(&stored) {
                Ok(text) if text == MASTER_KEY_CHECK_TEXT => Ok(()),
                _ => Err(OpenError::WrongMasterKey),
            },
            None => {
                let value = self.key.encrypt(MASTER_KEY_CHECK_TEXT);
                on_pool!(self, |pool| sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
                )
                .bind(MASTER_KEY_CHECK)
                .bind(value)
                .execute(pool)
                .await
                .map(|_| ()))?;
                // A concurrent first start may have won; check what is stored now.
                Box::pin(self.check_master_key()).await
            }
        }
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, OpenError> {
        let value: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT value FROM meta WHERE key = $1"
        )
        .bind(key)
        .fetch_optional(pool)
        .await)?;
        Ok(value)
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await);
    }

    pub(crate) fn key(&self) -> &MasterKey {
        &self.key
    }
}

/// Prepared statements kept per SQLite connection. The group commit makes one statement
/// text per table and row count (powers of two up to 64 rows: seven a table), and the
/// store's own queries come on top; sqlx's default of 100 once made SQLite re-parse
/// them over and over at full load. (PostgreSQL keeps sqlx's default: there the
/// statements live in the server, per connection, and its batches use at most 20 rows.)
const STATEMENT_CACHE: usize = 1024;

const MASTER_KEY_CHECK: &str = "master_key_check";
const MASTER_KEY_CHECK_TEXT: &str = "switchyard master key check";

/// How often the WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which a committing writer checkpoints by itself (SQLite's default is
/// 1,000): only a backstop for a checkpointer that falls behind.
const WAL_AUTOCHECKPOINT_PAGES: &str = "10000";

/// Copies the SQLite WAL back into the database file on a connection of its own,
/// every [`CHECKPOINT_EVERY`], so that committing writers do not: with SQLite's
/// automatic checkpoints every ~1,000 pages, about one group commit in a few dozen
/// also copied the WAL (a tenth of the database thread's work at full load, all of it
/// in the latency of the commands in that batch). `PASSIVE` never waits for readers
/// or writers.
#[derive(Debug)]
struct Checkpointer {
    tasks: switchyard_tasks::Tasks,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tasks.cancel();
    }
}

impl Checkpointer {
    fn start(connect: SqliteConnectOptions) -> Self {
        use sqlx::ConnectOptions as _;
        let tasks = switchyard_tasks::Tasks::new("store");
        tasks.spawn("wal-checkpointer", async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + CHECKPOINT_EVERY,
                CHECKPOINT_EVERY,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut connection = None;
            loop {
                tick.tick().await;
                if connection.is_none() {
                    match connect.connect().await {
                        Ok(c) => connection = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpointer cannot connect");
                            continue;
                        }
                    }
                }
                if let Some(c) = connection.as_mut()
                    && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&mut *c)
                        .await
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    connection = None;
                }
            }
        });
        Self { tasks }
    }
}

/// The pool, and for an SQLite file the options the WAL checkpointer connects with.
async fn connect_pool(
    options: &ConnectOptions,
) -> Result<(Pool, Option<SqliteConnectOptions>), OpenError> {
    let url = options.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut connect =
            PgConnectOptions::from_str(url).map_err(|e| OpenError::BadUrl(e.to_string()))?;
        if let Some(schema) = &options.schema {
            create_schema(connect.clone(), schema).await?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        Ok((Pool::Postgres(pool), None))
    } else if url.starts_with("sqlite:") {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| OpenError::BadUrl(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .statement_cache_capacity(STATEMENT_CACHE);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // The checkpointer's connection changes no settings: WAL mode is kept in the
        // file once the pool has set it.
        let checkpoint = (!in_memory).then(|| connect.clone());
        let connect = if in_memory {
            connect
        } else {
            let path = connect.get_filename();
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    OpenError::BadUrl(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            // WAL with synchronous=NORMAL: a commit survives a process crash (what the
            // delivery guarantees need); only an OS crash or power loss can drop the
            // last commits. PostgreSQL is the choice where that matters.
            connect
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        };
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection.
            .max_connections(if in_memory {
                1
            } else {
                options.max_connections
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        Ok((Pool::Sqlite(pool), checkpoint))
    } else {
        Err(OpenError::BadUrl(format!(
            "unsupported scheme in '{}'",
            switchyard_core::redact_url(url)
        )))
    }
}

/// Drops a PostgreSQL schema with everything in it (the load tool's clean-up of the
/// schema it made for one run).
///
/// # Errors
/// [`OpenError::BadUrl`] for a name that is not `[A-Za-z0-9_]+`, or the database's.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), OpenError> {
    check_schema_name(schema)?;
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    // The name was checked to be [A-Za-z0-9_]+, so quoting it is safe.
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let result = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .execute(&pool)
        .await;
    pool.close().await;
    result.map(|_| ()).map_err(Into::into)
}

fn check_schema_name(schema: &str) -> Result<(), OpenError> {
    if schema.is_empty()
        || !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(OpenError::BadUrl(format!("bad schema name '{schema}'")));
    }
    Ok(())
}

async fn create_schema(connect: PgConnectOptions, schema: &str) -> Result<(), OpenError> {
    check_schema_name(schema)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await?;
    // The name was checked above to be [A-Za-z0-9_]+, so quoting it is safe.
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    let result = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .execute(&pool)
        .await;
    pool.close().await;
    match result {
        Ok(_) => Ok(()),
        // Two processes creating the same schema at once: one wins, both are fine.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
