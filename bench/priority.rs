//! `--urgent-behind N`: how long an urgent command (priority 1) published behind N
//! background ones (priority 10) waits to end, against the same command at background
//! priority behind the same backlog (arrival order), in one invocation.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use switchyard_runtime::bus::{Bus, EventFilter};

use super::*;
use crate::over_nats::Pipeline;

/// The mock's latency and the slots: the backlog drains in about
/// `N × LATENCY_MS / SLOTS` ms.
const LATENCY_MS: u64 = 200;
const SLOTS: usize = 64;

fn command(request_id: &str, priority: i64) -> anyhow::Result<Command> {
    Ok(serde_json::from_value(json!({
        "request_id": request_id, "tenant": "bench", "kind": "text.generate",
        "priority": priority,
        "input": {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8},
    }))?)
}

/// Publishes `backlog` background commands, then the probe at `priority`; waits for
/// every terminal event. Returns the probe's time from its publish to its terminal
/// event, the backlog's whole drain time, and how many ended before the probe.
async fn one_run(
    bus: &Bus,
    backlog: u64,
    priority: i64,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let mut events = bus.events(EventFilter::All).await?;
    let started = Instant::now();
    for i in 0..backlog {
        bus.publish_command(&command(&format!("bg{i}"), 10)?)
            .await?;
    }
    let probe_sent = Instant::now();
    bus.publish_command(&command("probe", priority)?).await?;
    let (mut probe, mut before, mut ended) = (None, 0, 0);
    while ended < backlog + 1 {
        let event = tokio::time::timeout(Duration::from_secs(300), events.next())
            .await
            .context("no terminal event for 300 s")?
            .context("the event stream ended")?;
        if !event.is_terminal() {
            continue;
        }
        ended += 1;
        if event.request_id.as_str() == "probe" {
            probe = Some(probe_sent.elapsed());
        } else if probe.is_none() {
            before += 1;
        }
    }
    let probe = probe.context("the probe never ended")?;
    Ok((probe, started.elapsed(), before))
}

/// Three rounds, each an urgent probe and a background probe on fresh streams.
pub(crate) async fn urgent_behind(
    args: &BenchArgs,
    url: &str,
    dir: &std::path::Path,
    backlog: u64,
) -> anyhow::Result<()> {
    for round in 1..=3 {
        let mut figures = Vec::new();
        for priority in [1, 10] {
            let running = Pipeline::start(args, url, dir, LATENCY_MS, SLOTS).await?;
            let figure = one_run(&running.bus, backlog, priority).await;
            running.stop().await?;
            figures.push(figure?);
        }
        let ((urgent, drain_u, before_u), (fifo, drain_f, before_f)) = (figures[0], figures[1]);
        println!(
            "round {round}: behind {backlog} background commands ({SLOTS} slots, mock {LATENCY_MS} ms): \
             urgent ended after {} ms ({before_u} ended before it; backlog drained in {} ms); \
             at background priority {} ms ({before_f} before it; drained in {} ms); ratio urgent/background {:.3}",
            urgent.as_millis(),
            drain_u.as_millis(),
            fifo.as_millis(),
            drain_f.as_millis(),
            urgent.as_secs_f64() / fifo.as_secs_f64(),
        );
    }
    Ok(())
}
