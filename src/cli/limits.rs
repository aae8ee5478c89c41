//! `switchyard limits …`: a tenant's limits at intake (requests per minute and at once,
//! for the tenant and for each of its users), in the database directly or (with
//! `--server`) through a running server's admin API. Runtimes apply a change within
//! 2 s (at once on the replica that took it through `--server`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use switchyard_runtime::store::{Store, TenantLimits};

use super::{
    remote::{Remote, check},
    tenants::tenant,
};

/// The limits of `limits set`; a limit left out takes the `[tenants]` default.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Requests per minute for the whole tenant.
    #[arg(long)]
    rpm: Option<u32>,
    /// Requests at once for the whole tenant.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Requests per minute for each user of the tenant.
    #[arg(long)]
    user_rpm: Option<u32>,
    /// Requests at once for each user of the tenant.
    #[arg(long)]
    user_concurrency: Option<u32>,
    /// How the tenant's own provider accounts are used: prefer, only or never.
    #[arg(long)]
    own_accounts: Option<switchyard_core::routing::OwnAccounts>,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<TenantLimits> {
        tenant(&self.tenant)?;
        let limits = TenantLimits {
            rpm: self.rpm,
            concurrency: self.concurrency,
            user_rpm: self.user_rpm,
            user_concurrency: self.user_concurrency,
            own_accounts: self.own_accounts,
        };
        limits.check().map_err(|e| anyhow::anyhow!("--{e}"))?;
        Ok(limits)
    }
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Set a tenant's own limits (replacing any it had).
    Set(LimitArgs),
    /// Show a tenant's own limits and the ones that apply.
    Show {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Remove a tenant's own limits: the `[tenants]` defaults apply again.
    Remove {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

fn print_limits(tenant: &str, view: &Value) {
    let show = |name: &str| {
        let own = &view["own"][name];
        let effective = view["effective"][name]
            .as_u64()
            .map_or("unlimited".to_owned(), |v| v.to_string());
        if own.is_null() {
            format!("{name} {effective} (default)")
        } else {
            format!("{name} {effective}")
        }
    };
    let accounts = view["effective"]["own_accounts"]
        .as_str()
        .unwrap_or("prefer")
        .to_owned();
    let accounts = if view["own"]["own_accounts"].is_null() {
        format!("own_accounts {accounts} (default)")
    } else {
        format!("own_accounts {accounts}")
    };
    println!(
        "{tenant}: {}, {}, {}, {}, {accounts}",
        show("rpm"),
        show("concurrency"),
        show("user_rpm"),
        show("user_concurrency"),
    );
}

fn view(own: TenantLimits, defaults: TenantLimits) -> anyhow::Result<Value> {
    Ok(json!({
        "own": serde_json::to_value(own)?,
        "effective": serde_json::to_value(own.or(defaults))?,
    }))
}

/// `limits …` against the database; `defaults` are the `[tenants]` settings.
pub async fn run(
    store: &Store,
    defaults: TenantLimits,
    command: LimitsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        LimitsCommand::Set(args) => {
            let limits = args.limits()?;
            store.set_tenant_limits(&args.tenant, &limits).await?;
            print_limits(&args.tenant, &view(limits, defaults)?);
        }
        LimitsCommand::Show { tenant: t } => {
            tenant(&t)?;
            let own = store.tenant_limits(&t).await?.unwrap_or_default();
            print_limits(&t, &view(own, defaults)?);
        }
        LimitsCommand::Remove { tenant: t } => {
            tenant(&t)?;
            anyhow::ensure!(
                store.delete_tenant_limits(&t).await?,
                "tenant {t} has no limits of its own"
            );
            println!("limits of {t} removed: the defaults apply");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `limits …` against a server's admin API.
pub async fn run_remote(remote: &Remote, command: LimitsCommand) -> anyhow::Result<ExitCode> {
    match command {
        LimitsCommand::Set(args) => {
            let limits = args.limits()?;
            let (status, body) = remote
                .call(
                    Method::PUT,
                    &format!("/v1/tenants/{}/limits", args.tenant),
                    Some(serde_json::to_value(limits)?),
                )
                .await?;
            check(status, &body)?;
            print_limits(&args.tenant, &body);
        }
        LimitsCommand::Show { tenant: t } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(Method::GET, &format!("/v1/tenants/{t}/limits"), None)
                .await?;
            check(status, &body)?;
            print_limits(&t, &body);
        }
        LimitsCommand::Remove { tenant: t } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(Method::DELETE, &format!("/v1/tenants/{t}/limits"), None)
                .await?;
            check(status, &body)?;
            println!("limits of {t} removed: the defaults apply");
        }
    }
    Ok(ExitCode::SUCCESS)
}
