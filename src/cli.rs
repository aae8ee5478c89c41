//! Argument parsing and dispatch of the subcommands.

mod accounts;
mod client;
mod demo;
mod limits;
mod plans;
mod plugins;
mod providers;
mod remote;
mod retention;
mod stats;
mod templates;
mod tenants;
mod usage;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_runtime::{Settings, SettingsError};
use switchyard_server::Serve;

/// Switchyard: an event-driven gateway to many AI image and text providers.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// Config file (default: config/switchyard.toml if it exists, else built-in defaults).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// `providers`, `plugins`, `keys`, `quotas`, `plans`, `limits` and `usage` against this running server's admin API (e.g. http://127.0.0.1:8080)
    /// instead of the database; `accounts` always goes through a server.
    #[arg(long, global = true, env = "SWITCHYARD_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Admin token for --server (for `accounts`, a key of the tenant will do).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the runtime: migrate, seed providers, serve until Ctrl-C.
    Serve,
    /// Apply database migrations and the config file's provider seeds, then exit.
    Migrate,
    /// Settings commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage provider configs (accounts) in the database.
    #[command(subcommand)]
    Providers(Box<providers::ProvidersCommand>),
    /// A tenant's own provider accounts (bring your own key), through --server with a
    /// key of the tenant or the admin token: each is tested with the provider first.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Manage WASM provider plugins (install, list, remove, rollback).
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Manage tenant keys for the OpenAI-compatible endpoints (create, list, revoke).
    #[command(subcommand)]
    Keys(tenants::KeysCommand),
    /// Manage tenant quotas (set, list, remove).
    #[command(subcommand)]
    Quotas(tenants::QuotasCommand),
    /// Manage plans (named tenant-wide quotas) and assign them to tenants.
    #[command(subcommand)]
    Plans(plans::PlansCommand),
    /// A tenant's usage report: day, week or month buckets, grouped by provider, model,
    /// kind and config (and user), with failures; a table or --json.
    Usage(usage::UsageArgs),
    /// Manage tenants' limits at intake: requests per minute and at once (set, show, remove).
    #[command(subcommand)]
    Limits(limits::LimitsCommand),
    /// Prompt templates that commands name in `input.template` (list, set, show, remove).
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Retention: run the cleaner now (or --dry-run), and tenants' own policies.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Run the runtime on the embedded defaults, send sample commands through the bus,
    /// print their events and where the images went, and exit.
    Demo(demo::DemoArgs),
    /// Publish one command (over NATS); with --wait, print its events.
    Submit(client::SubmitArgs),
    /// Print events live (over NATS).
    Watch(client::WatchArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the settings; print a summary or every problem.
    Check,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Check) => config_check(cli.config.as_deref()),
        Command::Serve => serve(load_settings(cli.config.as_deref())?).await,
        Command::Migrate => migrate(load_settings(cli.config.as_deref())?).await,
        Command::Demo(args) => {
            let ok = demo::run(load_settings(cli.config.as_deref())?, args).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Submit(args) => {
            let ok = client::submit(load_settings(cli.config.as_deref())?, args).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Watch(args) => client::watch(load_settings(cli.config.as_deref())?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Plugins(command) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            plugins::run_remote(&remote, command).await
        }
        Command::Plugins(command) => {
            let settings = load_settings(cli.config.as_deref())?;
            let store = switchyard_runtime::open_store(&settings)
                .await
                .context("cannot open the database")?;
            let result = plugins::run(&store, command).await;
            store.close().await;
            let (code, changed) = result?;
            if let Some(name) = changed {
                announce(&settings, Notice::Plugins(&name)).await;
            }
            Ok(code)
        }
        Command::Keys(command) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            tenants::keys_remote(&remote, command).await
        }
        Command::Quotas(command) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            tenants::quotas_remote(&remote, command).await
        }
        Command::Plans(command) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            plans::run_remote(&remote, command).await
        }
        Command::Plans(command) => {
            let store = open_store(cli.config.as_deref()).await?;
            let result = plans::run(&store, command).await;
            store.close().await;
            result
        }
        Command::Usage(args) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            usage::run_remote(&remote, args).await
        }
        Command::Usage(args) => {
            let store = open_store(cli.config.as_deref()).await?;
            let result = usage::run(&store, args).await;
            store.close().await;
            result
        }
        Command::Templates(command) => {
            let store = open_store(cli.config.as_deref()).await?;
            let result = templates::run(&store, command).await;
            store.close().await;
            result
        }
        Command::Retention(command) => {
            let settings = load_settings(cli.config.as_deref())?;
            let store = switchyard_runtime::open_store(&settings)
                .await
                .context("cannot open the database")?;
            let result = retention::run(&settings, &store, command).await;
            store.close().await;
            result
        }
        Command::Limits(command) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            limits::run_remote(&remote, command).await
        }
        Command::Limits(command) => {
            let settings = load_settings(cli.config.as_deref())?;
            let store = switchyard_runtime::open_store(&settings)
                .await
                .context("cannot open the database")?;
            let result = limits::run(&store, settings.tenants.defaults(), command).await;
            store.close().await;
            result
        }
        Command::Keys(command) => {
            let store = open_store(cli.config.as_deref()).await?;
            let result = tenants::keys(&store, command).await;
            store.close().await;
            result
        }
        Command::Quotas(command) => {
            let store = open_store(cli.config.as_deref()).await?;
            let result = tenants::quotas(&store, command).await;
            store.close().await;
            result
        }
        Command::Accounts(command) => {
            let server = cli.server.as_deref().context(
                "accounts goes through a running server (--server URL, with --token set to \
                 the tenant's key or the admin token): the server tests each account with \
                 the provider before it stores it",
            )?;
            let remote = remote::Remote::new(server, cli.token)?;
            accounts::run(&remote, command).await
        }
        Command::Providers(command) if cli.server.is_some() => {
            let remote = remote::Remote::new(cli.server.as_deref().unwrap_or_default(), cli.token)?;
            remote::run(&remote, *command).await
        }
        Command::Providers(command) => {
            let settings = load_settings(cli.config.as_deref())?;
            let store = switchyard_runtime::open_store(&settings)
                .await
                .context("cannot open the database")?;
            let result = providers::run(&store, *command).await;
            store.close().await;
            let (code, change) = result?;
            if let Some(change) = change {
                announce(&settings, Notice::Config(&change)).await;
            }
            Ok(code)
        }
    }
}

