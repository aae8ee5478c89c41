//! `switchyard demo`: the main job end to end on the embedded defaults. Starts the
//! runtime (SQLite, `memory://` or `--bus nats://…`, the `mock` providers of the
//! config), submits sample image and text commands through the bus, prints their
//! events as they arrive and where the images were stored, and exits 0.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use switchyard_core::{Command, Event, EventBody};
use switchyard_runtime::{Settings, bus::EventFilter};
use switchyard_server::Serve;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use this bus instead of the config's (e.g. nats://127.0.0.1:4222).
    #[arg(long)]
    bus: Option<String>,
}

pub async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<bool> {
    if let Some(bus) = args.bus {
        settings.bus.url = bus;
    }
    // The demo serves HTTP on a free port so it never collides with a running `serve`.
    settings.http.listen = "127.0.0.1:0".to_owned();
    let artifacts_dir = settings
        .artifacts
        .url
        .trim_start_matches("file://")
        .to_owned();
    let (runtime, _) = switchyard_runtime::prepare(settings)
        .await
        .context("cannot prepare the runtime")?;
    let bus = runtime
        .connect_bus()
        .await
        .context("cannot reach the bus")?;
    let server = runtime.spawn_with_bus(bus.clone());

    let mut events = bus.events(EventFilter::All).await?;
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S%3f").to_string();
    let commands = sample_commands(&run_id)?;
    println!(
        "submitting {} commands through {}\n",
        commands.len(),
        bus_name(&bus)
    );
    for command in &commands {
        let duplicate = bus.publish_command(command).await?;
        println!(
            "→ {} {} (request {})",
            command.kind,
            describe(command),
            command.request_id
        );
        debug_assert!(!duplicate);
    }
    // A client retrying the first command: de-duplicated, never run twice.
    let duplicate = bus.publish_command(&commands[0]).await?;
    println!(
        "→ republished request {} (duplicate dropped by the bus: {duplicate})\n",
        commands[0].request_id
    );

    let mut pending: BTreeMap<String, ()> = commands
        .iter()
        .map(|c| (c.request_id.to_string(), ()))
        .collect();
    let mut terminals = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => anyhow::bail!("the event stream ended"),
            Err(_) => anyhow::bail!(
                "no terminal event within 60 s for {:?}",
                pending.keys().collect::<Vec<_>>()
            ),
        };
        if !pending.contains_key(event.request_id.as_str()) {
            continue;
        }
        print_event(&event);
        if event.is_terminal() {
            pending.remove(event.request_id.as_str());
            terminals.push(event);
        }
    }

    println!("\nsummary");
    let mut ok = true;
    for event in &terminals {
        match &event.body {
            EventBody::Completed {
                output,
                usage,
                provider,
                ..
            } => {
                println!(
                    "  {} completed on {} (${:.4})",
                    event.request_id, provider.name, usage.cost_usd
                );
                for image in &output.images {
                    println!(
                        "    image {}x{} {} stored at {}/{}/{}",
                        image.width,
                        image.height,
                        image.mime,
                        artifacts_dir,
                        &image.artifact_id[..2],
                        image.artifact_id
                    );
                }
                if let Some(text) = &output.text {
                    println!("    text: {text}");
                }
            }
            EventBody::Failed { error, .. } => {
                let expected = event.request_id.as_str().ends_with("-invalid");
                println!(
                    "  {} failed: {} ({}){}",
                    event.request_id,
                    error.code,
                    error.message,
                    if expected {
                        " — expected: the demo sends one bad command"
                    } else {
                        ""
                    }
                );
                ok &= expected;
            }
            _ => {}
        }
    }
    server.stop().await.context("runtime")?;
    Ok(ok)
}

fn bus_name(bus: &switchyard_runtime::bus::Bus) -> &'static str {
    match bus {
        switchyard_runtime::bus::Bus::Memory(_) => "the in-process bus (memory://)",
        switchyard_runtime::bus::Bus::Nats(_) => "NATS JetStream",
    }
}

fn describe(command: &Command) -> String {
    let input = &command.input;
    match (&input.prompt, &input.messages) {
        (Some(prompt), _) => format!("\"{prompt}\""),
        (None, Some(messages)) => format!(
            "\"{}\"{}",
            messages.last().map(|m| m.content.as_str()).unwrap_or(""),
            if input.stream == Some(true) {
                " (streamed)"
            } else {
                ""
            }
        ),
        _ => String::new(),
    }
}

fn print_event(event: &Event) {
    let detail = match &event.body {
        EventBody::Accepted { task_id, .. } => format!("task {task_id}"),
        EventBody::Started { attempt, provider } => format!(
            "attempt {attempt} on {} ({})",
            provider.name, provider.provider_type
        ),
        EventBody::Progress { progress, .. } => format!("{:.0}%", progress * 100.0),
        EventBody::Chunk { index, delta } => format!("#{index} {delta:?}"),
        EventBody::Completed {
            latency_ms, output, ..
        } => format!(
            "{} image(s){} in {latency_ms} ms",
            output.images.len(),
            if output.text.is_some() { " + text" } else { "" }
        ),
        EventBody::Failed { error, .. } => format!("{}: {}", error.code, error.message),
    };
    println!(
        "  [{}] {:>2} {:<9} {}",
        event.request_id,
        event.seq,
        event.event_type().as_str(),
        detail
    );
}

fn sample_commands(run_id: &str) -> anyhow::Result<Vec<Command>> {
    // A tiny PNG for the image-to-image sample (2×2 pixels).
    let edit_input = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==";
    let values = vec![
        json!({"request_id": format!("demo-{run_id}-poster"), "tenant": "demo", "kind": "image.generate",
               "input": {"prompt": "a poster for a skin clinic, soft light", "n": 2, "size": "256x256", "seed": 7}}),
        json!({"request_id": format!("demo-{run_id}-edit"), "tenant": "demo", "kind": "image.edit",
               "input": {"prompt": "make it blue", "size": "128x128",
                         "images": [{"b64": edit_input, "mime": "image/png"}]}}),
        json!({"request_id": format!("demo-{run_id}-chat"), "tenant": "demo", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "Name three railway words."}], "stream": true}}),
        json!({"request_id": format!("demo-{run_id}-cheap"), "tenant": "demo", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "Summarise Switchyard."}], "max_tokens": 6},
               "route": {"strategy": "cost"}}),
        json!({"request_id": format!("demo-{run_id}-invalid"), "tenant": "demo", "kind": "image.generate",
               "input": {"prompt": "", "n": 11}}),
    ];
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).context("sample command"))
        .collect()
}
