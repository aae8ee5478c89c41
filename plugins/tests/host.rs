//! The plugin host against the example guests built by `plugins/build-examples.sh`
//! (`.ci/run` builds them first; a missing guest fails the test, never skips it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test's helper tasks end with the test"
)]

use std::{sync::Arc, time::Duration};

use switchyard_plugins::{
    CallContext, CallError, ErrorCode, Kind, LoadError, Plugin, PluginEvent, PluginHost, Request,
};
use tokio::sync::mpsc;

fn guest(name: &str) -> Vec<u8> {
    // The directory at run time: a test binary reused from another checkout of the
    // same sources (one shared target dir) would read that checkout's files.
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{dir}/examples/dist/{name}.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{path}: {e} — build the example plugins first: plugins/build-examples.sh")
    })
}

fn request(kind: Kind, options: &str) -> Request {
    Request {
        kind,
        prompt: Some("a lighthouse".into()),
        negative_prompt: None,
        n: 1,
        size: None,
        aspect_ratio: None,
        seed: Some(7),
        images: Vec::new(),
        messages: vec![switchyard_plugins::Message {
            role: "user".into(),
            content: "hello".into(),
        }],
        system: None,
        max_tokens: None,
        temperature: None,
        stream: true,
        model: None,
        base_url: None,
        options_json: options.into(),
        params_json: "{}".into(),
        deadline_ms: 1000,
    }
}

fn context(timeout: Duration) -> CallContext {
    CallContext::new(None, timeout)
}

async fn load(host: &PluginHost, name: &str) -> Plugin {
    host.load(&guest(name)).await.unwrap()
}

#[tokio::test]
async fn echo_describes_itself_streams_and_answers() {
    let host = PluginHost::new(None).unwrap();
    let plugin = load(&host, "echo").await;
    assert_eq!(plugin.descriptor.name, "echo");
    assert_eq!(plugin.descriptor.version, "1.0.0");
    assert_eq!(
        plugin.descriptor.kinds,
        [Kind::ImageGenerate, Kind::TextGenerate]
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut ctx = context(Duration::from_secs(5));
    ctx.events = Some(tx);
    let response = plugin
        .generate(host.engine(), request(Kind::TextGenerate, "{}"), ctx)
        .await
        .unwrap();
    assert_eq!(response.text.as_deref(), Some("echo 1.0.0: hello"));
    let mut chunks = String::new();
    while let Ok(PluginEvent::Chunk(c)) = rx.try_recv() {
        chunks.push_str(&c);
    }
    assert_eq!(chunks, "echo 1.0.0: hello");
    let image = plugin
        .generate(
            host.engine(),
            request(Kind::ImageGenerate, "{}"),
            context(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(&image.images[0].bytes[..4], b"\x89PNG");
    let error = plugin
        .generate(
            host.engine(),
            request(Kind::ImageEdit, "{}"),
            context(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    let CallError::Provider(e) = error else {
        panic!("{error:?}")
    };
    assert_eq!(e.code, ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn bad_files_are_refused_with_the_reason() {
    let host = PluginHost::new(None).unwrap();
    assert_eq!(host.load(b"hello").await.unwrap_err(), LoadError::NotWasm);
    assert_eq!(
        host.load(&guest("echo-core")).await.unwrap_err(),
        LoadError::CoreModule
    );
    // The smallest valid component: no imports, no exports — the wrong world.
    let empty = b"\0asm\x0d\x00\x01\x00";
    let error = host.load(empty).await.unwrap_err();
    assert!(matches!(error, LoadError::WrongWorld(_)), "{error:?}");
    assert!(error.to_string().contains("describe"), "{error}");
    let mut truncated = guest("echo");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        host.load(&truncated).await.unwrap_err(),
        LoadError::Compile(_)
    ));
}

#[tokio::test]
async fn a_runaway_loop_is_stopped_at_the_deadline_without_blocking_the_runtime() {
    let host = PluginHost::new(None).unwrap();
    let plugin = Arc::new(load(&host, "misbehave").await);
    let started = std::time::Instant::now();
    // A tick on the same (current-thread) runtime must keep running meanwhile.
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let error = plugin
        .generate(
            host.engine(),
            request(Kind::TextGenerate, r#"{"mode":"loop"}"#),
            context(Duration::from_millis(400)),
        )
        .await
        .unwrap_err();
    ticker.abort();
    assert!(
        matches!(&error, CallError::Plugin(m) if m.contains("did not finish")),
        "{error:?}"
    );
    // Stopped at its deadline (400 ms) give or take scheduling, not whenever the
    // runtime next looks at its timers.
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) >= 5,
        "the runtime kept running"
    );
}

#[tokio::test]
async fn memory_bombs_and_traps_are_contained_and_the_next_call_is_fresh() {
    let host = PluginHost::new(None).unwrap();
    let plugin = load(&host, "misbehave").await;
    let mut ctx = context(Duration::from_secs(10));
    ctx.memory_bytes = 16 << 20;
    let error = plugin
        .generate(
            host.engine(),
            request(Kind::TextGenerate, r#"{"mode":"memory"}"#),
            ctx,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Plugin(m) if m.contains("memory")),
        "{error:?}"
    );
    let error = plugin
        .generate(
            host.engine(),
            request(Kind::TextGenerate, r#"{"mode":"trap"}"#),
            context(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Plugin(m) if m.contains("trapped")),
        "{error:?}"
    );
    // A fresh store per call: the same plugin answers normally right after.
    let fine = plugin
        .generate(
            host.engine(),
            request(Kind::TextGenerate, "{}"),
            context(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(fine.text.as_deref(), Some("fine"));
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    let cold = load(&first, "echo").await;
    assert!(!cold.from_cache);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    // A restart (a new engine with the same settings) loads the compiled code.
    let second = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    let warm = load(&second, "echo").await;
    assert!(warm.from_cache);
    assert_eq!(warm.descriptor.version, "1.0.0");
    // A corrupt cache file is ignored and rewritten.
    let path = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&path, b"garbage").unwrap();
    let third = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    assert!(!load(&third, "echo").await.from_cache);
}
