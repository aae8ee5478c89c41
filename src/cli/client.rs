//! `switchyard submit` and `switchyard watch`: clients of a running Switchyard over NATS.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use switchyard_core::{Command, Kind, Tenant};
use switchyard_runtime::{
    Settings,
    bus::{Bus, EventFilter},
};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// image.generate, image.edit or text.generate.
    #[arg(long)]
    kind: Kind,
    /// The prompt (or the user message for text.generate).
    #[arg(long)]
    prompt: String,
    /// Tenant.
    #[arg(long, default_value = "cli")]
    tenant: String,
    /// Provider type to use (default: auto).
    #[arg(long)]
    provider: Option<String>,
    /// Image size, e.g. 1024x1024.
    #[arg(long)]
    size: Option<String>,
    /// Request id (default: generated).
    #[arg(long)]
    request_id: Option<String>,
    /// End user inside the tenant (quotas and usage can be per user).
    #[arg(long)]
    user: Option<String>,
    /// May be answered from an identical earlier `--cache` request.
    #[arg(long)]
    cache: bool,
    /// Print the request's events until the terminal one.
    #[arg(long)]
    wait: bool,
    /// Bus URL (default: the config's bus.url).
    #[arg(long)]
    bus: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// Bus URL (default: the config's bus.url).
    #[arg(long)]
    bus: Option<String>,
}

async fn connect(settings: &Settings, url: Option<String>) -> anyhow::Result<Bus> {
    let url = url.unwrap_or_else(|| settings.bus.url.clone());
    anyhow::ensure!(
        url != "memory://",
        "the memory:// bus lives inside one process; point --bus (or bus.url) at NATS, or run `switchyard demo`"
    );
    Bus::connect(&url, &settings.bus.prefix, settings.bus.nats_options())
        .await
        .context("cannot reach the bus")
}

pub async fn submit(settings: Settings, args: SubmitArgs) -> anyhow::Result<bool> {
    let bus = connect(&settings, args.bus).await?;
    let request_id = args
        .request_id
        .unwrap_or_else(|| format!("cli-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%6f")));
    let input = match args.kind {
        Kind::TextGenerate => json!({"messages": [{"role": "user", "content": args.prompt}]}),
        _ => json!({"prompt": args.prompt, "size": args.size}),
    };
    let mut value = json!({"request_id": request_id, "tenant": args.tenant, "user": args.user,
                           "kind": args.kind, "input": input, "cache": args.cache});
    if let Some(provider) = args.provider {
        value["route"] = json!({"provider": provider});
    }
    let command: Command = serde_json::from_value(value).context("invalid command")?;
    let mut events = if args.wait {
        Some(
            bus.events(EventFilter::Request(
                command.tenant.clone(),
                command.request_id.clone(),
            ))
            .await?,
        )
    } else {
        None
    };
    let duplicate = bus.publish_command(&command).await?;
    eprintln!(
        "published {} request {}{}",
        command.kind,
        command.request_id,
        if duplicate {
            " (duplicate: the bus already had it)"
        } else {
            ""
        }
    );
    let Some(events) = events.as_mut() else {
        return Ok(true);
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(300), events.next()).await {
            Ok(Some(event)) => {
                println!("{}", serde_json::to_string(&event)?);
                if event.is_terminal() {
                    return Ok(matches!(
                        event.body,
                        switchyard_core::EventBody::Completed { .. }
                    ));
                }
            }
            Ok(None) => anyhow::bail!("the event stream ended"),
            Err(_) => anyhow::bail!("no terminal event within 300 s"),
        }
    }
}

pub async fn watch(settings: Settings, args: WatchArgs) -> anyhow::Result<()> {
    let bus = connect(&settings, args.bus).await?;
    let filter = match args.tenant {
        Some(t) => EventFilter::Tenant(Tenant::new(t).context("bad tenant")?),
        None => EventFilter::All,
    };
    let mut events = bus.events(filter).await?;
    // On stderr, so stdout stays one event per line: from here on nothing is missed.
    eprintln!("watching events (Ctrl-C to stop)");
    while let Some(event) = events.next().await {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(())
}
