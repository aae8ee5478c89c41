//! Tenant API keys: random secrets shown once, kept only as SHA-256.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{QueryError, Store, on_pool};

/// Characters after the `sy_` prefix of a key.
const KEY_CHARS: usize = 40;

/// A tenant key as stored (never the secret).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TenantKey {
    /// Row id.
    pub id: i64,
    /// Whose key it is.
    pub tenant: String,
    /// The operator's label.
    pub name: String,
    /// The key's first characters, to tell keys apart (`sy_AbCd…`).
    pub prefix: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Revoked at, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    format!("sy_{}", crate::secrets::random_alphanumeric(KEY_CHARS))
}

impl Store {
    /// Creates a key for `tenant`: the stored key and its secret (the only time the
    /// secret exists outside its holder).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn create_tenant_key(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(TenantKey, String), QueryError> {
        let secret = new_secret();
        let prefix: String = secret.chars().take(7).collect();
        let key: TenantKey = on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO tenant_keys (tenant, name, key_hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, tenant, name, prefix, created_at, revoked_at"
        )
        .bind(tenant)
        .bind(name)
        .bind(digest(&secret))
        .bind(&prefix)
        .bind(Utc::now())
        .fetch_one(pool)
        .await)?;
        Ok((key, secret))
    }

    /// A tenant's keys, revoked ones included, oldest first.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn tenant_keys(&self, tenant: &str) -> Result<Vec<TenantKey>, QueryError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, tenant, name, prefix, created_at, revoked_at FROM tenant_keys \
             WHERE tenant = $1 ORDER BY id"
        )
        .bind(tenant)
        .fetch_all(pool)
        .await)?)
    }

    /// Revokes a key of `tenant`; false if it has no such live key.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn revoke_tenant_key(&self, tenant: &str, id: i64) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE tenant_keys SET revoked_at = $3 \
             WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL"
        )
        .bind(tenant)
        .bind(id)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// The tenant a live key belongs to.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn tenant_of_key(&self, secret: &str) -> Result<Option<String>, QueryError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT tenant FROM tenant_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        )
        .bind(digest(secret))
        .fetch_optional(pool)
        .await)?)
    }
}
