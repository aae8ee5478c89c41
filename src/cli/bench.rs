//! `switchyard bench`: the project's load tool. It runs the engine in-process with
//! `mock` instances at 0 ms and measures throughput and latency from submit to terminal
//! event, or the memory an idle provider actor costs. Results go to
//! `docs/benchmarks.md`; tests never assert timings.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use switchyard_core::{Command, ConfigId, EventBody, ProviderConfig, ProviderConfigDraft};
use switchyard_runtime::{
    Engine, EngineOptions, Submission, actors::RestartPolicy, artifacts::ArtifactStore,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchKind {
    /// `text.generate` (no artifact writes).
    Text,
    /// `image.generate` at 64×64 (each image is stored in the artifact store).
    Image,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
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
    /// With --bus: read terminal events back from the event stream with an ordered
    /// consumer of every event (as a late subscriber does) instead of a core
    /// subscription to the terminal subjects (as a live subscriber does).
    #[arg(long, requires = "bus")]
    from_stream: bool,
    /// Instead: measure hot reload among this many live instances (one config changed,
    /// then all of them), until the router uses the new configs.
    #[arg(long)]
    reload_instances: Option<i64>,
}

fn mock_config(id: i64) -> anyhow::Result<ProviderConfig> {
    let draft: ProviderConfigDraft = serde_json::from_value(json!({
        "name": format!("bench-{id}"), "provider": "mock", "priority": id % 3,
        "rate_limit": {"rpm": 1_000_000, "burst": 100_000, "max_concurrency": 100_000},
    }))?;
    let spec = draft.validate().context("bench config")?;
    Ok(ProviderConfig {
        id: ConfigId(id),
        spec,
        version: 1,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    })
}

async fn start_engine(instances: i64, dir: &std::path::Path) -> anyhow::Result<Engine> {
    let configs = (1..=instances)
        .map(mock_config)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (engine, failures) = Engine::start(
        configs,
        Vec::new(),
        EngineOptions {
            artifacts: ArtifactStore::open(&format!("file://{}", dir.display()))?,
            artifact_base_url: "http://127.0.0.1:8080".into(),
            restart_policy: RestartPolicy::default(),
            default_wait: Duration::from_secs(30),
            plugins: None,
        },
    )
    .await?;
    anyhow::ensure!(
        failures.is_empty(),
        "instances failed to start: {failures:?}"
    );
    Ok(engine)
}

fn command(kind: BenchKind, i: u64) -> anyhow::Result<Arc<Command>> {
    let value = match kind {
        BenchKind::Text => json!({
            "request_id": format!("b{i}"), "tenant": "bench", "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8},
        }),
        BenchKind::Image => json!({
            "request_id": format!("b{i}"), "tenant": "bench", "kind": "image.generate",
            "input": {"prompt": format!("p{}", i % 1000), "size": "64x64"},
        }),
    };
    Ok(Arc::new(serde_json::from_value(value)?))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    if let Some(url) = args.bus.clone() {
        let result = if args.floor {
            bus_floor(&args, &url, &dir).await
        } else {
            nats_pipeline(&args, &url, &dir).await
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

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("switchyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn run_one(engine: &Engine, command: Arc<Command>, task_id: i64) -> anyhow::Result<u32> {
    let start = Instant::now();
    let outcome = engine
        .execute(Submission::new(command, task_id), &mut |_event| {})
        .await;
    let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
    match outcome.terminal.body {
        EventBody::Completed { .. } => Ok(micros),
        other => anyhow::bail!("request failed: {other:?}"),
    }
}

async fn closed_loop(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Vec<u32>> {
    let per_worker = args.requests / args.concurrency as u64;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.concurrency {
        let engine = engine.clone();
        let kind = args.kind;
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker as usize);
            for i in 0..per_worker {
                let id = w as u64 * per_worker + i;
                latencies.push(run_one(&engine, command(kind, id)?, id as i64).await?);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(args.requests as usize);
    while let Some(result) = workers.join_next().await {
        all.extend(result??);
    }
    Ok(all)
}

async fn open_loop(engine: &Engine, args: &BenchArgs, rate: u64) -> anyhow::Result<Vec<u32>> {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.requests {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let engine = engine.clone();
        let command = command(args.kind, i)?;
        tasks.spawn(async move { run_one(&engine, command, i as i64).await });
    }
    let mut all = Vec::with_capacity(args.requests as usize);
    while let Some(result) = tasks.join_next().await {
        all.push(result??);
    }
    Ok(all)
}

/// Publish N commands over JetStream (pipelined), the runtime handles them in this
/// process, and the terminal events are read back.
async fn nats_pipeline(args: &BenchArgs, url: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    use switchyard_runtime::Settings;

    let mut settings = Settings::default();
    settings.database.url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display()));
    if settings.database.url.starts_with("postgres") {
        settings.database.schema = Some(format!("bench_{}", std::process::id()));
    }
    settings.bus.url = url.to_owned();
    settings.bus.prefix = format!("bench{}", std::process::id());
    settings.bus.concurrency = 512;
    settings.database.max_connections = if args.database.is_some() { 40 } else { 1 };
    settings.http.listen = "127.0.0.1:0".to_owned();
    settings.artifacts.url = format!("file://{}/artifacts", dir.display());
    settings.secrets.master_key_file = dir.join("master.key");
    settings.admin.token_file = dir.join("admin.token");
    settings.providers = (1..=args.instances)
        .map(|i| {
            serde_json::from_value(json!({
                "name": format!("bench-{i}"), "provider": "mock",
                "rate_limit": {"rpm": 1_000_000, "burst": 100_000, "max_concurrency": 100_000},
            }))
        })
        .collect::<Result<_, _>>()?;
    let schema = settings
        .database
        .schema
        .clone()
        .map(|schema| (settings.database.url.clone(), schema));
    let (runtime, _) = switchyard_runtime::prepare(settings).await?;
    let store = runtime.store.clone();
    let bus = runtime.connect_bus().await?;
    let server = runtime.spawn_with_bus(bus.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = drive(args, &bus).await?;
    println!("nats pipeline, {} instances, {report}", args.instances);
    server.stop().await?;
    store.close().await;
    delete_streams(&bus).await;
    if let Some((url, schema)) = schema {
        drop_schema(&url, &schema).await;
    }
    Ok(())
}

/// Removes the PostgreSQL schema this run made (`bench_<pid>`) with its tables.
async fn drop_schema(url: &str, schema: &str) {
    let dropped = async {
        let pool = sqlx::PgPool::connect(url).await?;
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        pool.close().await;
        Ok::<_, sqlx::Error>(())
    };
    if let Err(e) = dropped.await {
        eprintln!("could not drop schema {schema}: {e}");
    }
}

/// Removes the streams this run made under its own prefix, so that repeated runs do
/// not pile state up on the server (the runtime itself never deletes streams).
async fn delete_streams(bus: &switchyard_runtime::bus::Bus) {
    if let Some(client) = bus.nats_client() {
        let js = async_nats::jetstream::new(client.clone());
        for name in [
            bus.subjects().command_stream(),
            bus.subjects().event_stream(),
        ] {
            if let Err(e) = js.delete_stream(&name).await {
                eprintln!("could not delete stream {name}: {e}");
            }
        }
    }
}

/// The bus alone: the same commands and the same JetStream traffic per command as the
/// runtime makes (pull from the shared durable consumer, `accepted`, `started` and
/// `completed` published with their message ids and stream acks, then the command
/// acked), with no database and no engine: what the end-to-end number can reach here.
async fn bus_floor(args: &BenchArgs, url: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use switchyard_runtime::bus::{Bus, NatsOptions};

    // Real events as templates: one request through the engine.
    let engine = start_engine(1, dir).await?;
    let mut templates = Vec::new();
    engine
        .execute(
            Submission::new(command(BenchKind::Text, 0)?, 1),
            &mut |event| templates.push(event),
        )
        .await;
    engine.shutdown();
    anyhow::ensure!(
        templates.len() == 3,
        "expected 3 events, got {}",
        templates.len()
    );
    let templates = Arc::new(templates);

    let prefix = format!("floor{}", std::process::id());
    let bus = Bus::connect(url, &prefix, NatsOptions::default()).await?;
    let mut deliveries = bus.commands().await?;
    let consumer_bus = bus.clone();
    let consumer = tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(512));
        while let Some(delivery) = deliveries.next().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let bus = consumer_bus.clone();
            let templates = templates.clone();
            tokio::spawn(async move {
                let envelope = switchyard_core::CommandEnvelope::parse(&delivery.payload);
                if let Ok(envelope) = envelope {
                    let mut acks = Vec::new();
                    for template in templates.iter() {
                        let mut event = template.clone();
                        event.request_id = envelope.request_id.clone();
                        event.tenant = envelope.tenant.clone();
                        if event.is_terminal() {
                            for ack in acks.drain(..) {
                                let _ = switchyard_runtime::bus::EventAck::wait(ack).await;
                            }
                            let _ = bus.publish_event(&event).await;
                        } else if let Ok(ack) = bus.send_event(&event).await {
                            acks.push(ack);
                        }
                    }
                }
                delivery.ack().await;
                drop(permit);
            });
        }
    });
    let report = drive(args, &bus).await?;
    println!("bus floor (no database, no engine), {report}");
    consumer.abort();
    delete_streams(&bus).await;
    Ok(())
}

/// Publishes `args.requests` text commands over JetStream (pipelined, up to 1,024
/// publish acks in flight; at `args.rate` if given) and times each from its publish
/// until its terminal event arrives.
async fn drive(args: &BenchArgs, bus: &switchyard_runtime::bus::Bus) -> anyhow::Result<String> {
    use futures_util::{StreamExt, stream::FuturesUnordered};
    use std::sync::atomic::{AtomicU64, Ordering};
    use switchyard_runtime::bus::EventFilter;

    let n = args.requests as usize;
    let origin = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let prefix = bus.subjects().prefix().to_owned();
    // A live subscriber: a core subscription to the terminal subjects only. With
    // --from-stream: every event through an ordered consumer of the event stream.
    let mut terminals: std::pin::Pin<Box<dyn futures_util::Stream<Item = (String, bool)> + Send>> =
        if args.from_stream {
            Box::pin(
                bus.events(EventFilter::All)
                    .await?
                    .filter_map(|event| async move {
                        event.is_terminal().then(|| {
                            let ok = matches!(event.body, EventBody::Completed { .. });
                            (event.request_id.as_str().to_owned(), ok)
                        })
                    }),
            )
        } else {
            let completed = bus
                .subscribe_messages(&format!("{prefix}.evt.*.*.completed"))
                .await?
                .map(|(subject, _)| (subject, true));
            let failed = bus
                .subscribe_messages(&format!("{prefix}.evt.*.*.failed"))
                .await?
                .map(|(subject, _)| (subject, false));
            Box::pin(
                futures_util::stream::select(completed, failed).map(|(subject, ok)| {
                    // <prefix>.evt.<tenant>.<request_id>.<type>
                    let id = subject.rsplit('.').nth(1).unwrap_or_default().to_owned();
                    (id, ok)
                }),
            )
        };
    let collector_sent = sent.clone();
    let collector = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n);
        let mut failed = 0usize;
        while latencies.len() + failed < n {
            let Ok(Some((request_id, ok))) =
                tokio::time::timeout(Duration::from_secs(30), terminals.next()).await
            else {
                break;
            };
            let Some(index) = request_id
                .strip_prefix('b')
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if !ok {
                failed += 1;
                continue;
            }
            let now = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
            let at = collector_sent
                .get(index)
                .map_or(now, |s| s.load(Ordering::Relaxed));
            latencies.push(u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX));
        }
        (latencies, failed)
    });

    let subject = bus.subjects().command(switchyard_core::Kind::TextGenerate);
    let js = bus
        .nats_client()
        .map(|c| async_nats::jetstream::new(c.clone()));
    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    for i in 0..n {
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let body = serde_json::to_vec(&*command(BenchKind::Text, i as u64)?)?;
        sent[i].store(
            u64::try_from(origin.elapsed().as_micros()).unwrap_or(0),
            Ordering::Relaxed,
        );
        match &js {
            Some(js) => {
                let ack = js
                    .send_publish(
                        subject.clone(),
                        async_nats::jetstream::message::PublishMessage::build()
                            .payload(body.into())
                            .message_id(format!("b{i}")),
                    )
                    .await?;
                acks.push(std::future::IntoFuture::into_future(ack));
                while acks.len() >= 1024 {
                    acks.next().await.transpose()?;
                }
            }
            None => {
                bus.publish_command_raw(&subject, body.into(), Some(&format!("b{i}")))
                    .await?;
            }
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let publish_rate = n as f64 / started.elapsed().as_secs_f64();
    let (mut latencies, failed) = collector.await?;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    anyhow::ensure!(!latencies.is_empty(), "no command completed");
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    Ok(format!(
        "{} commands{}: published at {:.0}/s; {} completed, {} failed, {:.0} commands/s end to end; publish→terminal p50 {} µs, p99 {} µs, max {} µs",
        n,
        args.rate.map(|r| format!(" at {r}/s")).unwrap_or_default(),
        publish_rate,
        latencies.len(),
        failed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    ))
}

/// Times `Engine::apply` for one changed config among `n`, and for all `n` changed,
/// from the call until the routing table the router reads holds the new configs.
async fn reload_bench(n: i64, dir: &std::path::Path) -> anyhow::Result<()> {
    let engine = start_engine(n, dir).await?;
    let base: Vec<ProviderConfig> = (1..=n).map(mock_config).collect::<anyhow::Result<_>>()?;
    let mut one = Vec::new();
    let mut configs = base.clone();
    for round in 0..20i32 {
        let target = usize::try_from(round).unwrap_or(0) % configs.len();
        configs[target].spec.priority = 1000 + round;
        let started = Instant::now();
        let report = engine.apply(configs.clone(), Vec::new()).await?;
        anyhow::ensure!(
            report.replaced.len() == 1,
            "expected one replacement, got {}",
            report.replaced.len()
        );
        let table = engine.table();
        anyhow::ensure!(
            table
                .instances
                .iter()
                .any(|i| i.config.spec.priority == 1000 + round)
        );
        one.push(started.elapsed());
    }
    let mut all = Vec::new();
    for round in 0..3i32 {
        let configs: Vec<ProviderConfig> = base
            .iter()
            .cloned()
            .map(|mut c| {
                c.spec.priority = 2000 + round;
                c
            })
            .collect();
        let started = Instant::now();
        let report = engine.apply(configs, Vec::new()).await?;
        anyhow::ensure!(report.replaced.len() == base.len(), "expected all replaced");
        all.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(700)).await; // let retired actors drain
    }
    one.sort();
    all.sort();
    let db_path = reload_through_database(n, dir).await?;
    println!(
        "reload among {n} live instances: one config changed p50 {:?} max {:?} (20 runs); all {n} changed p50 {:?} max {:?} (3 runs)",
        one[one.len() / 2],
        one.last().copied().unwrap_or_default(),
        all[all.len() / 2],
        all.last().copied().unwrap_or_default(),
    );
    println!("{db_path}");
    engine.shutdown();
    Ok(())
}

