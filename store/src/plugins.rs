//! Installed WASM plugins: the bytes in the database (so every runtime process can
//! load them), versioned per name, content-addressed by SHA-256. The newest active
//! version of a name is what `plugin = "name"` means; rollback deactivates it.

use chrono::{DateTime, Utc};

use super::{QueryError, Store, on_pool};

/// Why a plugin registry write ([`Store::install_plugin`], [`Store::rollback_plugin`],
/// [`Store::remove_plugin`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginWriteError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The name and version are installed already, with other bytes.
    #[error(
        "plugin {name}@{version} is installed with other content (sha256 {installed}); bump the plugin's version"
    )]
    OtherContent {
        /// The plugin.
        name: String,
        /// Its version.
        version: String,
        /// Hex SHA-256 of the installed file.
        installed: String,
    },
    /// The row just inserted could not be read back.
    #[error("plugin {name}@{version} vanished")]
    Vanished {
        /// The plugin.
        name: String,
        /// Its version.
        version: String,
    },
    /// A rollback with no earlier active version to return to.
    #[error("plugin '{0}' has no earlier active version to roll back to")]
    NoEarlierVersion(String),
}

/// One installed plugin version (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// Row id (install order).
    pub id: i64,
    /// Plugin name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// File size.
    pub bytes: i64,
    /// Whether `name` may resolve to it.
    pub active: bool,
    /// When it was installed.
    pub created_at: DateTime<Utc>,
}

type InfoRow = (i64, String, String, String, i64, bool, DateTime<Utc>);
type BytesRow = (
    i64,
    String,
    String,
    String,
    i64,
    bool,
    DateTime<Utc>,
    Vec<u8>,
);

fn info((id, name, version, sha256, bytes, active, created_at): InfoRow) -> PluginInfo {
    PluginInfo {
        id,
        name,
        version,
        sha256,
        bytes,
        active,
        created_at,
    }
}

const INFO: &str = "id, name, version, sha256, CAST(LENGTH(bytes) AS BIGINT), active, created_at";

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// A new version row.
    New(PluginInfo),
    /// The same bytes were installed under this name and version already (made
    /// active again if it was rolled back).
    Existing(PluginInfo),
}

impl Store {
    /// Installs a plugin version.
    ///
    /// # Errors
    /// [`PluginWriteError::OtherContent`] when the name and version exist with other
    /// bytes, or [`PluginWriteError::Database`].
    pub async fn install_plugin(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Installed, PluginWriteError> {
        if let Some(existing) = self.plugin_info(name, version).await? {
            if existing.sha256 != sha256 {
                return Err(PluginWriteError::OtherContent {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    installed: existing.sha256,
                });
            }
            on_pool!(self, |pool| sqlx::query(
                "UPDATE plugins SET active = TRUE WHERE name = $1 AND version = $2"
            )
            .bind(name)
            .bind(version)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            return Ok(Installed::Existing(PluginInfo {
                active: true,
                ..existing
            }));
        }
        on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO plugins (name, version, sha256, bytes, active) VALUES ($1, $2, $3, $4, TRUE)"
        )
        .bind(name)
        .bind(version)
        .bind(sha256)
        .bind(bytes)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        let info =
            self.plugin_info(name, version)
                .await?
                .ok_or_else(|| PluginWriteError::Vanished {
                    name: name.to_owned(),
                    version: version.to_owned(),
                })?;
        Ok(Installed::New(info))
    }

    async fn plugin_info(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PluginInfo>, sqlx::Error> {
        let sql = format!("SELECT {INFO} FROM plugins WHERE name = $1 AND version = $2");
        let row: Option<InfoRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(info))
    }

    /// Every installed version, by name then install order; `name` narrows it.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn list_plugins(&self, name: Option<&str>) -> Result<Vec<PluginInfo>, QueryError> {
        Ok(self.plugin_versions(name).await?)
    }

    async fn plugin_versions(&self, name: Option<&str>) -> Result<Vec<PluginInfo>, sqlx::Error> {
        let sql =
            format!("SELECT {INFO} FROM plugins WHERE ($1 IS NULL OR name = $1) ORDER BY name, id");
        let rows: Vec<InfoRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(name)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// The version a reference means (`name`: the newest active one; `name@version`:
    /// that one) with its bytes.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn resolve_plugin(
        &self,
        reference: &str,
    ) -> Result<Option<(PluginInfo, Vec<u8>)>, QueryError> {
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (reference, None),
        };
        let sql = format!(
            "SELECT {INFO}, bytes FROM plugins WHERE name = $1 AND \
             (($2 IS NULL AND active) OR version = $2) ORDER BY id DESC LIMIT 1"
        );
        let row: Option<BytesRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(
            |(id, name, version, sha256, size, active, created_at, bytes)| {
                (
                    info((id, name, version, sha256, size, active, created_at)),
                    bytes,
                )
            },
        ))
    }

    /// Deactivates the newest active version of `name`, so the one before it serves
    /// again. Returns (deactivated, now current).
    ///
    /// # Errors
    /// [`PluginWriteError::NoEarlierVersion`] when there is no earlier active version
    /// to return to, or [`PluginWriteError::Database`].
    pub async fn rollback_plugin(
        &self,
        name: &str,
    ) -> Result<(PluginInfo, PluginInfo), PluginWriteError> {
        let active: Vec<PluginInfo> = self
            .plugin_versions(Some(name))
            .await?
            .into_iter()
            .filter(|p| p.active)
            .collect();
        let [.., previous, current] = active.as_slice() else {
            return Err(PluginWriteError::NoEarlierVersion(name.to_owned()));
        };
        on_pool!(self, |pool| sqlx::query(
            "UPDATE plugins SET active = FALSE WHERE id = $1"
        )
        .bind(current.id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok((
            PluginInfo {
                active: false,
                ..current.clone()
            },
            previous.clone(),
        ))
    }

    /// Removes every version of `name` (or only `name@version`). Returns how many.
    ///
    /// # Errors
    /// [`PluginWriteError::Database`].
    pub async fn remove_plugin(&self, reference: &str) -> Result<u64, PluginWriteError> {
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (reference, None),
        };
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM plugins WHERE name = $1 AND ($2 IS NULL OR version = $2)"
        )
        .bind(name)
        .bind(version)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected)
    }
}
