//! [`Reserver`]: the quota reservations of concurrent requests, written together
//! ([`Store::reserve_batch`]: one transaction and two statements per quota for a
//! whole batch, instead of a transaction per request).
//!
//! No task of its own: a request that finds nobody writing becomes the writer and
//! writes the oldest queued reservations (its own among them), a batch at a time,
//! until its own answer came; then it hands over, and a waiting request takes the
//! writer's role for what is left. If the writer is dropped mid-way, a waiting request
//! takes over the same way; a reservation whose batch failed or was lost with it is
//! made on its own (a hold it got already lets it through).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, oneshot};

use crate::store::{CountedQuota, HoldAsk, QueryError, Store, StoredQuota};

/// The most reservations written in one batch.
const BATCH: usize = 64;
/// How often a waiting request looks whether the batch writer went away.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// One request's reservation, owned so that another request can write it.
#[derive(Debug, Clone)]
pub(super) struct Reservation {
    pub(super) quotas: Arc<[StoredQuota]>,
    pub(super) tenant: String,
    pub(super) user: Option<String>,
    pub(super) request_id: String,
    pub(super) images: i64,
    pub(super) tokens: i64,
    pub(super) cost_usd: f64,
    pub(super) now: DateTime<Utc>,
}

impl Reservation {
    fn ask(&self) -> HoldAsk<'_> {
        HoldAsk {
            tenant: &self.tenant,
            user: self.user.as_deref(),
            request_id: &self.request_id,
            images: self.images,
            tokens: self.tokens,
            cost_usd: self.cost_usd,
            now: self.now,
        }
    }
}

type Answer = Result<Option<CountedQuota>, QueryError>;

struct Queued {
    reservation: Reservation,
    /// The batch's answer for it; dropped unanswered when the batch failed (the
    /// request then reserves on its own, which a hold taken already lets through).
    reply: oneshot::Sender<Option<CountedQuota>>,
}

/// Batches the reservations of one process (see the module docs). Cheap to share.
#[derive(Debug)]
pub(super) struct Reserver {
    store: Store,
    queue: Mutex<Vec<Queued>>,
    writing: AtomicBool,
    released: Notify,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("request_id", &self.reservation.request_id)
            .finish_non_exhaustive()
    }
}

/// Gives the writer's role back when its request ends, however it ends, and wakes
/// the waiting requests (one of them writes what is left).
struct Writing<'a>(&'a AtomicBool, &'a Notify);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
        self.1.notify_waiters();
    }
}

impl Reserver {
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            queue: Mutex::new(Vec::new()),
            writing: AtomicBool::new(false),
            released: Notify::new(),
        }
    }

    /// Reserves `reservation`: `None` if it may run, else the quota it would exceed.
    pub(super) async fn reserve(&self, reservation: Reservation) -> Answer {
        let (reply, mut answer) = oneshot::channel();
        let alone = reservation.clone();
        self.lock().push(Queued { reservation, reply });
        let got = loop {
            if let Some(got) = self.write_until_answered(&mut answer).await {
                break got;
            }
            // Another request writes: wait for the answer, or for the writer to stop
            // (then this one may have to write what is left).
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.writing.load(Ordering::Acquire) {
                continue;
            }
            tokio::select! {
                got = &mut answer => break got.ok(),
                () = released => {}
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        };
        match got {
            Some(answer) => Ok(answer),
            // Its batch failed, or was lost with a writer that went away: on its own
            // (with its own error, if the database fails it again).
            None => self.store.reserve(&alone.quotas, &alone.ask()).await,
        }
    }

    /// As the writer (unless another request writes: `None`), writes the oldest queued
    /// reservations, a batch at a time, until this request's own answer came: `Some`
    /// of it (`Some(None)`: its batch failed).
    async fn write_until_answered(
        &self,
        answer: &mut oneshot::Receiver<Option<CountedQuota>>,
    ) -> Option<Option<Option<CountedQuota>>> {
        if self.writing.swap(true, Ordering::AcqRel) {
            return None;
        }
        let _writing = Writing(&self.writing, &self.released);
        loop {
            match answer.try_recv() {
                Ok(got) => return Some(Some(got)),
                Err(oneshot::error::TryRecvError::Closed) => return Some(None),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Queued> = {
                let mut queue = self.lock();
                // A request that went away (its client gone) reserves nothing: its hold
                // would stand for an hour with nobody to settle it.
                queue.retain(|q| !q.reply.is_closed());
                let take = queue.len().min(BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                // Its own was taken by a writer that went away.
                return Some(None);
            }
            self.write(batch).await;
        }
    }

    async fn write(&self, batch: Vec<Queued>) {
        let asks: Vec<(&[StoredQuota], HoldAsk<'_>)> = batch
            .iter()
            .map(|q| (&*q.reservation.quotas, q.reservation.ask()))
            .collect();
        match self.store.reserve_batch(&asks).await {
            Ok(answers) => {
                for (queued, answer) in batch.into_iter().zip(answers) {
                    let _ = queued.reply.send(answer);
                }
            }
            // Each request tries on its own (the replies drop unanswered).
            Err(error) => tracing::warn!(%error, "a batch of quota reservations failed"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