/// What to tell running replicas after a write made here.
enum Notice<'a> {
    Config(&'a switchyard_runtime::store::ConfigChange),
    Plugins(&'a str),
}

/// Tells running replicas about a write (over NATS). On `memory://` there is no one
/// to tell: runtimes pick the change up by PostgreSQL NOTIFY or the database poll.
async fn announce(settings: &Settings, notice: Notice<'_>) {
    if settings.bus.url == "memory://" {
        return;
    }
    let connect = switchyard_runtime::bus::Bus::connect(
        &settings.bus.url,
        &settings.bus.prefix,
        settings.bus.nats_options(),
    );
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok(bus)) => {
            match notice {
                Notice::Config(change) => {
                    switchyard_runtime::reloader::announce(&bus, change).await
                }
                Notice::Plugins(name) => {
                    switchyard_runtime::reloader::announce_plugins(&bus, name).await;
                }
            }
            bus.flush().await;
        }
        _ => eprintln!(
            "warning: could not announce the change on NATS; runtimes will pick it up within database.change_poll_ms"
        ),
    }
}

fn load_settings(file: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    Settings::load(file).map_err(|e| anyhow::anyhow!(settings_message(&e)))
}

fn settings_message(error: &SettingsError) -> String {
    match error {
        SettingsError::Invalid(v) => {
            let mut out = String::from("invalid settings:");
            for field in &v.errors {
                out.push_str(&format!("\n  - {field}"));
            }
            out
        }
        other => other.to_string(),
    }
}

async fn open_store(
    file: Option<&std::path::Path>,
) -> anyhow::Result<switchyard_runtime::store::Store> {
    let settings = load_settings(file)?;
    switchyard_runtime::open_store(&settings)
        .await
        .context("cannot open the database")
}

fn config_check(file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    match Settings::load(file) {
        Ok(settings) => {
            println!("settings are valid");
            println!(
                "  database.url   {}",
                switchyard_core::redact_url(&settings.database.url)
            );
            println!(
                "  bus.url        {}",
                switchyard_core::redact_url(&settings.bus.url)
            );
            println!("  bus.prefix     {}", settings.bus.prefix);
            println!("  http.listen    {}", settings.http.listen);
            println!("  artifacts.url  {}", settings.artifacts.url);
            println!("  providers      {} seed(s)", settings.providers.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", settings_message(&e));
            Ok(ExitCode::from(2))
        }
    }
}

async fn migrate(settings: Settings) -> anyhow::Result<ExitCode> {
    let (runtime, report) = switchyard_runtime::prepare(settings)
        .await
        .context("cannot prepare the database")?;
    println!(
        "database is up to date; seeded {} provider(s){}",
        report.inserted.len(),
        if report.inserted.is_empty() {
            String::new()
        } else {
            format!(": {}", report.inserted.join(", "))
        }
    );
    runtime.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_signal();
    let (runtime, report) = switchyard_runtime::prepare(settings)
        .await
        .context("cannot start")?;
    if !report.inserted.is_empty() {
        tracing::info!(names = ?report.inserted, "seeded provider configs from the config file");
    }
    runtime.run(shutdown).await.context("runtime failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called (not
/// when the future is first polled), so a signal during start-up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for signals; falling back to Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
