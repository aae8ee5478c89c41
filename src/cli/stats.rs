//! `switchyard providers stats`: each provider config's statistics over a time range
//! (attempts, success rate, error codes, latency percentiles, usage, cost, feedback),
//! from the database directly or (with `--server`) through a running server.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use switchyard_runtime::store::Store;

use super::remote::{Remote, check};

/// The arguments of `providers stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this config (id or name).
    target: Option<String>,
    /// From this RFC 3339 time, inclusive (default: 24 h before --to).
    #[arg(long)]
    from: Option<String>,
    /// To this RFC 3339 time, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

impl StatsArgs {
    /// The config asked for, if one.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    fn window(&self) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
        let parse = |name: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| anyhow::anyhow!("--{name} '{t}' is not an RFC 3339 time: {e}"))
                })
                .transpose()
        };
        let to = parse("to", &self.to)?.unwrap_or_else(Utc::now);
        let from = parse("from", &self.from)?.unwrap_or(to - chrono::Duration::hours(24));
        anyhow::ensure!(from < to, "--from must be before --to");
        anyhow::ensure!(
            to - from <= chrono::Duration::days(400),
            "--from and --to may be at most 400 days apart"
        );
        Ok((from, to))
    }
}

fn print(items: &[Value], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    println!(
        "{:>4} {:<20} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}  errors",
        "id", "name", "attempts", "ok %", "p50", "p95", "p99", "images", "cost_usd", "rating"
    );
    let ms = |v: &Value| v.as_i64().map_or("-".to_owned(), |v| v.to_string());
    for s in items {
        let errors: Vec<String> = s["error_codes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(code, n)| format!("{code}:{n}"))
            .collect();
        println!(
            "{:>4} {:<20} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9.4} {:>6}  {}",
            s["config_id"],
            s["name"].as_str().unwrap_or("(deleted)"),
            s["requests"],
            s["success_rate"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{:.1}", r * 100.0)),
            ms(&s["p50_ms"]),
            ms(&s["p95_ms"]),
            ms(&s["p99_ms"]),
            s["images"],
            s["cost_usd"].as_f64().unwrap_or_default(),
            s["rating_avg"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{r:.2}")),
            errors.join(" ")
        );
    }
    Ok(())
}

/// `providers stats` against the database.
pub async fn local(
    store: &Store,
    args: StatsArgs,
    config: Option<(i64, String)>,
) -> anyhow::Result<ExitCode> {
    let (from, to) = args.window()?;
    let stats = store
        .config_stats(from, to, config.as_ref().map(|c| c.0))
        .await?;
    // Names only: a config that cannot be read is shown by its id.
    let records = store
        .list_providers(&Default::default())
        .await
        .unwrap_or_default();
    let items: Vec<Value> = stats
        .iter()
        .map(|s| {
            let mut item = serde_json::to_value(s).unwrap_or(Value::Null);
            if let Some(r) = records.iter().find(|r| r.id.0 == s.config_id) {
                item["name"] = Value::from(r.name().to_owned());
            }
            item
        })
        .collect();
    print(&items, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `providers stats` against a server's admin API.
pub async fn remote(remote: &Remote, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = args.window()?;
    let range = format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let path = match &args.target {
        Some(target) => format!(
            "/v1/providers/{}/stats?{range}",
            remote.resolve(target).await?
        ),
        None => format!("/v1/providers/stats?{range}"),
    };
    let (status, body) = remote.call(Method::GET, &path, None).await?;
    check(status, &body)?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    print(&items, args.json)?;
    Ok(ExitCode::SUCCESS)
}
