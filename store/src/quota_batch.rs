//! Reservations of many requests in one transaction (#16): the quota path's cost.
//!
//! [`Store::reserve_batch`] takes the holds of a batch of requests and reserves their
//! sum from each quota with one conditional `UPDATE` per quota, in one transaction:
//! two statements per quota for the whole batch instead of a transaction per request.
//! The `UPDATE` succeeds only while `used + reserved + sum` stays within the limit,
//! exactly as one request's does ([`Store::reserve`]), so a batch cannot overshoot
//! either. When a quota cannot take the whole sum (near its limit), the batch is rolled
//! back and each request is reserved on its own, which decides exactly which fit.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::{CountedQuota, HoldAsk, QueryError, Store, StoredQuota, on_pool};
use crate::{
    batch::statements::values,
    quota_holds::{RESERVE, START_COUNTER},
};

/// The most requests one batch reserves (a hold row binds 9 values).
pub const MAX_BATCH: usize = 256;

/// Whether a quota has a counter for a period yet.
const HAS_COUNTER: &str =
    "SELECT quota_id FROM quota_counters WHERE quota_id = $1 AND period_start = $2";

/// One quota's share of a batch: the requests it applies to, in its period.
struct Share<'a> {
    quota: &'a StoredQuota,
    since: DateTime<Utc>,
    asks: Vec<&'a HoldAsk<'a>>,
}

impl Store {
    /// Reserves every request of `batch` (each with the quotas of its tenant) from the
    /// quotas that apply to it; the answer of each, in order, as [`Store::reserve`]
    /// gives it.
    ///
    /// # Errors
    /// [`QueryError::Database`]: no request of the batch holds anything then.
    pub async fn reserve_batch(
        &self,
        batch: &[(&[StoredQuota], HoldAsk<'_>)],
    ) -> Result<Vec<Option<CountedQuota>>, QueryError> {
        if batch.len() > 1 && batch.len() <= MAX_BATCH && self.reserve_all(batch).await? {
            return Ok(vec![None; batch.len()]);
        }
        let mut answers = Vec::with_capacity(batch.len());
        for (quotas, ask) in batch {
            answers.push(self.reserve(quotas, ask).await?);
        }
        Ok(answers)
    }

    /// Reserves the whole batch in one transaction; false (and nothing held) when a
    /// quota cannot take all of it.
    async fn reserve_all(
        &self,
        batch: &[(&[StoredQuota], HoldAsk<'_>)],
    ) -> Result<bool, QueryError> {
        // Each quota with the requests it applies to, in one order for every batch so
        // that two never wait on each other's rows.
        let mut shares: BTreeMap<(i64, DateTime<Utc>), Share<'_>> = BTreeMap::new();
        for (quotas, ask) in batch {
            for stored in quotas
                .iter()
                .filter(|s| s.quota.tenant == ask.tenant && s.quota.applies_to(ask.user))
            {
                let since = stored.quota.period.start(ask.now);
                shares
                    .entry((stored.id, since))
                    .or_insert_with(|| Share {
                        quota: stored,
                        since,
                        asks: Vec::new(),
                    })
                    .asks
                    .push(ask);
            }
        }
        if shares.is_empty() {
            return Ok(true);
        }
        let postgres = matches!(self.pool, crate::Pool::Postgres(_));
        let fits = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                for share in shares.values() {
                    let holds = format!(
                        "INSERT INTO quota_holds (tenant, request_id, quota_id, period_start, \
                         requests, images, tokens, cost_usd, created_at) VALUES {} \
                         ON CONFLICT (tenant, request_id, quota_id) DO NOTHING \
                         RETURNING tenant, request_id",
                        values(share.asks.len(), 9, "", postgres)
                    );
                    let mut query =
                        sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(holds));
                    for ask in &share.asks {
                        query = query
                            .bind(ask.tenant)
                            .bind(ask.request_id)
                            .bind(share.quota.id)
                            .bind(share.since)
                            .bind(1_i64)
                            .bind(ask.images)
                            .bind(ask.tokens)
                            .bind(ask.cost_usd)
                            .bind(ask.now);
                    }
                    let new: HashSet<(String, String)> =
                        query.fetch_all(&mut *tx).await?.into_iter().collect();
                    // Requests held already (an earlier delivery) reserve nothing more; a
                    // request twice in the batch counts once.
                    let mut counted = HashSet::new();
                    let (mut n, mut images, mut tokens, mut cost) = (0_i64, 0_i64, 0_i64, 0.0_f64);
                    for ask in &share.asks {
                        let key = (ask.tenant.to_owned(), ask.request_id.to_owned());
                        if new.contains(&key) && counted.insert(key) {
                            n += 1;
                            images += ask.images;
                            tokens += ask.tokens;
                            cost += ask.cost_usd;
                        }
                    }
                    if n == 0 {
                        continue;
                    }
                    macro_rules! reserve {
                        () => {
                            sqlx::query_scalar::<_, i64>(RESERVE)
                                .bind(share.quota.id)
                                .bind(share.since)
                                .bind(images)
                                .bind(tokens)
                                .bind(cost)
                                .bind(n)
                                .fetch_optional(&mut *tx)
                                .await?
                                .is_some()
                        };
                    }
                    if reserve!() {
                        continue;
                    }
                    let exists: Option<i64> = sqlx::query_scalar(HAS_COUNTER)
                        .bind(share.quota.id)
                        .bind(share.since)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_none() {
                        // This period's first reservation: count the usage log.
                        sqlx::query(START_COUNTER)
                            .bind(share.quota.id)
                            .bind(share.since)
                            .bind(share.quota.quota.tenant.as_str())
                            .bind(share.quota.quota.user.as_deref())
                            .execute(&mut *tx)
                            .await?;
                    }
                    if !reserve!() {
                        tx.rollback().await?;
                        return Ok::<bool, sqlx::Error>(false);
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
            .await
        })?;
        Ok(fits)
    }
}
