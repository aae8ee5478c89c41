//! The whole pipeline over a NATS server, and the bus floor (the same JetStream
//! traffic with no database and no engine).

use super::*;
use crate::in_process::{command, start_engine};

/// Publish N commands over JetStream (pipelined), the runtime handles them in this
/// process, and the terminal events are read back.
pub(crate) async fn nats_pipeline(
    args: &BenchArgs,
    url: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
    let running = Pipeline::start(args, url, dir, 0, 512).await?;
    let report = drive(args, &running.bus).await?;
    println!("nats pipeline, {} instances, {report}", args.instances);
    running.stop().await?;
    Ok(report)
}

/// A serving runtime in this process over its own streams and database, with `mock`
/// instances answering after `latency_ms`.
pub(crate) struct Pipeline {
    pub(crate) bus: switchyard_runtime::bus::Bus,
    server: switchyard_server::Running,
    store: switchyard_runtime::store::Store,
    schema: Option<(String, String)>,
}

impl Pipeline {
    pub(crate) async fn start(
        args: &BenchArgs,
        url: &str,
        dir: &std::path::Path,
        latency_ms: u64,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        use switchyard_runtime::Settings;

        let mut settings = Settings::default();
        settings.database.url = args
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/bench-{}.db", dir.display(), run_id()));
        if settings.database.url.starts_with("postgres") {
            settings.database.schema = Some(format!("bench_{}_{}", std::process::id(), run_id()));
        }
        settings.bus.url = url.to_owned();
        settings.bus.prefix = format!("bench{}x{}", std::process::id(), run_id());
        settings.bus.concurrency = concurrency;
        settings.database.max_connections = if args.database.is_some() { 40 } else { 1 };
        settings.http.listen = "127.0.0.1:0".to_owned();
        settings.artifacts.url = format!("file://{}/artifacts", dir.display());
        settings.secrets.master_key_file = dir.join("master.key");
        settings.admin.token_file = dir.join("admin.token");
        settings.providers = (1..=args.instances)
            .map(|i| {
                serde_json::from_value(json!({
                    "name": format!("bench-{i}"), "provider": "mock",
                    "options": {"latency_ms": latency_ms},
                    "rate_limit": {"rpm": 1_000_000, "burst": 100_000, "max_concurrency": 100_000},
                }))
            })
            .collect::<Result<_, _>>()?;
        let schema = settings
            .database
            .schema
            .clone()
            .map(|schema| (settings.database.url.clone(), schema));
        if let Some(window) = args.intake_window {
            settings.bus.intake_window = window;
        }
        if args.with_limits {
            settings.tenants.rpm = Some(u32::MAX);
            settings.tenants.concurrency = Some(u32::MAX);
            settings.tenants.user_rpm = Some(u32::MAX);
        }
        let (runtime, _) = switchyard_runtime::prepare(settings).await?;
        if args.with_quota {
            runtime
                .store
                .set_quota(&switchyard_runtime::store::Quota {
                    max_requests: Some(i64::MAX / 2),
                    ..switchyard_runtime::store::Quota::new(
                        "bench",
                        switchyard_runtime::store::QuotaPeriod::Day,
                    )
                })
                .await?;
        }
        let store = runtime.store.clone();
        let bus = runtime.connect_bus().await?;
        let server = runtime.spawn_with_bus(bus.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Self {
            bus,
            server,
            store,
            schema,
        })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        self.store.close().await;
        if let Err(e) = self.bus.delete_streams().await {
            eprintln!("could not delete the run's streams: {e}");
        }
        if let Some((url, schema)) = self.schema
            && let Err(e) = switchyard_runtime::store::drop_schema(&url, &schema).await
        {
            eprintln!("could not drop schema {schema}: {e}");
        }
        Ok(())
    }
}

/// The bus alone: the same commands and the same JetStream traffic per command as the
/// runtime makes (pull from the shared durable consumer, `accepted`, `started` and
/// `completed` published with their message ids and stream acks, then the command
/// acked), with no database and no engine: what the end-to-end number can reach here.
pub(crate) async fn bus_floor(
    args: &BenchArgs,
    url: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
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

    let prefix = format!("floor{}x{}", std::process::id(), run_id());
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
    if let Err(e) = bus.delete_streams().await {
        eprintln!("could not delete the run's streams: {e}");
    }
    Ok(report)
}

/// A number of this process's own for each run, so the runs of one invocation share
/// no stream, database file or schema.
fn run_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    requests: usize,
    rate: Option<u64>,
    publish_rate: f64,
    completed: usize,
    failed: usize,
    /// Completed commands per second, end to end.
    pub(crate) throughput: f64,
    /// Publish → terminal, µs.
    pub(crate) p50: u32,
    pub(crate) p99: u32,
    max: u32,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} commands{}: published at {:.0}/s; {} completed, {} failed, {:.0} commands/s end to end; publish→terminal p50 {} µs, p99 {} µs, max {} µs",
            self.requests,
            self.rate.map(|r| format!(" at {r}/s")).unwrap_or_default(),
            self.publish_rate,
            self.completed,
            self.failed,
            self.throughput,
            self.p50,
            self.p99,
            self.max
        )
    }
}

/// `--compare-floor`: the bus floor and the pipeline, alternately, `rounds` times
/// each in this one invocation, with the pipeline's figures as ratios to the floor's
/// of the same round.
pub(crate) async fn compare_floor(
    args: &BenchArgs,
    url: &str,
    dir: &std::path::Path,
    rounds: u32,
) -> anyhow::Result<()> {
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let floor = bus_floor(args, url, dir).await?;
        let pipeline = nats_pipeline(args, url, dir).await?;
        let ratio = pipeline.throughput / floor.throughput;
        let p50 = f64::from(pipeline.p50) / f64::from(floor.p50.max(1));
        let p99 = f64::from(pipeline.p99) / f64::from(floor.p99.max(1));
        println!(
            "round {round}: floor {:.0}/s, pipeline {:.0}/s: pipeline/floor {ratio:.2}; p50 {p50:.1}× and p99 {p99:.1}× the floor's",
            floor.throughput, pipeline.throughput
        );
        ratios.push((ratio, p50, p99));
    }
    let range = |pick: fn(&(f64, f64, f64)) -> f64| {
        let values: Vec<f64> = ratios.iter().map(pick).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{min:.2}–{max:.2}")
    };
    println!(
        "pipeline/floor over {rounds} rounds: throughput {}; p50 {}×; p99 {}×",
        range(|r| r.0),
        range(|r| r.1),
        range(|r| r.2)
    );
    Ok(())
}

/// Publishes `args.requests` text commands over JetStream (pipelined, up to 1,024
/// publish acks in flight; at `args.rate` if given) and times each from its publish
/// until its terminal event arrives.
pub(crate) async fn drive(
    args: &BenchArgs,
    bus: &switchyard_runtime::bus::Bus,
) -> anyhow::Result<Report> {
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
    Ok(Report {
        requests: n,
        rate: args.rate,
        publish_rate,
        completed: latencies.len(),
        failed,
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or(0),
    })
}
