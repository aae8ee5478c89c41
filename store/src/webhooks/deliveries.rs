//! Webhook deliveries: queued once per endpoint and event (a second queueing of the
//! same event is a no-op, so a redelivered event is sent once), claimed by one process
//! at a time, and recorded after each attempt.

use chrono::{DateTime, Utc};

use crate::{QueryError, Store, on_pool};

/// A delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The endpoint.
    pub webhook_id: i64,
    /// Its tenant.
    pub tenant: String,
    /// The event's id (the `webhook-id` header): the same for every attempt.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's request.
    pub request_id: String,
    /// The body to POST (the event as published).
    pub payload: String,
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Its id.
    pub id: i64,
    /// The endpoint.
    pub webhook_id: i64,
    /// The event's id.
    pub event_id: String,
    /// The body.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When it was queued (retries stop some time after).
    pub created_at: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// The endpoint answered 2xx.
    Delivered {
        /// Its status.
        status: u16,
    },
    /// Failed; tried again at `next_ms` (Unix ms).
    Retry {
        /// The endpoint's status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// When to try again.
        next_ms: i64,
    },
    /// Failed for the last time (retried for as long as configured).
    GaveUp {
        /// The endpoint's status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// A delivery in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: i64,
    /// The event's id (the `webhook-id` header).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's request.
    pub request_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The endpoint's status at the last attempt, if it answered.
    pub last_status: Option<i64>,
    /// What went wrong at the last attempt.
    pub last_error: Option<String>,
    /// When the next attempt is due (Unix ms; pending only).
    pub next_attempt_ms: i64,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Queues deliveries due at `now_ms`; one already queued for the same endpoint
    /// and event is left as it is. Returns how many were new.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn queue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<u64, QueryError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let added = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut added = 0;
            for d in deliveries {
                added += sqlx::query(
                    "INSERT INTO webhook_deliveries (webhook_id, tenant, event_id, event_type, \
                     request_id, payload, next_attempt_ms, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (webhook_id, event_id) DO NOTHING",
                )
                .bind(d.webhook_id)
                .bind(&d.tenant)
                .bind(&d.event_id)
                .bind(&d.event_type)
                .bind(&d.request_id)
                .bind(&d.payload)
                .bind(now_ms)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(added)
        })?;
        Ok(added)
    }

    /// Claims up to `limit` pending deliveries due at `now_ms` for this process until
    /// `until_ms` (another process skips them until then).
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, QueryError> {
        type Row = (i64, i64, String, String, i64, DateTime<Utc>);
        // The outer conditions are checked again on a row another process claimed
        // meanwhile (PostgreSQL re-reads it after the lock), so it is skipped.
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "UPDATE webhook_deliveries SET claimed_until_ms = $1 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' \
             AND next_attempt_ms <= $2 AND claimed_until_ms < $2 \
             ORDER BY next_attempt_ms LIMIT $3) \
             AND status = 'pending' AND claimed_until_ms < $2 \
             RETURNING id, webhook_id, event_id, payload, attempts, created_at"
        )
        .bind(until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, webhook_id, event_id, payload, attempts, created_at)| DueDelivery {
                    id,
                    webhook_id,
                    event_id,
                    payload,
                    attempts,
                    created_at,
                },
            )
            .collect())
    }

    /// Records how an attempt of delivery `id` ended, and frees its claim, if the
    /// claim is still the caller's (`claimed_until`); false if it ran out and another
    /// process claimed it since.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn record_attempt(
        &self,
        id: i64,
        claimed_until: i64,
        outcome: &AttemptOutcome,
    ) -> Result<bool, QueryError> {
        let now = Utc::now();
        let (status, last_status, error, next_ms, finished) = match outcome {
            AttemptOutcome::Delivered { status } => {
                ("delivered", Some(*status), None, 0, Some(now))
            }
            AttemptOutcome::Retry {
                status,
                error,
                next_ms,
            } => ("pending", *status, Some(error.as_str()), *next_ms, None),
            AttemptOutcome::GaveUp { status, error } => {
                ("failed", *status, Some(error.as_str()), 0, Some(now))
            }
        };
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
             last_status = $2, last_error = $3, next_attempt_ms = $4, finished_at = $5, \
             claimed_until_ms = 0 WHERE id = $6 AND claimed_until_ms = $7"
        )
        .bind(status)
        .bind(last_status.map(i64::from))
        .bind(error)
        .bind(next_ms)
        .bind(finished)
        .bind(id)
        .bind(claimed_until)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// The newest deliveries of `tenant`'s endpoint `webhook_id` (with ids below
    /// `before`, if given), newest first, at most `limit`.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn deliveries(
        &self,
        tenant: &str,
        webhook_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, QueryError> {
        let rows: Vec<DeliveryRecord> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, event_id, event_type, request_id, status, attempts, last_status, \
             last_error, next_attempt_ms, created_at, finished_at FROM webhook_deliveries \
             WHERE tenant = $1 AND webhook_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        )
        .bind(tenant)
        .bind(webhook_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }
}
