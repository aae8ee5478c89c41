//! Metrics: the process-wide Prometheus recorder behind `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process (metrics recorded before are
/// lost) and returns its handle; `None` if another recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics is off");
                None
            }
        })
        .clone()
}

/// The most distinct values one label of the generation metrics takes in a process;
/// later ones are counted as `other`, so a stream of odd model names cannot grow the
/// metrics without bound.
const MAX_LABEL_VALUES: usize = 64;

/// `value` if it is among the first [`MAX_LABEL_VALUES`] seen for labels of this
/// kind, else `other`.
fn bounded(seen: &std::sync::Mutex<std::collections::HashSet<String>>, value: &str) -> String {
    let Ok(mut seen) = seen.lock() else {
        return "other".to_owned();
    };
    if seen.contains(value) || seen.len() < MAX_LABEL_VALUES && seen.insert(value.to_owned()) {
        value.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Records a finished generation (issue 18 §8): its duration by kind, provider type
/// and model, and the tokens, images and cost it used. A cached answer used no
/// provider and is counted only as a cache hit (where the cache is looked up).
pub fn record_generation(kind: &'static str, body: &switchyard_core::EventBody) {
    static MODELS: OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let switchyard_core::EventBody::Completed {
        usage,
        provider,
        latency_ms,
        cached: false,
        ..
    } = body
    else {
        return;
    };
    let provider_type = provider.provider_type.as_str();
    let model = bounded(
        MODELS.get_or_init(Default::default),
        provider.model.as_deref().unwrap_or("-"),
    );
    metrics::histogram!("switchyard_generation_duration_seconds",
        "kind" => kind, "provider" => provider_type, "model" => model.clone())
    .record(*latency_ms as f64 / 1000.0);
    metrics::counter!("switchyard_tokens_total", "kind" => kind, "provider" => provider_type, "direction" => "input")
        .increment(usage.input_tokens);
    metrics::counter!("switchyard_tokens_total", "kind" => kind, "provider" => provider_type, "direction" => "output")
        .increment(usage.output_tokens);
    metrics::counter!("switchyard_images_total", "kind" => kind, "provider" => provider_type)
        .increment(u64::from(usage.images));
    // Whole micro-dollars: a counter holds integers.
    metrics::counter!("switchyard_cost_usd_micros_total", "provider" => provider_type, "model" => model)
        .increment((usage.cost_usd.max(0.0) * 1e6).round() as u64);
}
