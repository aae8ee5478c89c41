//! Quotas that cannot overshoot (#16): a request reserves its estimate at admission,
//! and its end settles the reservation with what it actually used.
//!
//! Each quota keeps a counter row per period (`quota_counters`: what finished requests
//! used, and what running ones reserve), and each running request a hold row per quota
//! it reserved from (`quota_holds`, keyed by `(tenant, request_id)`: a synchronous call
//! has no task row until after its answer).
//!
//! - [`Store::reserve`] takes all of a request's holds in one transaction, each with one
//!   conditional `UPDATE` that succeeds only while `used + reserved + ask` stays within
//!   the limit: on PostgreSQL the row lock orders concurrent reservations, on SQLite the
//!   database's write lock does. Any quota that would go over rolls all of them back.
//!   Several processes therefore share one truth, whatever their caches say.
//! - The group-commit writer settles the holds of the requests it finishes, in the
//!   transaction that writes their terminal rows (`settle_sql`): the reservation leaves
//!   `reserved`, the actual usage joins `used`. A failure that used nothing releases it.
//! - [`Store::release_stale_holds`] releases holds whose request can no longer settle
//!   them: its process died (its claim lapsed, or a synchronous call's record was lost).
//!
//! A counter starts, the first time a period is reserved from, at what the usage log
//! holds for that period, so a quota set mid-month counts what was already used.

use chrono::{DateTime, Utc};

use super::{CountedQuota, QueryError, Store, StoredQuota, UsageTotals, on_pool};

/// What one request asks of its quotas.
#[derive(Debug, Clone, Copy)]
pub struct HoldAsk<'a> {
    /// Who pays.
    pub tenant: &'a str,
    /// The end user, if given.
    pub user: Option<&'a str>,
    /// The request's id: its holds' key.
    pub request_id: &'a str,
    /// Images asked for.
    pub images: i64,
    /// Tokens estimated (input plus output).
    pub tokens: i64,
    /// Cost estimated.
    pub cost_usd: f64,
    /// Now: picks each quota's period.
    pub now: DateTime<Utc>,
}

/// How many times a reservation that lost a PostgreSQL deadlock or serialization
/// conflict is tried again before its error is returned.
const RESERVE_TRIES: usize = 3;

/// Reserves `$6` requests, `$3` images, `$4` tokens and `$5` dollars from quota `$1`'s
/// counter of the period from `$2`, only while each limit still holds them all; one
/// request's reservation, or a batch's sum ([`Store::reserve_batch`]).
pub(crate) const RESERVE: &str = "UPDATE quota_counters SET \
    reserved_requests = reserved_requests + $6, reserved_images = reserved_images + $3, \
    reserved_tokens = reserved_tokens + $4, reserved_cost_usd = reserved_cost_usd + $5 \
    WHERE quota_id = $1 AND period_start = $2 AND EXISTS (SELECT 1 FROM quotas q WHERE q.id = $1 \
    AND (q.max_requests IS NULL OR \
         quota_counters.requests + quota_counters.reserved_requests + $6 <= q.max_requests) \
    AND (q.max_images IS NULL OR \
         quota_counters.images + quota_counters.reserved_images + $3 <= q.max_images) \
    AND (q.max_tokens IS NULL OR \
         quota_counters.tokens + quota_counters.reserved_tokens + $4 <= q.max_tokens) \
    AND (q.max_cost_usd IS NULL OR \
         (quota_counters.cost_usd + quota_counters.reserved_cost_usd < q.max_cost_usd AND \
          quota_counters.cost_usd + quota_counters.reserved_cost_usd + $5 <= q.max_cost_usd))) \
    RETURNING quota_id";

pub(crate) const START_COUNTER: &str = "INSERT INTO quota_counters (quota_id, period_start, requests, images, \
    tokens, cost_usd) SELECT $1, $2, COUNT(*), COALESCE(SUM(images), 0), \
    COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost_usd), 0) \
    FROM usage_log WHERE tenant = $3 AND created_at >= $2 AND ($4 IS NULL OR user_id = $4) \
    AND charged ON CONFLICT (quota_id, period_start) DO NOTHING";

const HOLD: &str = "INSERT INTO quota_holds (tenant, request_id, quota_id, period_start, requests, \
    images, tokens, cost_usd, created_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8) \
    ON CONFLICT (tenant, request_id, quota_id) DO NOTHING RETURNING quota_id";

pub(crate) const COUNTER: &str = "SELECT requests, images, tokens, cost_usd, reserved_requests, \
    reserved_images, reserved_tokens, reserved_cost_usd FROM quota_counters \
    WHERE quota_id = $1 AND period_start = $2";

