//! The newest refresh token of each OAuth2 client that rotates them (issue 16 §7),
//! encrypted with the master key. The runtime's token vault reads and writes it under
//! a cluster-wide lease, so one replica refreshes at a time.

use crate::{QueryError, Store, on_pool};

impl Store {
    /// The stored refresh token of client `client_key`, decrypted.
    ///
    /// # Errors
    /// [`QueryError::Database`]; [`QueryError::Corrupt`] when it cannot be decrypted.
    pub async fn oauth_refresh_token(
        &self,
        client_key: &str,
    ) -> Result<Option<String>, QueryError> {
        let sealed: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT refresh_token_ciphertext FROM oauth_refresh_tokens WHERE client_key = $1"
        )
        .bind(client_key)
        .fetch_optional(pool)
        .await)?;
        sealed
            .map(|sealed| {
                self.key.decrypt(&sealed).map_err(|e| QueryError::Corrupt {
                    table: "oauth_refresh_tokens",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    /// Stores `refresh_token` (encrypted) as client `client_key`'s newest.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn put_oauth_refresh_token(
        &self,
        client_key: &str,
        refresh_token: &str,
    ) -> Result<(), QueryError> {
        let sealed = self.key.encrypt(refresh_token);
        let now_ms = chrono::Utc::now().timestamp_millis();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO oauth_refresh_tokens (client_key, refresh_token_ciphertext, updated_ms) \
             VALUES ($1, $2, $3) ON CONFLICT (client_key) DO UPDATE SET \
             refresh_token_ciphertext = excluded.refresh_token_ciphertext, \
             updated_ms = excluded.updated_ms"
        )
        .bind(client_key)
        .bind(&sealed)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
