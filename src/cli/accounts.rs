//! `switchyard --server URL --token KEY accounts …`: a tenant's own provider accounts
//! (bring your own key) through a running server's `/v1/tenants/{tenant}/providers`,
//! with a key of that tenant or the admin token. Only through a server: every write of
//! an enabled account is first tested with the provider's own test call, which the
//! server makes.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::remote::{Remote, check, invalid};

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List the tenant's own accounts (keys masked).
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Print the PROTOCOL.md §6 objects as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print one account as a JSON object.
    Show {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The account's id.
        id: i64,
    },
    /// Add an account from a §6 JSON object: tested with the provider, then stored
    /// (its name is put under `<tenant>.`).
    Add {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Read the object from FILE, or from standard input with `-`.
        #[arg(long, value_name = "FILE|-")]
        from_json: String,
    },
    /// Change some fields of an account (a partial §6 object); tested again.
    Update {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The account's id.
        id: i64,
        /// Read the partial object from FILE, or from standard input with `-`.
        #[arg(long, value_name = "FILE|-")]
        from_json: String,
    },
    /// Remove an account.
    Remove {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The account's id.
        id: i64,
    },
}

/// The JSON object in `source` (a file, or `-` for standard input), sent as it is: a
/// key in it goes to the server once, in clear, like the API takes it.
fn read_object(source: &str) -> anyhow::Result<Value> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{source} is not a provider config object"))?;
    anyhow::ensure!(value.is_object(), "{source} is not a JSON object");
    Ok(value)
}

fn path(tenant: &str, id: Option<i64>) -> String {
    let tenant: String = url::form_urlencoded::byte_serialize(tenant.as_bytes()).collect();
    match id {
        Some(id) => format!("/v1/tenants/{tenant}/providers/{id}"),
        None => format!("/v1/tenants/{tenant}/providers"),
    }
}

/// A write's answer: field errors exit 2; the provider's refusal of the key says why.
fn written(status: StatusCode, value: &Value, verb: &str) -> anyhow::Result<ExitCode> {
    if status == StatusCode::BAD_REQUEST
        && let Some(code) = invalid(value)
    {
        return Ok(code);
    }
    check(status, value)?;
    println!(
        "{verb} account {} '{}' (version {})",
        value["id"],
        value["name"].as_str().unwrap_or(""),
        value["version"]
    );
    Ok(ExitCode::SUCCESS)
}

/// `accounts …` against `remote`.
pub async fn run(remote: &Remote, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AccountsCommand::List { tenant, json } => {
            let (status, list) = remote.call(Method::GET, &path(&tenant, None), None).await?;
            check(status, &list)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<5} {:<28} {:<14} {:<7} {:<12} {:>7}",
                "ID", "NAME", "PROVIDER", "ENABLED", "KEY", "VERSION"
            );
            for a in items {
                let key = a["api_key"]
                    .as_str()
                    .or_else(|| a["auth"]["type"].as_str())
                    .unwrap_or("-");
                println!(
                    "{:<5} {:<28} {:<14} {:<7} {:<12} {:>7}",
                    a["id"],
                    a["name"].as_str().unwrap_or(""),
                    a["provider"].as_str().unwrap_or(""),
                    if a["enabled"] == true { "yes" } else { "no" },
                    key,
                    a["version"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Show { tenant, id } => {
            let (status, value) = remote
                .call(Method::GET, &path(&tenant, Some(id)), None)
                .await?;
            check(status, &value)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Add { tenant, from_json } => {
            let body = read_object(&from_json)?;
            let (status, value) = remote
                .call(Method::POST, &path(&tenant, None), Some(body))
                .await?;
            written(status, &value, "added")
        }
        AccountsCommand::Update {
            tenant,
            id,
            from_json,
        } => {
            let body = read_object(&from_json)?;
            let (status, value) = remote
                .call(Method::PATCH, &path(&tenant, Some(id)), Some(body))
                .await?;
            written(status, &value, "updated")
        }
        AccountsCommand::Remove { tenant, id } => {
            let (status, value) = remote
                .call(Method::DELETE, &path(&tenant, Some(id)), None)
                .await?;
            check(status, &value)?;
            println!("removed account {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
