//! The engine in-process: closed and open loops over `mock` instances, and idle actors.

use super::*;

pub(crate) fn mock_config(id: i64) -> anyhow::Result<ProviderConfig> {
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

pub(crate) async fn start_engine(instances: i64, dir: &std::path::Path) -> anyhow::Result<Engine> {
    let configs = (1..=instances)
        .map(mock_config)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (engine, failures) = Engine::start(
        configs,
        Vec::new(),
        EngineOptions {
            artifacts: ArtifactStore::open(&format!("file://{}", dir.display()))?,
            artifact_urls: switchyard_runtime::artifact_urls::ArtifactUrls::new(
                b"a test key, a test key",
                std::time::Duration::from_secs(3600),
                "http://127.0.0.1:8080",
            ),
            restart_policy: RestartPolicy::default(),
            default_wait: Duration::from_secs(30),
            plugins: None,
            vault: None,
            outbound: switchyard_runtime::guard::Guard::default(),
        },
    )
    .await?;
    anyhow::ensure!(
        failures.is_empty(),
        "instances failed to start: {failures:?}"
    );
    Ok(engine)
}

pub(crate) fn command(kind: BenchKind, i: u64) -> anyhow::Result<Arc<Command>> {
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

pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

pub(crate) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("switchyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) async fn run_one(
    engine: &Engine,
    command: Arc<Command>,
    task_id: i64,
) -> anyhow::Result<u32> {
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

pub(crate) async fn closed_loop(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Vec<u32>> {
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

pub(crate) async fn open_loop(
    engine: &Engine,
    args: &BenchArgs,
    rate: u64,
) -> anyhow::Result<Vec<u32>> {
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
