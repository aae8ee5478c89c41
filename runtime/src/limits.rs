//! Per-tenant limits at intake (#16): requests per minute (GCRA, one governor per
//! tenant and a keyed one for its users) and requests at once, per tenant and per
//! user. A tenant's own limits (`tenant_limits`) override the `[tenants]` defaults.
//!
//! Cluster-wide by the same 1/n share as the provider accounts' limits: with `n`
//! replicas live, each process allows `limit / n` (at least 1). Each process caches a
//! tenant's limits for [`REFRESH`] (at once after a change made through it).
//!
//! [`Limits::try_take`] either gives a [`Permit`] (held while the request runs; its
//! drop frees the tenant's and the user's slot) or says how long to wait.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed, keyed::HashMapStateStore},
};

use crate::{
    clock::Clock,
    store::{QueryError, Store, TenantLimits},
};

/// How old a tenant's cached limits may get.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How long a caller refused for requests at once is told to wait: a slot frees when
/// one of the tenant's requests ends, which nothing here can foresee.
pub const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// Tenants' states kept before the idle ones are dropped.
const MAX_TENANT_STATES: usize = 10_000;

/// How long a tenant's state outlives its last request: a minute restores any rate
/// allowance in full.
const IDLE: Duration = Duration::from_secs(60);

/// Users' rate states kept per tenant before the idle ones are dropped.
const MAX_USER_STATES: usize = 10_000;

type Direct = RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<Duration>>;
type Keyed = RateLimiter<String, HashMapStateStore<String>, Clock, NoOpMiddleware<Duration>>;

/// The per-tenant limiter of one process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    defaults: TenantLimits,
    clock: Clock,
    refresh: Duration,
    membership: Option<crate::replicas::Membership>,
    /// Owns the background reads of tenants' limits.
    tasks: switchyard_tasks::Tasks,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

/// A tenant's limiter state at one set of limits and share.
struct Tenant {
    read_at: Mutex<Instant>,
    /// Changed through this process: read again at the next request.
    stale: std::sync::atomic::AtomicBool,
    /// A background read of its limits is under way.
    refreshing: std::sync::atomic::AtomicBool,
    /// Its limits as stored (for the next read to compare).
    limits: TenantLimits,
    share: u32,
    rate: Option<Direct>,
    user_rate: Option<Keyed>,
    checks: AtomicU64,
    /// Requests running now; carried over when the limits change.
    running: Arc<Running>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("limits", &self.limits)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Running {
    tenant: AtomicU32,
    users: Mutex<HashMap<String, u32>>,
}

/// A request's slot under its tenant's (and user's) limits, freed on drop.
#[derive(Debug)]
pub struct Permit {
    running: Arc<Running>,
    user: Option<String>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.running.tenant.fetch_sub(1, Ordering::AcqRel);
        if let Some(user) = &self.user
            && let Ok(mut users) = self.running.users.lock()
            && let Some(count) = users.get_mut(user)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                users.remove(user);
            }
        }
    }
}

/// A request over its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// When it may try again.
    pub retry_after: Duration,
    /// Refused for requests at once: a slot frees as soon as one of them ends.
    pub at_once: bool,
    /// Refused by the user's own limit (the tenant's other users may go on).
    pub user: bool,
    /// Which limit, for the `rate_limited` error.
    pub message: String,
}

/// This process's part of a limit shared by `share` replicas (at least 1), as the
/// provider accounts' limits are shared.
fn part(limit: u32, share: u32) -> u32 {
    (limit / share.max(1)).max(1)
}

