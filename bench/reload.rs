//! Hot reload among many live instances, in-process and through the database.

use super::*;
use crate::in_process::{mock_config, start_engine};

/// Times `Engine::apply` for one changed config among `n`, and for all `n` changed,
/// from the call until the routing table the router reads holds the new configs.
pub(crate) async fn reload_bench(n: i64, dir: &std::path::Path) -> anyhow::Result<()> {
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
pub(crate) async fn reload_through_database(
    n: i64,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
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
    let tasks = switchyard_tasks::Tasks::new("bench");
    let (reload, initial) = switchyard_runtime::reloader::start(
        runtime.store.clone(),
        engine.clone(),
        None,
        Duration::from_secs(3600),
        stop_rx,
        &tasks,
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
