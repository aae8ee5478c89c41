//! Prometheus (#18 §8): a finished generation is measured by kind, provider type and
//! model (duration histogram, tokens, images, cost), cache lookups are counted by
//! outcome, and every metric the Grafana dashboard in deploy/ charts is one the code
//! records.

use serde_json::{Value, json};

use crate::{
    jobs::wait_for_status,
    reload::start_node,
    support::{TestDb, manifest_dir, raw_http},
};

/// The value on the line that starts with `start`, if any.
fn value(metrics: &str, start: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(start)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_and_cache_outcomes_are_measured() {
    let db = TestDb::sqlite().await;
    let node = start_node(
        &db,
        json!([{"name": "mock-a", "provider": "mock", "model": "mock-xl",
                "cost": {"per_image": {"default": 0.02}}}]),
    )
    .await;
    // The same cache: true request twice: a miss that runs, then a hit.
    for _ in 0..2 {
        let command = json!({"tenant": "acme", "kind": "image.generate", "cache": true,
                             "input": {"prompt": "a kite", "size": "64x64"}});
        let (status, posted) = node.call("POST", "/v1/jobs", Some(command));
        assert_eq!(status, 202, "{posted}");
        wait_for_status(&node, posted["id"].as_i64().unwrap(), "done").await;
    }
    let (status, metrics) = raw_http(node.port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let labels = r#"kind="image.generate",provider="mock""#;
    assert_eq!(
        value(
            &metrics,
            &format!(r#"switchyard_generation_duration_seconds_count{{{labels},model="mock-xl"}}"#)
        ),
        Some(1.0),
        "one provider call (the hit ran none): {metrics}"
    );
    assert_eq!(
        value(&metrics, &format!("switchyard_images_total{{{labels}}}")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            r#"switchyard_cost_usd_micros_total{provider="mock",model="mock-xl"}"#
        ),
        Some(20_000.0)
    );
    assert_eq!(
        value(&metrics, r#"switchyard_cache_total{outcome="miss"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, r#"switchyard_cache_total{outcome="hit"}"#),
        Some(1.0)
    );
    node.stop().await;
    db.cleanup().await;
}

/// Every `switchyard_…` metric in the dashboard's queries is recorded somewhere in the
/// runtime or the HTTP crate (a renamed metric would leave a chart empty).
#[test]
fn the_grafana_dashboard_charts_only_metrics_the_code_records() {
    let root = manifest_dir();
    let text = std::fs::read_to_string(format!("{root}/deploy/grafana/switchyard-dashboard.json"))
        .unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut sources = String::new();
    for dir in ["runtime/src", "http/src"] {
        let mut stack = vec![std::path::PathBuf::from(format!("{root}/{dir}"))];
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let Some(name) = word.strip_prefix("switchyard_") else {
                    continue;
                };
                let name = name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_count"))
                    .unwrap_or(name);
                assert!(
                    sources.contains(&format!("\"switchyard_{name}\"")),
                    "the dashboard charts switchyard_{name}, which nothing records"
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 10, "{charted}");
}