fn per_minute(limit: u32, share: u32) -> Quota {
    let rpm = NonZeroU32::new(part(limit, share)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(rpm)
}

impl Limits {
    /// A limiter with `defaults` for tenants without limits of their own.
    pub fn new(store: Store, defaults: TenantLimits, clock: Clock) -> Self {
        Self::with_refresh(store, defaults, clock, REFRESH)
    }

    /// [`Limits::new`] reading limits again at another interval (tests).
    pub fn with_refresh(
        store: Store,
        defaults: TenantLimits,
        clock: Clock,
        refresh: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                defaults,
                clock,
                refresh,
                membership: None,
                tasks: switchyard_tasks::Tasks::new("tenant-limits"),
                tenants: Mutex::default(),
            }),
        }
    }

    /// Runs the background reads of tenants' limits under `tasks` (cancelled with it).
    #[must_use]
    pub fn with_tasks(mut self, tasks: &switchyard_tasks::Tasks) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tasks = tasks.child("tenant-limits");
        }
        self
    }

    /// Shares every tenant's limits among the replicas `membership` counts.
    #[must_use]
    pub fn with_membership(mut self, membership: Option<crate::replicas::Membership>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.membership = membership;
        }
        self
    }

    fn share(&self) -> u32 {
        match &self.inner.membership {
            Some(membership) => membership.replicas().max(1),
            None => 1,
        }
    }

    /// Reads a tenant's limits again at its next request (they changed in this
    /// process); until then the cached ones hold.
    pub fn invalidate(&self, tenant: &str) {
        if let Ok(tenants) = self.inner.tenants.lock()
            && let Some(state) = tenants.get(tenant)
        {
            state.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Makes sure the tenant's limits are cached and fresh, for [`Limits::try_take_now`].
    ///
    /// # Errors
    /// [`QueryError`] when its limits cannot be read.
    pub async fn prepare(&self, tenant: &str) -> Result<(), QueryError> {
        self.tenant(tenant).await.map(drop)
    }

    /// [`Limits::try_take`] by the cached limits, without waiting for a read: a tenant
    /// not cached (not [`Limits::prepare`]d) is not limited.
    pub fn try_take_now(
        &self,
        tenant: &str,
        user: Option<&str>,
    ) -> Result<Option<Permit>, Limited> {
        let state = self
            .inner
            .tenants
            .lock()
            .ok()
            .and_then(|tenants| tenants.get(tenant).cloned());
        match state {
            Some(state) => self.take(&state, tenant, user).map(Some),
            None => Ok(None),
        }
    }

    /// The tenant's effective limits: its own, else the defaults.
    ///
    /// # Errors
    /// [`QueryError`] when its limits cannot be read.
    pub async fn effective(&self, tenant: &str) -> Result<TenantLimits, QueryError> {
        Ok(self.tenant(tenant).await?.limits)
    }

    /// How the tenant's own provider accounts are used (bring your own key): its
    /// setting, else the default; the default too when its limits cannot be read.
    pub async fn own_accounts(&self, tenant: &str) -> switchyard_core::routing::OwnAccounts {
        let set = match self.tenant(tenant).await {
            Ok(state) => state.limits.own_accounts,
            Err(_) => self.inner.defaults.own_accounts,
        };
        set.unwrap_or_default()
    }

    /// A slot for a request of `tenant` (and `user`), or how long to wait for one.
    ///
    /// # Errors
    /// [`QueryError`] when the tenant's limits cannot be read.
    pub async fn try_take(
        &self,
        tenant: &str,
        user: Option<&str>,
    ) -> Result<Result<Permit, Limited>, QueryError> {
        let state = self.tenant(tenant).await?;
        Ok(self.take(&state, tenant, user))
    }

    fn take(&self, state: &Tenant, tenant: &str, user: Option<&str>) -> Result<Permit, Limited> {
        let limits = state.limits;
        let share = state.share;
        let running = &state.running;
        // The tenant's slot is taken atomically (no load-then-add), so requests racing
        // for its last slot cannot both get it.
        let max = limits.concurrency.map_or(u32::MAX, |max| part(max, share));
        if running
            .tenant
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Limited {
                user: false,
                retry_after: CONCURRENCY_RETRY,
                at_once: true,
                message: format!("tenant '{tenant}' has {max} requests running, its limit here"),
            });
        }
        // From here on the permit owns the tenant's slot (and the user's, once taken).
        let mut permit = Permit {
            running: running.clone(),
            user: None,
        };
        // The user's slot is counted under the lock, so two of its requests cannot
        // both take the last one.
        if let Some(user) = user
            && let Some(max) = limits.user_concurrency
        {
            let mut users = running.users.lock().unwrap_or_else(|p| p.into_inner());
            let count = users.entry(user.to_owned()).or_insert(0);
            if *count >= part(max, share) {
                if *count == 0 {
                    users.remove(user);
                }
                return Err(Limited {
                    user: true,
                    retry_after: CONCURRENCY_RETRY,
                    at_once: true,
                    message: format!(
                        "user '{user}' of tenant '{tenant}' has {} requests running, its limit here",
                        part(max, share)
                    ),
                });
            }
            *count += 1;
            permit.user = Some(user.to_owned());
        }
        let now = governor::clock::Clock::now(&self.inner.clock);
        if let (Some(user), Some(rate)) = (user, &state.user_rate) {
            if state
                .checks
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1024)
                && rate.len() > MAX_USER_STATES
            {
                rate.retain_recent();
            }
            if let Err(not_until) = rate.check_key(&user.to_owned()) {
                return Err(Limited {
                    user: true,
                    retry_after: not_until.wait_time_from(now),
                    at_once: false,
                    message: format!(
                        "user '{user}' of tenant '{tenant}' is over its {} requests a minute",
                        limits.user_rpm.map_or(0, |m| part(m, share))
                    ),
                });
            }
        }
        if let Some(rate) = &state.rate
            && let Err(not_until) = rate.check()
        {
            return Err(Limited {
                user: false,
                retry_after: not_until.wait_time_from(now),
                at_once: false,
                message: format!(
                    "tenant '{tenant}' is over its {} requests a minute",
                    limits.rpm.map_or(0, |m| part(m, share))
                ),
            });
        }
        Ok(permit)
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Tenant>> {
        self.inner
            .tenants
            .lock()
            .ok()
            .and_then(|tenants| tenants.get(tenant).cloned())
    }

    /// The tenant's limiter state: cached; read again once [`REFRESH`] old (in the
    /// background: the cached state serves meanwhile, so no request, and not intake's
    /// loop, waits on the database for it); read before answering the first time, after
    /// a change made through this process, or when the share changed.
    async fn tenant(&self, tenant: &str) -> Result<Arc<Tenant>, QueryError> {
        let share = self.share();
        if let Some(state) = self.cached(tenant)
            && !state.stale.load(Ordering::Relaxed)
            && state.share == share
        {
            let old = !state
                .read_at
                .lock()
                .is_ok_and(|at| at.elapsed() < self.inner.refresh);
            if old && !state.refreshing.swap(true, Ordering::AcqRel) {
                let (limits, tenant) = (self.clone(), tenant.to_owned());
                self.inner
                    .tasks
                    .spawn_bounded("tenant-limits-refresh", async move {
                        if let Err(error) = limits.read(&tenant).await {
                            tracing::warn!(%error, "cannot read the tenant's limits");
                        }
                        if let Some(state) = limits.cached(&tenant) {
                            state.refreshing.store(false, Ordering::Release);
                        }
                    });
            }
            return Ok(state);
        }
        self.read(tenant).await
    }

    /// Reads the tenant's limits and builds its state again if they (or the share)
    /// changed; its running counts carry over.
    async fn read(&self, tenant: &str) -> Result<Arc<Tenant>, QueryError> {
        let share = self.share();
        let cached = self.cached(tenant);
        let limits = self
            .inner
            .store
            .tenant_limits(tenant)
            .await?
            .unwrap_or_default()
            .or(self.inner.defaults);
        if let Some(old) = cached
            && old.limits == limits
            && old.share == share
        {
            // Unchanged: the rate state stays, only the reading is new.
            if let Ok(mut read_at) = old.read_at.lock() {
                *read_at = Instant::now();
            }
            old.stale.store(false, Ordering::Relaxed);
            return Ok(old);
        }
        let Ok(mut tenants) = self.inner.tenants.lock() else {
            return Ok(Arc::new(self.build(limits, share, Arc::default())));
        };
        // The running counts of whatever state is in the map now (not of the one read
        // before the database answered: another read may have replaced it since), so
        // two reads racing cannot each start counting from zero.
        let running = tenants
            .get(tenant)
            .map(|current| current.running.clone())
            .unwrap_or_default();
        let state = Arc::new(self.build(limits, share, running));
        {
            if tenants.len() >= MAX_TENANT_STATES {
                // A tenant idle for a minute has a full rate allowance again, so its
                // state can go (a hostile stream of new tenant names cannot grow it).
                tenants.retain(|_, t| {
                    t.running.tenant.load(Ordering::Acquire) > 0
                        || t.read_at.lock().is_ok_and(|at| at.elapsed() < IDLE)
                });
            }
            tenants.insert(tenant.to_owned(), state.clone());
        }
        Ok(state)
    }

    fn direct(&self, rpm: Option<u32>, share: u32) -> Option<Direct> {
        rpm.map(|rpm| RateLimiter::direct_with_clock(per_minute(rpm, share), self.inner.clock))
    }

    fn build(&self, limits: TenantLimits, share: u32, running: Arc<Running>) -> Tenant {
        Tenant {
            read_at: Mutex::new(Instant::now()),
            stale: std::sync::atomic::AtomicBool::new(false),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            limits,
            share,
            rate: self.direct(limits.rpm, share),
            user_rate: limits.user_rpm.map(|rpm| {
                RateLimiter::new(
                    per_minute(rpm, share),
                    HashMapStateStore::default(),
                    self.inner.clock,
                )
            }),
            checks: AtomicU64::new(0),
            running,
        }
    }
}
