//! Plugin host costs: per-call overhead of a trivial plugin (fresh store +
//! instantiate + call), compile time cold vs from the disk cache, and memory per
//! loaded plugin. Needs the example guests: `plugins/build-examples.sh`.
//!
//!     cargo bench -p switchyard-plugins --bench plugin

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark"
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_plugins::{CallContext, Kind, Message, PluginHost, Request};

fn guest(name: &str) -> Vec<u8> {
    // The directory at run time: a test binary reused from another checkout of the
    // same sources (one shared target dir) would read that checkout's files.
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{dir}/examples/dist/{name}.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} — run plugins/build-examples.sh"))
}

fn request() -> Request {
    Request {
        kind: Kind::TextGenerate,
        prompt: None,
        negative_prompt: None,
        n: 1,
        size: None,
        aspect_ratio: None,
        seed: None,
        images: Vec::new(),
        messages: vec![Message {
            role: "user".into(),
            content: "hello".into(),
        }],
        system: None,
        max_tokens: None,
        temperature: None,
        stream: false,
        model: None,
        base_url: None,
        options_json: "{}".into(),
        params_json: "{}".into(),
        deadline_ms: 1000,
    }
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wasm = guest("echo");
    let host = PluginHost::new(None).unwrap();
    let plugin = rt.block_on(host.load(&wasm)).unwrap();

    c.bench_function(
        "plugin/call_overhead (fresh store + instantiate + call)",
        |b| {
            b.iter(|| {
                rt.block_on(plugin.generate(
                    host.engine(),
                    request(),
                    CallContext::new(None, Duration::from_secs(5)),
                ))
                .unwrap()
            });
        },
    );

    let mut group = c.benchmark_group("plugin/load");
    group.sample_size(10);
    group.bench_function("cold (compile)", |b| {
        b.iter(|| rt.block_on(host.load(&wasm)).unwrap());
    });
    let dir = tempfile::tempdir().unwrap();
    let cached = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    rt.block_on(cached.load(&wasm)).unwrap();
    group.bench_function("cached (from disk)", |b| {
        b.iter(|| {
            let plugin = rt.block_on(cached.load(&wasm)).unwrap();
            assert!(plugin.from_cache);
            plugin
        });
    });
    group.finish();

    // Memory per loaded plugin: RSS growth over 50 loaded copies (each compiled
    // separately, as distinct versions would be).
    let before = rss_kib();
    let loaded: Vec<_> = (0..50)
        .map(|_| rt.block_on(host.load(&wasm)).unwrap())
        .collect();
    let after = rss_kib();
    println!(
        "plugin/memory: {} KiB RSS per loaded plugin (echo, {} KiB file; 50 loaded)",
        after.saturating_sub(before) / 50,
        wasm.len() / 1024
    );
    drop(loaded);
}

criterion_group!(benches, bench);
criterion_main!(benches);
