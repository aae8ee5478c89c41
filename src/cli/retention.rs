//! `switchyard retention …`: run the cleaner now (`run`, with `--dry-run` to see what
//! would go), and read, set or remove a tenant's own retention policy, in the database
//! directly. A server's cleaner reads policies at the start of each run.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use switchyard_runtime::{
    Settings,
    artifacts::ArtifactStore,
    retention::Cleaner,
    store::{RetentionPolicy, Store},
};

use super::tenants::tenant;

/// The policy of `retention set`; a value left out takes the `[retention]` default.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Days a finished task is kept (0: for ever).
    #[arg(long)]
    tasks_days: Option<u32>,
    /// Days the tenant's images are kept (0: for ever).
    #[arg(long)]
    artifacts_days: Option<u32>,
    /// Days its usage rows are kept (0: for ever, else at least 32).
    #[arg(long)]
    usage_days: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Apply every tenant's policy now (waits for no interval; refused while another
    /// process is cleaning).
    Run {
        /// Count what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a tenant's own policy (replacing any it had).
    Set(PolicyArgs),
    /// Show a tenant's own policy and the one that applies.
    Show {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Remove a tenant's own policy: the `[retention]` defaults apply again.
    Remove {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

fn print_policy(tenant: &str, own: RetentionPolicy, defaults: RetentionPolicy) {
    let effective = own.or(defaults);
    let show = |name: &str, own: Option<u32>, effective: Option<u32>| {
        let days = match effective.unwrap_or(0) {
            0 => "for ever".to_owned(),
            d => format!("{d} days"),
        };
        if own.is_none() {
            format!("{name} {days} (default)")
        } else {
            format!("{name} {days}")
        }
    };
    println!(
        "{tenant}: {}, {}, {}",
        show("tasks", own.tasks_days, effective.tasks_days),
        show("artifacts", own.artifacts_days, effective.artifacts_days),
        show("usage", own.usage_days, effective.usage_days),
    );
}

/// `retention …` against the database.
pub async fn run(
    settings: &Settings,
    store: &Store,
    command: RetentionCommand,
) -> anyhow::Result<ExitCode> {
    let defaults = settings.retention.defaults();
    match command {
        RetentionCommand::Run { dry_run, json } => {
            let artifacts = ArtifactStore::open(&settings.artifacts.url)?;
            let cleaner = Cleaner::new(store.clone(), artifacts, settings.retention.clone());
            let report = cleaner.run(dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let verb = if dry_run { "would delete" } else { "deleted" };
                println!(
                    "{verb}: {} tasks, {} usage rows, {} attempt rows, {} upload records, \
                     {} webhook deliveries, {} images; {} results' images released",
                    report.tasks,
                    report.usage,
                    report.attempts,
                    report.uploads,
                    report.deliveries,
                    report.artifacts_deleted,
                    report.results_released
                );
                println!(
                    "kept: {} queued images still referenced, {} written within the grace",
                    report.artifacts_referenced, report.artifacts_recent
                );
                if dry_run {
                    println!(
                        "(images whose references this run would release are checked at \
                         the real run)"
                    );
                }
            }
        }
        RetentionCommand::Set(args) => {
            tenant(&args.tenant)?;
            let policy = RetentionPolicy {
                tasks_days: args.tasks_days,
                artifacts_days: args.artifacts_days,
                usage_days: args.usage_days,
            };
            policy.check().map_err(|e| anyhow::anyhow!("--{e}"))?;
            store.set_tenant_retention(&args.tenant, &policy).await?;
            print_policy(&args.tenant, policy, defaults);
        }
        RetentionCommand::Show { tenant: t } => {
            tenant(&t)?;
            let own = store.tenant_retention(&t).await?.unwrap_or_default();
            print_policy(&t, own, defaults);
        }
        RetentionCommand::Remove { tenant: t } => {
            tenant(&t)?;
            anyhow::ensure!(
                store.delete_tenant_retention(&t).await?,
                "tenant {t} has no retention policy of its own"
            );
            println!("retention policy of {t} removed: the defaults apply");
        }
    }
    Ok(ExitCode::SUCCESS)
}
