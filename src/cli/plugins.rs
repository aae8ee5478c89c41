//! `switchyard plugins …`: install, list, remove and roll back WASM provider plugins,
//! in the database directly or (with `--server`) through a running server's admin API.
//! Install validates the file first (compiles it, checks its world and version, calls
//! `describe`); a bad file is refused with the reason and nothing is stored.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use switchyard_runtime::{
    plugins::{InstallError, PluginHost, install},
    store::{PluginInfo, Store},
};

use super::remote::Remote;

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Validate and install a plugin component (.wasm).
    Install {
        /// The component file.
        file: PathBuf,
        /// Install under this name instead of the one the plugin gives.
        #[arg(long)]
        name: Option<String>,
    },
    /// List installed plugin versions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a plugin (every version) or one `name@version`.
    Remove {
        /// `name` or `name@version`.
        reference: String,
    },
    /// Deactivate the newest version of a plugin: the one before it serves again.
    Rollback {
        /// The plugin name.
        name: String,
    },
}

/// What a write changed, to announce: the plugin's name.
pub type Changed = Option<String>;

/// Runs against the database. Exit code 2 for a refused file.
pub async fn run(store: &Store, command: PluginsCommand) -> anyhow::Result<(ExitCode, Changed)> {
    match command {
        PluginsCommand::Install { file, name } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let host = PluginHost::new(None).map_err(|e| anyhow::anyhow!("plugin host: {e}"))?;
            match install(store, &host, &bytes, name.as_deref()).await {
                Ok((info, new)) => {
                    print_installed(&info, new);
                    Ok((ExitCode::SUCCESS, Some(info.name)))
                }
                Err(e @ (InstallError::Invalid(_) | InstallError::BadName(_))) => {
                    eprintln!("error: {} refused: {e}", file.display());
                    Ok((ExitCode::from(2), None))
                }
                Err(e) => Err(e.into()),
            }
        }
        PluginsCommand::List { json } => {
            let items = store.list_plugins(None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print_table(&items);
            }
            Ok((ExitCode::SUCCESS, None))
        }
        PluginsCommand::Remove { reference } => {
            let removed = store.remove_plugin(&reference).await?;
            anyhow::ensure!(removed > 0, "plugin '{reference}' is not installed");
            println!("removed {removed} version(s) of {reference}");
            Ok((ExitCode::SUCCESS, Some(reference)))
        }
        PluginsCommand::Rollback { name } => {
            let (old, current) = store.rollback_plugin(&name).await?;
            println!(
                "{name}: {} deactivated; {} serves again",
                old.version, current.version
            );
            Ok((ExitCode::SUCCESS, Some(name)))
        }
    }
}

/// Runs against a server's admin API.
pub async fn run_remote(remote: &Remote, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::Install { file, name } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = format!("/v1/plugins/{}", name.as_deref().unwrap_or("-"));
            let (status, body) = remote.send_bytes(Method::PUT, &path, bytes).await?;
            if status.as_u16() == 400 {
                eprintln!(
                    "error: {} refused: {}",
                    file.display(),
                    body["error"].as_str().unwrap_or("invalid plugin")
                );
                return Ok(ExitCode::from(2));
            }
            super::remote::check(status, &body)?;
            let info: PluginInfo = serde_json::from_value(body)?;
            print_installed(&info, status.as_u16() == 201);
        }
        PluginsCommand::List { json } => {
            let (status, body) = remote.call(Method::GET, "/v1/plugins", None).await?;
            super::remote::check(status, &body)?;
            let items: Vec<PluginInfo> = serde_json::from_value(body["items"].clone())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print_table(&items);
            }
        }
        PluginsCommand::Remove { reference } => {
            let (status, body) = remote
                .call(Method::DELETE, &format!("/v1/plugins/{reference}"), None)
                .await?;
            super::remote::check(status, &body)?;
            println!("removed {reference}");
        }
        PluginsCommand::Rollback { name } => {
            let (status, body) = remote
                .call(Method::POST, &format!("/v1/plugins/{name}/rollback"), None)
                .await?;
            super::remote::check(status, &body)?;
            println!(
                "{name}: {} deactivated; {} serves again",
                body["deactivated"]["version"].as_str().unwrap_or("?"),
                body["current"]["version"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_installed(info: &PluginInfo, new: bool) {
    println!(
        "{} {}@{} (sha256 {}, {} bytes)",
        if new {
            "installed"
        } else {
            "already installed:"
        },
        info.name,
        info.version,
        info.sha256,
        info.bytes
    );
}

fn print_table(items: &[PluginInfo]) {
    println!(
        "{:<20} {:<12} {:<7} {:>9}  {:<16} INSTALLED",
        "NAME", "VERSION", "ACTIVE", "BYTES", "SHA256"
    );
    for p in items {
        println!(
            "{:<20} {:<12} {:<7} {:>9}  {:<16} {}",
            p.name,
            p.version,
            p.active,
            p.bytes,
            &p.sha256[..p.sha256.len().min(16)],
            p.created_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
}
