//! `switchyard keys …` and `switchyard quotas …`: tenant keys (for the OpenAI-compatible
//! endpoints) and quotas, in the database directly or (with `--server`) through a
//! running server's admin API. Runtimes see a quota change within 2 s (at once through
//! `--server`) and a revoked key at once.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use switchyard_runtime::store::{Quota, QuotaPeriod, Store};

use super::remote::{Remote, check};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for a tenant; it is printed this once.
    Create {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// A label.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a tenant's keys (never the keys themselves).
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The key id (from `keys list`).
        id: i64,
    },
}

/// The limits of `quotas set`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// One user of the tenant (default: the whole tenant).
    #[arg(long)]
    user: Option<String>,
    /// `day` or `month` (UTC).
    #[arg(long)]
    period: String,
    #[command(flatten)]
    max: MaxArgs,
}

/// The limits of a quota or a plan, per period (at least one).
#[derive(Debug, Args)]
pub struct MaxArgs {
    /// Requests at most.
    #[arg(long)]
    pub(super) max_requests: Option<i64>,
    /// Images at most.
    #[arg(long)]
    pub(super) max_images: Option<i64>,
    /// Input plus output tokens at most.
    #[arg(long)]
    pub(super) max_tokens: Option<i64>,
    /// Spend at most, in USD.
    #[arg(long)]
    pub(super) max_cost_usd: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum QuotasCommand {
    /// Create or replace a quota.
    Set(QuotaArgs),
    /// List a tenant's quotas with what each used this period.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Remove a quota.
    Remove {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The user of a per-user quota.
        #[arg(long)]
        user: Option<String>,
        /// `day` or `month`.
        #[arg(long)]
        period: String,
    },
}

/// `value` as a URL query value.
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn period(name: &str) -> anyhow::Result<QuotaPeriod> {
    QuotaPeriod::parse(name).map_err(|e| anyhow::anyhow!("--period: {e}"))
}

pub(super) fn tenant(name: &str) -> anyhow::Result<()> {
    switchyard_core::Tenant::new(name)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))
}

fn quota(args: QuotaArgs) -> anyhow::Result<Quota> {
    let quota = Quota {
        period: period(&args.period)?,
        tenant: args.tenant,
        user: args.user,
        max_requests: args.max.max_requests,
        max_images: args.max.max_images,
        max_tokens: args.max.max_tokens,
        max_cost_usd: args.max.max_cost_usd,
    };
    quota.check().map_err(|e| anyhow::anyhow!(e))?;
    Ok(quota)
}

fn print_key(key: &Value) {
    println!(
        "{:>5}  {:<10}  {:<16}  {}  {}",
        key["id"],
        key["prefix"].as_str().unwrap_or_default(),
        key["name"].as_str().unwrap_or_default(),
        key["created_at"].as_str().unwrap_or_default(),
        key["revoked_at"]
            .as_str()
            .map_or("live".to_owned(), |at| format!("revoked {at}")),
    );
}

/// One quota as a line: per limit `used/max`, with `(+n held)` for what running
/// requests hold.
fn print_quota(quota: &Value) {
    let limit = |name: &str, max: &str| {
        let held = &quota["reserved"][name];
        let held = match held.as_f64() {
            Some(h) if h > 0.0 => format!(" (+{held} held)"),
            _ => String::new(),
        };
        let max = quota[max]
            .as_f64()
            .map_or("-".to_owned(), |v| v.to_string());
        format!("{name} {}/{max}{held}", quota["used"][name])
    };
    println!(
        "{:<6} {:<12} {}  {}  {}  {}",
        quota["period"].as_str().unwrap_or_default(),
        quota["user"].as_str().unwrap_or("(tenant)"),
        limit("requests", "max_requests"),
        limit("images", "max_images"),
        limit("tokens", "max_tokens"),
        limit("cost_usd", "max_cost_usd"),
    );
}