/// The whole reload path: a row changed in the database (SQLite) → the reloader reads
/// every row, validates, decrypts, diffs and applies → the routing table holds it.
async fn reload_through_database(n: i64, dir: &std::path::Path) -> anyhow::Result<String> {
    use switchyard_runtime::Settings;
    let mut settings = Settings::default();
    settings.database.url = format!("sqlite://{}/reload.db", dir.display());
    settings.secrets.master_key_file = dir.join("reload.key");
    settings.admin.token_file = dir.join("reload.token");
    settings.providers = (1..=n)
        .map(|i| serde_json::from_value(json!({"name": format!("r-{i}"), "provider": "mock", "api_key": "sk-bench-0123456789abcdef"})))
        .collect::<Result<_, _>>()?;
    let (runtime, _) = switchyard_runtime::prepare(settings).await?;
    let engine = start_engine(0, dir).await?;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (reload, initial, _) = switchyard_runtime::reloader::start(
        runtime.store.clone(),
        engine.clone(),
        None,
        Duration::from_secs(3600),
        stop_rx,
    )
    .await?;
    anyhow::ensure!(
        initial.live == n as usize,
        "initial load: {} live",
        initial.live
    );
    let mut times = Vec::new();
    for round in 0..10i64 {
        let id = switchyard_core::ConfigId(1 + round);
        let patch: ProviderConfigDraft = serde_json::from_value(json!({"priority": 500 + round}))?;
        runtime.store.patch_provider(id, patch).await?;
        let started = Instant::now();
        let report = reload.reload_one(id).await?;
        anyhow::ensure!(report.replaced == [id], "expected {id} replaced");
        times.push(started.elapsed());
    }
    times.sort();
    engine.shutdown();
    Ok(format!(
        "reload path of one change notice among {n} (SQLite: row read, validated, key decrypted; live set diffed; one replaced): p50 {:?} max {:?} (10 runs)",
        times[times.len() / 2],
        times.last().copied().unwrap_or_default()
    ))
}
