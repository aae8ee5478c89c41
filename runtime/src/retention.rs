//! The retention cleaner (issue 17 §2): deletes finished tasks, releases and deletes
//! images, and deletes usage rows past each tenant's policy (its own, else
//! `[retention]`), in bounded batches.
//!
//! One cleaner runs for the whole cluster: every process tries each interval to take
//! the `retention` lease in the database, which is free only when no run holds it and
//! the last run started at least an interval ago. The holder renews it between
//! batches and stops if it lost it.
//!
//! Images are content-addressed and shared: a result or an upload that expires only
//! queues its image (in the same transaction); the collector then deletes each queued
//! image that nothing kept references (a result not released, an upload, an
//! unfinished task's input) and that was not written for `grace_ms`.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

use crate::{
    artifacts::{ArtifactError, ArtifactStore},
    settings::RetentionSettings,
    store::{QueryError, Reference, RetentionField, RetentionPolicy, Scope, Store},
};

/// The lease's name.
const LEASE: &str = "retention";
/// How long a taken lease lasts without renewal.
const LEASE_FOR: Duration = Duration::from_secs(60);
/// Renewed when this much of it has passed.
const RENEW_AFTER: Duration = Duration::from_secs(20);

/// Why a retention run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] QueryError),
    /// The artifact store failed.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// Another process took the lease (this run was too slow to renew it).
    #[error("the retention lease was lost to another process")]
    LeaseLost,
    /// Another process is cleaning now.
    #[error("another process is cleaning now; try again when it is done")]
    Busy,
}

/// What a run deleted (or, dry, would delete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Whether nothing was deleted (counts only).
    pub dry_run: bool,
    /// Finished tasks deleted, with their parameters and results.
    pub tasks: u64,
    /// Results whose images were released (the result rows stay).
    pub results_released: u64,
    /// Upload records deleted.
    pub uploads: u64,
    /// Finished webhook deliveries deleted (the log lasts as long as the tasks).
    pub deliveries: u64,
    /// Ended batches deleted whose tasks were all deleted (a day after they ended).
    pub batches: u64,
    /// Usage rows deleted.
    pub usage: u64,
    /// Attempt rows (the statistics) deleted, with the usage rows.
    pub attempts: u64,
    /// Images deleted from the store (dry: queued images that would be).
    pub artifacts_deleted: u64,
    /// Queued images kept because something kept still references them.
    pub artifacts_referenced: u64,
    /// Queued images kept because they were written within the grace.
    pub artifacts_recent: u64,
}

/// The cleaner of one process.
#[derive(Debug, Clone)]
pub struct Cleaner {
    store: Store,
    artifacts: ArtifactStore,
    settings: RetentionSettings,
    holder: String,
}

impl Cleaner {
    /// A cleaner over `store` and `artifacts` with `settings`.
    pub fn new(store: Store, artifacts: ArtifactStore, settings: RetentionSettings) -> Self {
        let holder = crate::store::lease_holder();
        Self {
            store,
            artifacts,
            settings,
            holder,
        }
    }

