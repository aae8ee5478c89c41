//! `switchyard-bench`: the project's load tool. It runs the engine in-process with
//! `mock` instances at 0 ms and measures throughput and latency from submit to terminal
//! event, or the memory an idle provider actor costs. Results go to
//! `docs/benchmarks.md`; tests never assert timings.

#![allow(
    clippy::disallowed_methods,
    reason = "the load tool joins every task it starts before it exits"
)]

mod in_process;
mod over_nats;
mod priority;
mod reload;
mod stand_in;

use in_process::{closed_loop, command, open_loop, rss_kib, run_one, start_engine, tempfile_dir};
use over_nats::{bus_floor, compare_floor, nats_pipeline};
use reload::reload_bench;
use stand_in::stand_in;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use switchyard_core::{Command, ConfigId, EventBody, ProviderConfig, ProviderConfigDraft};
use switchyard_runtime::{
    Engine, EngineOptions, Submission, actors::RestartPolicy, artifacts::ArtifactStore,
};
use switchyard_server::Serve;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchKind {
    /// `text.generate` (no artifact writes).
    Text,
    /// `image.generate` at 64×64 (each image is stored in the artifact store).
    Image,
}

/// The load tool's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard-bench",
    about = "Switchyard's load tool (docs/benchmarks.md)"
)]
struct BenchArgs {
    /// Requests to run.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Requests in flight at once (closed loop); ignored with --rate.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Open loop: submit at this many requests per second instead.
    #[arg(long)]
    rate: Option<u64>,
    /// Mock instances to route among.
    #[arg(long, default_value_t = 4)]
    instances: i64,
    /// What to ask for.
    #[arg(long, value_enum, default_value_t = BenchKind::Text)]
    kind: BenchKind,
    /// Instead: start this many idle provider actors and report memory per actor.
    #[arg(long)]
    idle_actors: Option<i64>,
    /// Instead: run the whole pipeline over this NATS server (publish over JetStream →
    /// runtime in this process → terminal event on JetStream), e.g. nats://127.0.0.1:4222.
    #[arg(long)]
    bus: Option<String>,
    /// With --bus: the database (default: a fresh SQLite file).
    #[arg(long)]
    database: Option<String>,
    /// With --bus: measure only what the bus itself costs — the same commands published,
    /// pulled from the shared durable consumer, three recorded events published per
    /// command and the command acked, with no database and no engine. The ceiling of
    /// the end-to-end number on this machine.
    #[arg(long, requires = "bus")]
    floor: bool,
    /// With --bus: the bus floor and the pipeline alternately, three runs of each in
    /// this one invocation, with the pipeline's throughput and latencies as ratios to
    /// the floor's of the same round.
    #[arg(long, requires = "bus", conflicts_with = "floor")]
    compare_floor: bool,
    /// With --bus: limits at intake for every tenant (far above the load, so nothing
    /// waits): every command takes a limiter slot. To measure what that costs.
    #[arg(long, requires = "bus")]
    with_limits: bool,
    /// With --bus: a daily quota of the bench's tenant (far above the load), reserved
    /// from in the database by every command. To measure what that costs.
    #[arg(long, requires = "bus")]
    with_quota: bool,
    /// With --bus: the runtime's `bus.intake_window` (commands pulled ahead).
    #[arg(long, requires = "bus")]
    intake_window: Option<usize>,
    /// With --bus: read terminal events back from the event stream with an ordered
    /// consumer of every event (as a late subscriber does) instead of a core
    /// subscription to the terminal subjects (as a live subscriber does).
    #[arg(long, requires = "bus")]
    from_stream: bool,
    /// With --bus: an urgent command (priority 1) published behind this many background
    /// ones (priority 10), against the same command at background priority, three
    /// rounds on fresh streams: how long each waited to end.
    #[arg(long, requires = "bus", conflicts_with_all = ["floor", "compare_floor"])]
    urgent_behind: Option<u64>,
    /// Instead: measure hot reload among this many live instances (one config changed,
    /// then all of them), until the router uses the new configs.
    #[arg(long)]
    reload_instances: Option<i64>,
    /// Instead: serve a stand-in OpenAI-compatible upstream on this address (e.g.
    /// 127.0.0.1:18181) until stopped, for the HTTP benchmark (bench/http.sh).
    #[arg(long)]
    stand_in: Option<String>,
}

/// mimalloc, as in the product binary, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = BenchArgs::parse();
    switchyard_server::init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(addr) = &args.stand_in {
        return stand_in(addr).await;
    }
    let dir = tempfile_dir()?;
    if let Some(url) = args.bus.clone() {
        let result = if let Some(backlog) = args.urgent_behind {
            priority::urgent_behind(&args, &url, &dir, backlog).await
        } else if args.compare_floor {
            compare_floor(&args, &url, &dir, 3).await
        } else if args.floor {
            bus_floor(&args, &url, &dir).await.map(drop)
        } else {
            nats_pipeline(&args, &url, &dir).await.map(drop)
        };
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
    if let Some(n) = args.reload_instances {
        return reload_bench(n, &dir).await;
    }
    if let Some(n) = args.idle_actors {
        let before = rss_kib();
        let engine = start_engine(n, &dir).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_kib();
        println!(
            "idle actors: {n}; rss before {before} KiB, after {after} KiB; {:.2} KiB per actor (incl. routing-table entry and config)",
            (after.saturating_sub(before)) as f64 / n as f64
        );
        engine.shutdown();
        return Ok(());
    }
    let engine = start_engine(args.instances, &dir).await?;
    // Warm up.
    for i in 0..1000 {
        run_one(&engine, command(args.kind, u64::MAX - i)?, 0).await?;
    }
    let started = Instant::now();
    let mut latencies: Vec<u32> = match args.rate {
        None => closed_loop(&engine, &args).await?,
        Some(rate) => open_loop(&engine, &args, rate).await?,
    };
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "kind {:?}, {} instances, {} requests, {}: {:.0} requests/s; latency submit→terminal p50 {} µs, p99 {} µs, max {} µs",
        args.kind,
        args.instances,
        latencies.len(),
        match args.rate {
            None => format!("closed loop, concurrency {}", args.concurrency),
            Some(rate) => format!("open loop at {rate}/s"),
        },
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0),
    );
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
