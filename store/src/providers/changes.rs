//! Change notices of provider configs: the fingerprint SQLite is polled with, and the
//! PostgreSQL listener of the NOTIFY trigger.

use switchyard_core::ConfigId;

use crate::{Pool, QueryError, Store, on_pool};

/// A change notice for one provider config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigChange {
    /// The config.
    pub id: ConfigId,
    /// `insert`, `update` or `delete`.
    pub op: String,
    /// Its version after the change.
    pub version: i64,
}

impl Store {
    /// A cheap fingerprint of all provider configs (count, sum of versions, highest id):
    /// it changes on every insert, update and delete, so polling it detects edits that
    /// bypass the API (SQLite has no NOTIFY).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn config_fingerprint(&self) -> Result<(i64, i64, i64, i64), QueryError> {
        // Plugins count too: a new or rolled-back version changes what configs run.
        let row: (i64, i64, i64, i64) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(version), 0) AS BIGINT), \
             CAST(COALESCE(MAX(id), 0) AS BIGINT), \
             (SELECT CAST(COALESCE(SUM(CASE WHEN active THEN id ELSE 2 * id END), 0) AS BIGINT) \
              FROM plugins) FROM provider_configs"
        )
        .fetch_one(pool)
        .await)?;
        Ok(row)
    }

    /// On PostgreSQL, a listener for the NOTIFY trigger's change notices of this
    /// store's schema; `None` on SQLite.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn listen_config_changes(&self) -> Result<Option<ConfigListener>, QueryError> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen("switchyard_config_changed").await?;
                let schema: String = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(pool)
                    .await?;
                Ok(Some(ConfigListener { listener, schema }))
            }
        }
    }
}

/// PostgreSQL change notices (see [`Store::listen_config_changes`]).
pub struct ConfigListener {
    listener: sqlx::postgres::PgListener,
    schema: String,
}

impl std::fmt::Debug for ConfigListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigListener")
            .field("schema", &self.schema)
            .finish()
    }
}

impl ConfigListener {
    /// The next change of this schema; `Ok(None)` after the connection was lost and
    /// re-established (notices in between are lost: reload everything).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn next(&mut self) -> Result<Option<ConfigChange>, QueryError> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(None),
                Some(notification) => {
                    #[derive(serde::Deserialize)]
                    struct Payload {
                        schema: String,
                        #[serde(flatten)]
                        change: ConfigChange,
                    }
                    match serde_json::from_str::<Payload>(notification.payload()) {
                        Ok(p) if p.schema == self.schema => return Ok(Some(p.change)),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable config change notice"),
                    }
                }
            }
        }
    }
}
