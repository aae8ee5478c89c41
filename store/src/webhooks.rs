//! Webhooks (issue 17 §3): tenants' endpoints (their signing secrets encrypted like
//! API keys), and the deliveries: one row per endpoint and event, which is at once the
//! retry queue (`pending` rows, due at `next_attempt_ms`, claimed by one process at a
//! time) and the delivery log.

mod deliveries;

use chrono::{DateTime, Utc};

use crate::{QueryError, Store, on_pool};

pub use deliveries::{AttemptOutcome, DeliveryRecord, DueDelivery, NewDelivery};

/// A new endpoint.
#[derive(Clone)]
pub struct NewWebhook {
    /// Its tenant.
    pub tenant: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types sent (`completed`, `failed`, `progress`, …).
    pub events: Vec<String>,
    /// The signing secret (`whsec_…`), stored encrypted.
    pub secret: String,
}

/// An endpoint as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Webhook {
    /// Its id.
    pub id: i64,
    /// Its tenant.
    pub tenant: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types sent.
    pub events: Vec<String>,
    /// Whether events are sent to it.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// An endpoint with its secret, for the sender.
#[derive(Clone)]
pub struct WebhookTarget {
    /// The endpoint.
    pub webhook: Webhook,
    /// Its signing secret (`whsec_…`).
    pub secret: String,
}

impl std::fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhook")
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

type WebhookRow = (i64, String, String, String, bool, DateTime<Utc>, String);

const COLUMNS: &str = "id, tenant, url, CAST(events AS TEXT), enabled, created_at, \
                       secret_ciphertext";

impl Store {
    fn webhook_of(&self, row: WebhookRow) -> Result<WebhookTarget, QueryError> {
        let (id, tenant, url, events, enabled, created_at, ciphertext) = row;
        let corrupt = |detail: String| QueryError::Corrupt {
            table: "webhooks",
            detail,
        };
        let events: Vec<String> =
            serde_json::from_str(&events).map_err(|e| corrupt(format!("events of {id}: {e}")))?;
        let secret = self
            .key
            .decrypt(&ciphertext)
            .map_err(|e| corrupt(format!("secret of {id}: {e}")))?;
        Ok(WebhookTarget {
            webhook: Webhook {
                id,
                tenant,
                url,
                events,
                enabled,
                created_at,
            },
            secret,
        })
    }

    /// Registers an endpoint.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn create_webhook(&self, new: &NewWebhook) -> Result<Webhook, QueryError> {
        let ciphertext = self.key.encrypt(&new.secret);
        let now = Utc::now();
        let row: WebhookRow = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhooks (tenant, url, events, secret_ciphertext, enabled, \
                 created_at) VALUES ($1, $2, $3, $4, TRUE, $5) RETURNING {COLUMNS}"
        )))
        .bind(&new.tenant)
        .bind(&new.url)
        .bind(sqlx::types::Json(&new.events))
        .bind(&ciphertext)
        .bind(now)
        .fetch_one(pool)
        .await)?;
        Ok(self.webhook_of(row)?.webhook)
    }

    /// `tenant`'s endpoints, oldest first.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, QueryError> {
        let rows: Vec<WebhookRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {COLUMNS} FROM webhooks WHERE tenant = $1 ORDER BY id")
        ))
        .bind(tenant)
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|row| self.webhook_of(row).map(|t| t.webhook))
            .collect()
    }

    /// `tenant`'s endpoint `id` (another tenant's: `None`).
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn webhook(&self, tenant: &str, id: i64) -> Result<Option<Webhook>, QueryError> {
        let row: Option<WebhookRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {COLUMNS} FROM webhooks WHERE tenant = $1 AND id = $2")
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(|row| self.webhook_of(row).map(|t| t.webhook))
            .transpose()
    }

    /// Every enabled endpoint with its secret, for the sender's cache.
    ///
    /// # Errors
    /// [`QueryError`].
    pub async fn enabled_webhooks(&self) -> Result<Vec<WebhookTarget>, QueryError> {
        let rows: Vec<WebhookRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {COLUMNS} FROM webhooks WHERE enabled = TRUE ORDER BY id")
        ))
        .fetch_all(pool)
        .await)?;
        // One unreadable row (edited by hand, another master key) is skipped, loudly:
        // it must not stop every other tenant's webhooks.
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row.0;
                self.webhook_of(row)
                    .map_err(|error| tracing::warn!(webhook = id, %error, "webhook skipped"))
                    .ok()
            })
            .collect())
    }

    /// Turns `tenant`'s endpoint `id` on or off; false if it has none such.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_webhook_enabled(
        &self,
        tenant: &str,
        id: i64,
        enabled: bool,
    ) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE webhooks SET enabled = $1 WHERE tenant = $2 AND id = $3"
        )
        .bind(enabled)
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// Removes `tenant`'s endpoint `id` and its deliveries; false if it had none such.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn delete_webhook(&self, tenant: &str, id: i64) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM webhooks WHERE tenant = $1 AND id = $2"
        )
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }
}
