//! Cluster-wide leases: one process at a time runs a once-per-cluster job (the
//! retention cleaner), and a run starts at most once per interval across the cluster.
//! A row in the database rather than an advisory lock, so that it works the same on
//! SQLite and PostgreSQL and a holder that dies frees it when its lease runs out.

use crate::{QueryError, Store, on_pool};

/// A name for this process as the holder of a lease: host, pid and a random part, so
/// two processes (or two holders in one) never share one.
pub fn lease_holder() -> String {
    format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "switchyard".to_owned()),
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Store {
    /// Takes lease `name` for `holder` until `until_ms` (Unix ms) if it is free (never
    /// taken, or expired before `now_ms`) and no run started after `not_since_ms`;
    /// records `now_ms` as the start of a run. True if `holder` has it now.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
        not_since_ms: i64,
    ) -> Result<bool, QueryError> {
        let taken: Option<String> = on_pool!(self, |pool| {
            sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_ms, last_run_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_ms = excluded.expires_ms, last_run_ms = excluded.last_run_ms \
             WHERE leases.expires_ms < $5 AND leases.last_run_ms <= $6 \
             RETURNING holder"
        )
        .bind(name)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(not_since_ms)
        .fetch_optional(pool)
        .await
        })?;
        Ok(taken.is_some_and(|h| h == holder))
    }

    /// Extends `holder`'s lease `name` to `until_ms`; false if it is not `holder`'s
    /// any more (it ran out and another process took it).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE leases SET expires_ms = $1 WHERE name = $2 AND holder = $3"
        )
        .bind(until_ms)
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// Gives lease `name` back (if `holder` still has it); the time of its last run
    /// stays, so the next run waits for its interval.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), QueryError> {
        self.renew_lease(name, holder, 0).await.map(|_| ())
    }
}