#[derive(sqlx::FromRow)]
struct CounterRow {
    requests: i64,
    images: i64,
    tokens: i64,
    cost_usd: f64,
    reserved_requests: i64,
    reserved_images: i64,
    reserved_tokens: i64,
    reserved_cost_usd: f64,
}

impl CounterRow {
    fn split(self) -> (UsageTotals, UsageTotals) {
        (
            UsageTotals {
                requests: self.requests,
                images: self.images,
                tokens: self.tokens,
                cost_usd: self.cost_usd,
            },
            UsageTotals {
                requests: self.reserved_requests,
                images: self.reserved_images,
                tokens: self.reserved_tokens,
                cost_usd: self.reserved_cost_usd,
            },
        )
    }
}

impl Store {
    /// Reserves `ask` from every quota in `quotas` that applies to its user, all or
    /// none. `Ok(None)`: reserved (or held already, by an earlier delivery of the same
    /// request); `Ok(Some(quota))`: refused, with the quota that would go over as it
    /// stood.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn reserve(
        &self,
        quotas: &[StoredQuota],
        ask: &HoldAsk<'_>,
    ) -> Result<Option<CountedQuota>, QueryError> {
        let mut applying: Vec<&StoredQuota> = quotas
            .iter()
            .filter(|s| s.quota.tenant == ask.tenant && s.quota.applies_to(ask.user))
            .collect();
        if applying.is_empty() {
            return Ok(None);
        }
        // One order for every reservation, so two never wait on each other's rows.
        applying.sort_by_key(|s| s.id);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_reserve(&applying, ask).await {
                Err(QueryError::Database(e)) if tries < RESERVE_TRIES && conflict(&e) => {}
                other => return other,
            }
        }
    }

    async fn try_reserve(
        &self,
        quotas: &[&StoredQuota],
        ask: &HoldAsk<'_>,
    ) -> Result<Option<CountedQuota>, QueryError> {
        // One conditional reservation; true if it was within every limit.
        macro_rules! reserve_one {
            ($tx:expr, $id:expr, $since:expr) => {
                sqlx::query_scalar::<_, i64>(RESERVE)
                    .bind($id)
                    .bind($since)
                    .bind(ask.images)
                    .bind(ask.tokens)
                    .bind(ask.cost_usd)
                    .bind(1_i64)
                    .fetch_optional(&mut *$tx)
                    .await?
                    .is_some()
            };
        }
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for stored in quotas {
                let since = stored.quota.period.start(ask.now);
                // The hold first: a write, so SQLite takes its write lock here and the
                // reads below see what every other reservation committed.
                let new: Option<i64> = sqlx::query_scalar(HOLD)
                    .bind(ask.tenant)
                    .bind(ask.request_id)
                    .bind(stored.id)
                    .bind(since)
                    .bind(ask.images)
                    .bind(ask.tokens)
                    .bind(ask.cost_usd)
                    .bind(ask.now)
                    .fetch_optional(&mut *tx)
                    .await?;
                if new.is_none() {
                    // Held already: this request was admitted before (a redelivery).
                    continue;
                }
                if reserve_one!(tx, stored.id, since) {
                    continue;
                }
                let exists: Option<CounterRow> = sqlx::query_as(COUNTER)
                    .bind(stored.id)
                    .bind(since)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    // This period's first reservation: count the usage log.
                    sqlx::query(START_COUNTER)
                        .bind(stored.id)
                        .bind(since)
                        .bind(ask.tenant)
                        .bind(stored.quota.user.as_deref())
                        .execute(&mut *tx)
                        .await?;
                }
                // Again: the counter exists now, whether this reservation or a
                // concurrent one (on PostgreSQL) started it after the first try.
                if reserve_one!(tx, stored.id, since) {
                    continue;
                }
                let counter: CounterRow = sqlx::query_as(COUNTER)
                    .bind(stored.id)
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.rollback().await?;
                let (used, held) = counter.split();
                return Ok(Some(CountedQuota::new(
                    stored.quota.clone(),
                    since,
                    used,
                    held,
                )));
            }
            tx.commit().await?;
            Ok(None)
        })
    }

    /// What quota `quota_id` counted and holds in the period from `since`, if it has
    /// been reserved from in that period.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn quota_counter(
        &self,
        quota_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Option<(UsageTotals, UsageTotals)>, QueryError> {
        let row: Option<CounterRow> = on_pool!(self, |pool| sqlx::query_as(COUNTER)
            .bind(quota_id)
            .bind(since)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(CounterRow::split))
    }

    /// Releases the holds older than `before` whose request can no longer settle them:
    /// it has no task row (a synchronous call whose record died with its process), its
    /// task ended, or its task's claim lapsed before `now_ms` (its process died; a
    /// later delivery reserves again). The number of holds released.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn release_stale_holds(
        &self,
        before: DateTime<Utc>,
        now_ms: i64,
    ) -> Result<u64, QueryError> {
        const STALE: &str = "h.created_at < $1 AND NOT EXISTS (SELECT 1 FROM tasks t \
            WHERE t.tenant = h.tenant AND t.request_id = h.request_id \
            AND t.status IN ('pending', 'processing') AND t.claim_until >= $2)";
        let release = format!(
            "WITH d AS (SELECT h.quota_id AS dq, h.period_start AS dp, \
             CAST(SUM(h.requests) AS BIGINT) AS rr, CAST(SUM(h.images) AS BIGINT) AS ri, \
             CAST(SUM(h.tokens) AS BIGINT) AS rt, \
             CAST(SUM(h.cost_usd) AS DOUBLE PRECISION) AS rc \
             FROM quota_holds h WHERE {STALE} GROUP BY h.quota_id, h.period_start) \
             UPDATE quota_counters SET reserved_requests = reserved_requests - d.rr, \
             reserved_images = reserved_images - d.ri, reserved_tokens = reserved_tokens - d.rt, \
             reserved_cost_usd = reserved_cost_usd - d.rc FROM d \
             WHERE quota_counters.quota_id = d.dq AND quota_counters.period_start = d.dp"
        );
        let delete = format!(
            "DELETE FROM quota_holds WHERE EXISTS (SELECT 1 FROM quota_holds h \
             WHERE h.tenant = quota_holds.tenant AND h.request_id = quota_holds.request_id \
             AND h.quota_id = quota_holds.quota_id AND {STALE})"
        );
        let released = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(sqlx::AssertSqlSafe(release.as_str()))
                    .bind(before)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                let deleted = sqlx::query(sqlx::AssertSqlSafe(delete.as_str()))
                    .bind(before)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok::<u64, sqlx::Error>(deleted)
            }
            .await
        })?;
        Ok(released)
    }
}