    /// Runs every `interval_ms` until `shutdown`, where this process takes the lease.
    pub fn start(self, tasks: &switchyard_tasks::Tasks, mut shutdown: watch::Receiver<bool>) {
        if !self.settings.enabled {
            return;
        }
        tasks.spawn("retention", async move {
            // The first run comes an interval after start, not during it: a start
            // has enough to write (and on SQLite one writer at a time).
            let period = Duration::from_millis(self.settings.interval_ms);
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                if let Err(error) = self.tick().await {
                    tracing::warn!(%error, "retention run stopped; the next one goes on");
                    metrics::counter!("switchyard_retention_failures_total").increment(1);
                }
            }
        });
    }

    /// One turn: takes the lease if it is free and an interval passed since the last
    /// run anywhere, runs, gives it back. `None` if this process did not run.
    ///
    /// # Errors
    /// [`RetentionError`]: the run stopped there (what it deleted stays deleted).
    pub async fn tick(&self) -> Result<Option<RetentionReport>, RetentionError> {
        let interval = i64::try_from(self.settings.interval_ms).unwrap_or(i64::MAX);
        let now = Utc::now().timestamp_millis();
        self.with_lease(now - interval).await
    }

    /// Applies the policies once, now, whatever the interval (`retention run`).
    /// `dry_run` counts what would go, deletes nothing and needs no lease.
    ///
    /// # Errors
    /// [`RetentionError::Busy`] while another process runs; else where the run stopped.
    pub async fn run(&self, dry_run: bool) -> Result<RetentionReport, RetentionError> {
        if dry_run {
            return self.apply(true).await;
        }
        self.with_lease(i64::MAX).await?.ok_or(RetentionError::Busy)
    }

    /// Runs if the lease is free and no run started after `not_since_ms`.
    async fn with_lease(
        &self,
        not_since_ms: i64,
    ) -> Result<Option<RetentionReport>, RetentionError> {
        let now = Utc::now().timestamp_millis();
        let until = now + LEASE_FOR.as_millis() as i64;
        if !self
            .store
            .take_lease(LEASE, &self.holder, now, until, not_since_ms)
            .await?
        {
            return Ok(None);
        }
        let run = self.apply(false).await;
        if let Err(error) = self.store.release_lease(LEASE, &self.holder).await {
            tracing::warn!(%error, "cannot give the retention lease back; it runs out in 60 s");
        }
        run.map(Some)
    }

    async fn apply(&self, dry_run: bool) -> Result<RetentionReport, RetentionError> {
        let span = tracing::info_span!("retention", dry_run, holder = %self.holder);
        self.apply_policies(dry_run).instrument(span).await
    }

    async fn apply_policies(&self, dry_run: bool) -> Result<RetentionReport, RetentionError> {
        let mut report = RetentionReport {
            dry_run,
            ..RetentionReport::default()
        };
        let mut lease = Lease::new(self, dry_run);
        let policies = self.store.tenant_retentions().await?;
        let defaults = self.settings.defaults();
        // Images first (their results may be deleted with their tasks next), then
        // tasks, then usage.
        for field in [
            RetentionField::Artifacts,
            RetentionField::Tasks,
            RetentionField::Usage,
        ] {
            for (scope, days) in scopes(field, &defaults, &policies) {
                if days == 0 {
                    continue;
                }
                let cutoff = Utc::now() - TimeDelta::days(i64::from(days));
                match field {
                    RetentionField::Artifacts => {
                        report.results_released += self
                            .batches(&mut lease, |limit| {
                                self.store.release_results(scope, cutoff, limit)
                            })
                            .await?;
                        report.uploads += self
                            .batches(&mut lease, |limit| {
                                self.store.expire_uploads(scope, cutoff, limit)
                            })
                            .await?;
                    }
                    RetentionField::Tasks => {
                        report.tasks += self
                            .batches(&mut lease, |limit| {
                                self.store.expire_tasks(scope, cutoff, limit)
                            })
                            .await?;
                        report.deliveries += self
                            .batches(&mut lease, |limit| {
                                self.store.expire_deliveries(scope, cutoff, limit)
                            })
                            .await?;
                    }
                    RetentionField::Usage => {
                        report.usage += self
                            .batches(&mut lease, |limit| {
                                self.store.expire_usage(scope, cutoff, limit)
                            })
                            .await?;
                        report.attempts += self
                            .batches(&mut lease, |limit| {
                                self.store.expire_attempts(scope, cutoff, limit)
                            })
                            .await?;
                    }
                }
            }
        }
        // A batch outlives its tasks by a day at least, then goes as an empty shell.
        let ended_before = Utc::now() - TimeDelta::days(1);
        report.batches += self
            .batches(&mut lease, |limit| {
                self.store.expire_empty_batches(ended_before, limit)
            })
            .await?;
        self.collect(&mut lease, &mut report).await?;
        log(&report);
        Ok(report)
    }

    /// Runs `delete` in batches until one comes back short; dry, counts once.
    async fn batches<F, Fut>(&self, lease: &mut Lease<'_>, delete: F) -> Result<u64, RetentionError>
    where
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<u64, QueryError>>,
    {
        if lease.dry_run {
            return Ok(delete(0).await?);
        }
        let limit = self.settings.batch;
        let mut total = 0;
        loop {
            let done = delete(limit).await?;
            total += done;
            if done < u64::from(limit) {
                return Ok(total);
            }
            lease.keep().await?;
        }
    }

    /// Deletes each queued image nothing kept references and that was not written
    /// within the grace; takes the others off the queue or leaves them for later.
    async fn collect(
        &self,
        lease: &mut Lease<'_>,
        report: &mut RetentionReport,
    ) -> Result<(), RetentionError> {
        let grace = TimeDelta::milliseconds(i64::try_from(self.settings.grace_ms).unwrap_or(0));
        let mut after = String::new();
        loop {
            let queued = self
                .store
                .queued_artifacts(&after, self.settings.batch)
                .await?;
            let Some(last) = queued.last() else {
                return Ok(());
            };
            after.clone_from(last);
            for id in &queued {
                lease.keep().await?;
                match self.store.artifact_reference(id).await? {
                    Reference::Kept => {
                        report.artifacts_referenced += 1;
                        if !lease.dry_run {
                            // Queued again when that reference expires.
                            self.store.unqueue_artifact(id).await?;
                        }
                        continue;
                    }
                    Reference::Input => {
                        // Stays queued: nothing queues it again when that task ends.
                        report.artifacts_referenced += 1;
                        continue;
                    }
                    Reference::None => {}
                }
                match self.artifacts.modified(id).await {
                    Ok(Some(written)) if Utc::now() - written < grace => {
                        report.artifacts_recent += 1;
                        continue;
                    }
                    Ok(_) | Err(ArtifactError::BadId(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                report.artifacts_deleted += 1;
                if !lease.dry_run {
                    self.artifacts.delete(id).await.or_else(|e| match e {
                        ArtifactError::BadId(_) => Ok(()),
                        e => Err(e),
                    })?;
                    self.store.unqueue_artifact(id).await?;
                }
            }
            lease.keep().await?;
        }
    }
}

/// The scopes of `field`: the tenants with their own value, and the rest with the
/// default.
fn scopes<'a>(
    field: RetentionField,
    defaults: &RetentionPolicy,
    policies: &'a [(String, RetentionPolicy)],
) -> Vec<(Scope<'a>, u32)> {
    let mut scopes = vec![(Scope::Rest, defaults.get(field).unwrap_or(0))];
    for (tenant, policy) in policies {
        if let Some(days) = policy.get(field) {
            scopes.push((Scope::Tenant(tenant), days));
        }
    }
    scopes
}

fn log(report: &RetentionReport) {
    if !report.dry_run {
        metrics::counter!("switchyard_retention_runs_total").increment(1);
        for (what, count) in [
            ("tasks", report.tasks),
            ("results", report.results_released),
            ("uploads", report.uploads),
            ("deliveries", report.deliveries),
            ("batches", report.batches),
            ("usage", report.usage),
            ("attempts", report.attempts),
            ("artifacts", report.artifacts_deleted),
        ] {
            metrics::counter!("switchyard_retention_deleted_total", "what" => what)
                .increment(count);
        }
    }
    tracing::info!(
        dry_run = report.dry_run,
        tasks = report.tasks,
        results_released = report.results_released,
        uploads = report.uploads,
        deliveries = report.deliveries,
        usage = report.usage,
        attempts = report.attempts,
        artifacts_deleted = report.artifacts_deleted,
        artifacts_referenced = report.artifacts_referenced,
        artifacts_recent = report.artifacts_recent,
        "retention run"
    );
}

/// The lease while a run holds it: renewed between batches.
struct Lease<'a> {
    cleaner: &'a Cleaner,
    dry_run: bool,
    renewed: tokio::time::Instant,
}

impl<'a> Lease<'a> {
    fn new(cleaner: &'a Cleaner, dry_run: bool) -> Self {
        Self {
            cleaner,
            dry_run,
            renewed: tokio::time::Instant::now(),
        }
    }

    /// Renews the lease if a third of it passed; an error if it is another's now. (A
    /// dry run holds no lease.)
    async fn keep(&mut self) -> Result<(), RetentionError> {
        if self.dry_run || self.renewed.elapsed() < RENEW_AFTER {
            return Ok(());
        }
        let until = Utc::now().timestamp_millis() + LEASE_FOR.as_millis() as i64;
        let store = &self.cleaner.store;
        if !store
            .renew_lease(LEASE, &self.cleaner.holder, until)
            .await?
        {
            return Err(RetentionError::LeaseLost);
        }
        self.renewed = tokio::time::Instant::now();
        Ok(())
    }
}
