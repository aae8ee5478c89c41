//! `switchyard usage`: a tenant's usage report (day, week or month buckets, grouped by
//! provider type, model, kind and config, and by user if asked, with failures), as a
//! table or `--json`, from the database directly or (with `--server`) through a
//! running server's admin API.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use switchyard_runtime::{
    store::{ReportScope, Store},
    usage_report::{Bucket, report},
};

use super::{
    remote::{Remote, check},
    tenants::{encode, tenant},
};

/// The arguments of `usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Only this user of the tenant.
    #[arg(long)]
    user: Option<String>,
    /// Group by user too.
    #[arg(long)]
    by_user: bool,
    /// `day`, `week` (from Monday) or `month`, in UTC.
    #[arg(long, default_value = "day")]
    bucket: String,
    /// From this UTC day (`YYYY-MM-DD`) or RFC 3339 time, inclusive (default: 30 days
    /// before --to).
    #[arg(long)]
    from: Option<String>,
    /// To this UTC day or RFC 3339 time, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn time(name: &str, text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("--{name} '{text}' is neither a day (YYYY-MM-DD) nor an RFC 3339 time")
        })
}

impl UsageArgs {
    fn window(&self) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
        tenant(&self.tenant)?;
        Bucket::parse(&self.bucket).map_err(|e| anyhow::anyhow!("--bucket: {e}"))?;
        let to = self.to.as_deref().map(|t| time("to", t)).transpose()?;
        let to = to.unwrap_or_else(Utc::now);
        let from = self.from.as_deref().map(|t| time("from", t)).transpose()?;
        let from = from.unwrap_or(to - chrono::Duration::days(30));
        anyhow::ensure!(from < to, "--from must be before --to");
        Ok((from, to))
    }
}

/// Prints a report (the JSON of `GET /v1/usage/report`) as a table.
fn print_table(report: &Value) {
    let by_user = report["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["groups"].as_array().into_iter().flatten())
        .any(|g| g.get("user").is_some());
    let user_head = if by_user {
        format!("{:<12} ", "user")
    } else {
        String::new()
    };
    println!(
        "{:<10} {user_head}{:<12} {:<24} {:<15} {:>6} {:>8} {:>7} {:>10} {:>10} {:>10}",
        "start",
        "provider",
        "model",
        "kind",
        "config",
        "requests",
        "images",
        "in_tokens",
        "out_tokens",
        "cost_usd"
    );
    let text = |v: &Value| v.as_str().map_or("-".to_owned(), str::to_owned);
    for bucket in report["buckets"].as_array().into_iter().flatten() {
        for g in bucket["groups"].as_array().into_iter().flatten() {
            let user = if by_user {
                format!("{:<12} ", text(&g["user"]))
            } else {
                String::new()
            };
            println!(
                "{:<10} {user}{:<12} {:<24} {:<15} {:>6} {:>8} {:>7} {:>10} {:>10} {:>10.4}",
                text(&bucket["start"]),
                text(&g["provider"]),
                text(&g["model"]),
                text(&g["kind"]),
                g["config_id"]
                    .as_i64()
                    .map_or("-".to_owned(), |c| c.to_string()),
                g["requests"],
                g["images"],
                g["input_tokens"],
                g["output_tokens"],
                g["cost_usd"].as_f64().unwrap_or_default(),
            );
        }
        for f in bucket["failures"].as_array().into_iter().flatten() {
            let user = if by_user {
                format!("{:<12} ", text(&f["user"]))
            } else {
                String::new()
            };
            println!(
                "{:<10} {user}failed: {} {} x{}",
                text(&bucket["start"]),
                text(&f["kind"]),
                text(&f["error_code"]),
                f["failures"],
            );
        }
    }
    let total = &report["total"];
    println!(
        "total: {} requests, {} images, {} input and {} output tokens, {:.4} USD, {} failed; \
         charged to quotas: {} requests, {:.4} USD (the rest on the tenant's own accounts)",
        total["requests"],
        total["images"],
        total["input_tokens"],
        total["output_tokens"],
        total["cost_usd"].as_f64().unwrap_or_default(),
        total["failures"],
        total["charged_requests"],
        total["charged_cost_usd"].as_f64().unwrap_or_default(),
    );
}

fn show(report: &Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_table(report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `usage` against the database.
pub async fn run(store: &Store, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = args.window()?;
    let bucket = Bucket::parse(&args.bucket).map_err(|e| anyhow::anyhow!(e))?;
    let scope = ReportScope {
        tenant: &args.tenant,
        user: args.user.as_deref(),
        by_user: args.by_user,
        from,
        to,
    };
    let built = report(store, &scope, bucket).await?;
    let mut value = serde_json::to_value(&built)?;
    if let Value::Object(map) = &mut value {
        map.insert("tenant".into(), Value::from(args.tenant.clone()));
        map.insert("user".into(), serde_json::to_value(&args.user)?);
        map.insert("from".into(), serde_json::to_value(from)?);
        map.insert("to".into(), serde_json::to_value(to)?);
    }
    show(&value, args.json)
}

/// `usage` against a server's admin API.
pub async fn run_remote(remote: &Remote, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = args.window()?;
    let mut path = format!(
        "/v1/usage/report?tenant={}&bucket={}&from={}&to={}&by_user={}",
        encode(&args.tenant),
        encode(&args.bucket),
        encode(&from.to_rfc3339()),
        encode(&to.to_rfc3339()),
        args.by_user,
    );
    if let Some(user) = &args.user {
        path.push_str(&format!("&user={}", encode(user)));
    }
    let (status, body) = remote.call(Method::GET, &path, None).await?;
    check(status, &body)?;
    show(&body, args.json)
}