/// `keys …` against the database.
pub async fn keys(store: &Store, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { tenant: t, name } => {
            tenant(&t)?;
            let (key, secret) = store.create_tenant_key(&t, &name).await?;
            println!("key {} for tenant {t} (shown this once):\n{secret}", key.id);
        }
        KeysCommand::List { tenant: t } => {
            tenant(&t)?;
            for key in store.tenant_keys(&t).await? {
                print_key(&json!({
                    "id": key.id, "prefix": key.prefix, "name": key.name,
                    "created_at": key.created_at, "revoked_at": key.revoked_at,
                }));
            }
        }
        KeysCommand::Revoke { tenant: t, id } => {
            anyhow::ensure!(
                store.revoke_tenant_key(&t, id).await?,
                "tenant {t} has no live key {id}"
            );
            println!("key {id} of {t} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys …` against a server's admin API.
pub async fn keys_remote(remote: &Remote, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { tenant: t, name } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(
                    Method::POST,
                    &format!("/v1/tenants/{t}/keys"),
                    Some(json!({"name": name})),
                )
                .await?;
            check(status, &body)?;
            println!(
                "key {} for tenant {t} (shown this once):\n{}",
                body["id"],
                body["key"].as_str().unwrap_or_default()
            );
        }
        KeysCommand::List { tenant: t } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(Method::GET, &format!("/v1/tenants/{t}/keys"), None)
                .await?;
            check(status, &body)?;
            for key in body["items"].as_array().into_iter().flatten() {
                print_key(key);
            }
        }
        KeysCommand::Revoke { tenant: t, id } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(Method::DELETE, &format!("/v1/tenants/{t}/keys/{id}"), None)
                .await?;
            check(status, &body)?;
            println!("key {id} of {t} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `quotas …` against the database.
pub async fn quotas(store: &Store, command: QuotasCommand) -> anyhow::Result<ExitCode> {
    match command {
        QuotasCommand::Set(args) => {
            let quota = quota(args)?;
            store.set_quota(&quota).await?;
            println!(
                "quota set for {}{} per {}",
                quota.tenant,
                quota
                    .user
                    .as_deref()
                    .map(|u| format!(" (user {u})"))
                    .unwrap_or_default(),
                quota.period.as_str()
            );
        }
        QuotasCommand::List { tenant: t } => {
            tenant(&t)?;
            for counted in store.counted_quotas(&t, chrono::Utc::now()).await? {
                print_quota(&serde_json::to_value(&counted)?);
            }
        }
        QuotasCommand::Remove {
            tenant: t,
            user,
            period: p,
        } => {
            anyhow::ensure!(
                store.delete_quota(&t, user.as_deref(), period(&p)?).await?,
                "no such quota"
            );
            println!("quota removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `quotas …` against a server's admin API.
pub async fn quotas_remote(remote: &Remote, command: QuotasCommand) -> anyhow::Result<ExitCode> {
    match command {
        QuotasCommand::Set(args) => {
            let quota = quota(args)?;
            let (status, body) = remote
                .call(
                    Method::PUT,
                    "/v1/quotas",
                    Some(json!({
                        "tenant": quota.tenant, "user": quota.user,
                        "period": quota.period.as_str(),
                        "max_requests": quota.max_requests, "max_images": quota.max_images,
                        "max_tokens": quota.max_tokens, "max_cost_usd": quota.max_cost_usd,
                    })),
                )
                .await?;
            check(status, &body)?;
            println!(
                "quota set for {} per {}",
                quota.tenant,
                quota.period.as_str()
            );
        }
        QuotasCommand::List { tenant: t } => {
            tenant(&t)?;
            let (status, body) = remote
                .call(Method::GET, &format!("/v1/quotas?tenant={t}"), None)
                .await?;
            check(status, &body)?;
            for q in body["quotas"].as_array().into_iter().flatten() {
                print_quota(q);
            }
        }
        QuotasCommand::Remove {
            tenant: t,
            user,
            period: p,
        } => {
            tenant(&t)?;
            let mut path = format!("/v1/quotas?tenant={t}&period={}", period(&p)?.as_str());
            if let Some(user) = user {
                path.push_str(&format!("&user={}", encode(&user)));
            }
            let (status, body) = remote.call(Method::DELETE, &path, None).await?;
            check(status, &body)?;
            println!("quota removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
