//! `switchyard --server URL providers …`: the same provider commands against a running
//! server's admin API instead of the database (writes then reload every replica at once).

use std::process::ExitCode;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::ProviderConfigDraft;

use super::providers::{ProvidersCommand, read_draft_source};

/// A client of the admin API.
pub struct Remote {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Remote {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let token =
            token.context("--token (or SWITCHYARD_ADMIN_TOKEN) is required with --server")?;
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--server must be an http:// or https:// URL"
        );
        switchyard_runtime::providers::wire::install_tls();
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Sends raw bytes (a plugin file).
    pub(super) async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/wasm")
            .body(body)
            .timeout(std::time::Duration::from_secs(300));
        self.send(request).await
    }

    /// The id of a config given by id or name.
    pub(super) async fn resolve(&self, target: &str) -> anyhow::Result<i64> {
        if let Ok(id) = target.parse::<i64>() {
            return Ok(id);
        }
        let (status, list) = self
            .call(Method::GET, "/v1/providers?limit=1000", None)
            .await?;
        check(status, &list)?;
        list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|p| p["name"] == target))
            .and_then(|p| p["id"].as_i64())
            .with_context(|| format!("no provider config with id or name '{target}'"))
    }
}

pub(super) fn check(status: StatusCode, body: &Value) -> anyhow::Result<()> {
    if status.is_success() {
        return Ok(());
    }
    anyhow::bail!(
        "{} {}",
        status,
        body["error"].as_str().unwrap_or("request failed")
    )
}

/// Field errors exit 2, like the database-backed commands.
pub(super) fn invalid(body: &Value) -> Option<ExitCode> {
    let fields = body["fields"].as_array()?;
    eprintln!("error: invalid provider config:");
    for field in fields {
        eprintln!(
            "  - {} {}",
            field["path"].as_str().unwrap_or(""),
            field["message"].as_str().unwrap_or("")
        );
    }
    Some(ExitCode::from(2))
}

async fn write(
    remote: &Remote,
    method: Method,
    path: &str,
    body: Value,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    let (status, value) = remote.call(method, path, Some(body)).await?;
    if status == StatusCode::BAD_REQUEST
        && let Some(code) = invalid(&value)
    {
        return Ok(code);
    }
    check(status, &value)?;
    println!(
        "{verb} provider config {} '{}' (version {})",
        value["id"],
        value["name"].as_str().unwrap_or(""),
        value["version"]
    );
    Ok(ExitCode::SUCCESS)
}

fn draft_json(draft: &ProviderConfigDraft) -> anyhow::Result<Value> {
    // The API takes the key in clear (once); drafts serialize keys masked, so put it back.
    let mut value = serde_json::to_value(draft)?;
    if let Some(key) = &draft.api_key {
        value["api_key"] = json!(key.expose());
    }
    Ok(value)
}

pub async fn run(remote: &Remote, command: ProvidersCommand) -> anyhow::Result<ExitCode> {
    match command {
        ProvidersCommand::List {
            json: as_json,
            provider,
            enabled,
            kind,
        } => {
            let mut query = vec!["limit=1000".to_owned()];
            query.extend(provider.map(|p| format!("provider={p}")));
            query.extend(enabled.map(|e| format!("enabled={e}")));
            query.extend(kind.map(|k| format!("kind={k}")));
            let (status, list) = remote
                .call(
                    Method::GET,
                    &format!("/v1/providers?{}", query.join("&")),
                    None,
                )
                .await?;
            check(status, &list)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if as_json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!(
                    "{:<5} {:<24} {:<18} {:>8} {:<7} {:<10} {:>7}",
                    "ID", "NAME", "PROVIDER", "PRIORITY", "ENABLED", "API KEY", "VERSION"
                );
                for p in items {
                    println!(
                        "{:<5} {:<24} {:<18} {:>8} {:<7} {:<10} {:>7}",
                        p["id"],
                        p["name"].as_str().unwrap_or(""),
                        p["provider"].as_str().unwrap_or(""),
                        p["priority"],
                        if p["enabled"] == true { "yes" } else { "no" },
                        p["api_key"].as_str().unwrap_or("-"),
                        p["version"]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ProvidersCommand::Show { target } => {
            let id = remote.resolve(&target).await?;
            let (status, value) = remote
                .call(Method::GET, &format!("/v1/providers/{id}"), None)
                .await?;
            check(status, &value)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        ProvidersCommand::Add { fields, from_json } => {
            let draft = read_draft_source(from_json.as_deref())?.overlay(fields.into_draft()?);
            write(
                remote,
                Method::POST,
                "/v1/providers",
                draft_json(&draft)?,
                "added",
            )
            .await
        }
        ProvidersCommand::Update {
            target,
            fields,
            from_json,
        } => {
            let id = remote.resolve(&target).await?;
            let draft = read_draft_source(from_json.as_deref())?.overlay(fields.into_draft()?);
            write(
                remote,
                Method::PATCH,
                &format!("/v1/providers/{id}"),
                draft_json(&draft)?,
                "updated",
            )
            .await
        }
        ProvidersCommand::Enable { target } => {
            let id = remote.resolve(&target).await?;
            write(
                remote,
                Method::PATCH,
                &format!("/v1/providers/{id}"),
                json!({"enabled": true}),
                "enabled",
            )
            .await
        }
        ProvidersCommand::Disable { target } => {
            let id = remote.resolve(&target).await?;
            write(
                remote,
                Method::PATCH,
                &format!("/v1/providers/{id}"),
                json!({"enabled": false}),
                "disabled",
            )
            .await
        }
        ProvidersCommand::SetPriority { target, priority } => {
            let id = remote.resolve(&target).await?;
            write(
                remote,
                Method::PATCH,
                &format!("/v1/providers/{id}"),
                json!({"priority": priority}),
                "re-prioritised",
            )
            .await
        }
        ProvidersCommand::Stats(args) => super::stats::remote(remote, args).await,
        ProvidersCommand::Remove { target } => {
            let id = remote.resolve(&target).await?;
            let (status, value) = remote
                .call(Method::DELETE, &format!("/v1/providers/{id}"), None)
                .await?;
            check(status, &value)?;
            println!("removed provider config {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
