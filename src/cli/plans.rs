//! `switchyard plans …`: named plans (a tenant-wide quota over a period) and which
//! tenant has which, in the database directly or (with `--server`) through a running
//! server's admin API. A tenant's own quota for a period wins over its plan's.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use switchyard_runtime::store::{Plan, QuotaPeriod, Store};

use super::{
    remote::{Remote, check},
    tenants::{MaxArgs, tenant},
};

/// The limits of `plans set`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The plan's name.
    name: String,
    /// `day` or `month` (UTC).
    #[arg(long, default_value = "month")]
    period: String,
    #[command(flatten)]
    max: MaxArgs,
}

impl PlanArgs {
    fn plan(self) -> anyhow::Result<Plan> {
        let plan = Plan {
            name: self.name,
            period: QuotaPeriod::parse(&self.period)
                .map_err(|e| anyhow::anyhow!("--period: {e}"))?,
            max_requests: self.max.max_requests,
            max_images: self.max.max_images,
            max_tokens: self.max.max_tokens,
            max_cost_usd: self.max.max_cost_usd,
        };
        plan.check().map_err(|e| anyhow::anyhow!(e))?;
        Ok(plan)
    }
}

#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// List every plan.
    List,
    /// Create or replace a plan (every tenant assigned it gets the new limits).
    Set(PlanArgs),
    /// Remove a plan no tenant is assigned.
    Remove {
        /// The plan's name.
        name: String,
    },
    /// Assign a tenant a plan (replacing any).
    Assign {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The plan's name.
        #[arg(long)]
        plan: String,
    },
    /// Take a tenant's plan away (its own quotas stay).
    Unassign {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

fn print_plan(plan: &Value) {
    let limit = |name: &str| {
        plan[name]
            .as_f64()
            .map_or("-".to_owned(), |v| v.to_string())
    };
    println!(
        "{:<16} per {:<5}  requests {}  images {}  tokens {}  cost_usd {}",
        plan["name"].as_str().unwrap_or_default(),
        plan["period"].as_str().unwrap_or_default(),
        limit("max_requests"),
        limit("max_images"),
        limit("max_tokens"),
        limit("max_cost_usd"),
    );
}

/// `plans …` against the database.
pub async fn run(store: &Store, command: PlansCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlansCommand::List => {
            for plan in store.plans().await? {
                print_plan(&serde_json::to_value(&plan)?);
            }
        }
        PlansCommand::Set(args) => {
            let plan = args.plan()?;
            let tenants = store.set_plan(&plan).await?;
            print_plan(&serde_json::to_value(&plan)?);
            println!("applies to {} tenant(s)", tenants.len());
        }
        PlansCommand::Remove { name } => {
            store.delete_plan(&name).await?;
            println!("plan {name} removed");
        }
        PlansCommand::Assign { tenant: t, plan } => {
            tenant(&t)?;
            store.assign_plan(&t, &plan).await?;
            println!("tenant {t} has plan {plan}");
        }
        PlansCommand::Unassign { tenant: t } => {
            tenant(&t)?;
            anyhow::ensure!(store.unassign_plan(&t).await?, "tenant {t} has no plan");
            println!("tenant {t} has no plan now");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `plans …` against a server's admin API.
pub async fn run_remote(remote: &Remote, command: PlansCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlansCommand::List => {
            let (status, body) = remote.call(Method::GET, "/v1/plans", None).await?;
            check(status, &body)?;
            for plan in body["plans"].as_array().into_iter().flatten() {
                print_plan(plan);
            }
        }
        PlansCommand::Set(args) => {
            let plan = args.plan()?;
            let (status, body) = remote
                .call(
                    Method::PUT,
                    &format!("/v1/plans/{}", plan.name),
                    Some(json!({
                        "period": plan.period.as_str(), "max_requests": plan.max_requests,
                        "max_images": plan.max_images, "max_tokens": plan.max_tokens,
                        "max_cost_usd": plan.max_cost_usd,
                    })),
                )
                .await?;
            check(status, &body)?;
            print_plan(&body);
        }
        PlansCommand::Remove { name } => {
            let (status, body) = remote
                .call(Method::DELETE, &format!("/v1/plans/{name}"), None)
                .await?;
            check(status, &body)?;
            println!("plan {name} removed");
        }
        PlansCommand::Assign { tenant: t, plan } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(
                    Method::PUT,
                    &format!("/v1/tenants/{t}/plan"),
                    Some(json!({"plan": plan})),
                )
                .await?;
            check(status, &body)?;
            println!("tenant {t} has plan {plan}");
        }
        PlansCommand::Unassign { tenant: t } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(Method::DELETE, &format!("/v1/tenants/{t}/plan"), None)
                .await?;
            check(status, &body)?;
            println!("tenant {t} has no plan now");
        }
    }
    Ok(ExitCode::SUCCESS)
}