/// A PostgreSQL deadlock (`40P01`) or serialization failure (`40001`): the
/// transaction was rolled back and may simply be tried again.
fn conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// The two statements that settle the holds of `rows` requests finished in one
/// transaction, for the group-commit writer: the first (`VALUES` of `(task id,
/// requests, images, tokens, cost)`, the actual usage) moves each hold from
/// `reserved` to `used`; the second deletes the holds.
pub(crate) fn settle_sql(values: &str, ids: &str) -> (String, String) {
    (
        format!(
            "WITH v (vid, vreq, vimg, vtok, vcost) AS (VALUES {values}), \
             d AS (SELECT h.quota_id AS dq, h.period_start AS dp, \
             CAST(SUM(h.requests) AS BIGINT) AS rr, CAST(SUM(h.images) AS BIGINT) AS ri, \
             CAST(SUM(h.tokens) AS BIGINT) AS rt, CAST(SUM(h.cost_usd) AS DOUBLE PRECISION) AS rc, \
             CAST(SUM(v.vreq) AS BIGINT) AS ur, CAST(SUM(v.vimg) AS BIGINT) AS ui, \
             CAST(SUM(v.vtok) AS BIGINT) AS ut, CAST(SUM(v.vcost) AS DOUBLE PRECISION) AS uc \
             FROM v JOIN tasks t ON t.id = v.vid \
             JOIN quota_holds h ON h.tenant = t.tenant AND h.request_id = t.request_id \
             GROUP BY h.quota_id, h.period_start) \
             UPDATE quota_counters SET reserved_requests = reserved_requests - d.rr, \
             reserved_images = reserved_images - d.ri, reserved_tokens = reserved_tokens - d.rt, \
             reserved_cost_usd = reserved_cost_usd - d.rc, requests = requests + d.ur, \
             images = images + d.ui, tokens = tokens + d.ut, cost_usd = cost_usd + d.uc \
             FROM d WHERE quota_counters.quota_id = d.dq AND quota_counters.period_start = d.dp"
        ),
        format!(
            "DELETE FROM quota_holds WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id IN ({ids}) \
             AND t.tenant = quota_holds.tenant AND t.request_id = quota_holds.request_id)"
        ),
    )
}
