//! Routing decision cost at 10 / 100 / 1,000 live instances, per strategy.
//! Run: `cargo bench -p switchyard-core --bench routing`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark with bad fixtures should stop"
)]

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use switchyard_core::{
    ConfigId, Kind, ProviderConfig, ProviderConfigDraft, Route,
    routing::{RouteRequest, RoutingView, plan},
};

struct Instance {
    config: ProviderConfig,
    in_flight: u32,
    latency: Option<f64>,
}

impl RoutingView for Instance {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }
    fn breaker_open_until(&self) -> Option<u64> {
        None
    }
    fn cooling_until(&self) -> Option<u64> {
        None
    }
    fn failed(&self) -> bool {
        false
    }
    fn in_flight(&self) -> u32 {
        self.in_flight
    }
    fn latency_ewma_ms(&self) -> Option<f64> {
        self.latency
    }
}

fn instances(n: i64) -> Vec<Instance> {
    (1..=n)
        .map(|i| {
            let draft: ProviderConfigDraft = serde_json::from_value(serde_json::json!({
                "name": format!("i{i}"), "provider": "mock", "priority": i % 7, "weight": 1 + i % 3,
                "kinds": if i % 5 == 0 { serde_json::json!(["text.generate"]) } else { serde_json::json!(["image.generate", "text.generate"]) },
                "cost": {"per_image": {"default": (i % 11) as f64 / 100.0}},
            }))
            .expect("draft");
            Instance {
                config: ProviderConfig {
                    id: ConfigId(i),
                    spec: draft.validate().expect("valid"),
                    version: 1,
                    created_at: Utc.timestamp_opt(0, 0).single().expect("time"),
                    updated_at: Utc.timestamp_opt(0, 0).single().expect("time"),
                },
                in_flight: (i % 4) as u32,
                latency: Some((i % 13) as f64),
            }
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing_decision");
    for n in [10, 100, 1000] {
        let pool = instances(n);
        for strategy in ["priority", "weighted", "least_busy", "cost"] {
            let route: Route =
                serde_json::from_value(serde_json::json!({"strategy": strategy})).expect("route");
            let request = RouteRequest {
                kind: Kind::ImageGenerate,
                route: &route,
                size: Some("1024x1024"),
                n: 1,
                estimated_tokens: 0,
                tenant: "bench",
                own_accounts: switchyard_core::routing::OwnAccounts::Prefer,
                carried: Default::default(),
            };
            let mut counter = 0u64;
            group.bench_with_input(BenchmarkId::new(strategy, n), &pool, |b, pool| {
                b.iter(|| {
                    counter += 1;
                    let plan =
                        plan(black_box(&request), pool, &[], 0, counter, counter).expect("plan");
                    black_box(plan.candidates.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
