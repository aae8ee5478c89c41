//! WASM plugins through the whole runtime: installed in the database, resolved by the
//! reloader, served by provider actors. The guests are the examples built by
//! `plugins/build-examples.sh` (`.ci/run` builds them; a missing one fails the test).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use switchyard_core::{Command, ErrorCode, Event, EventBody, ProviderConfigDraft};
use switchyard_runtime::{
    artifacts::ArtifactStore,
    engine::{Engine, EngineOptions, Submission},
    plugins::{PluginRegistry, install},
    reloader::ReloadHandle,
};
use tokio::sync::watch;
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::support::TestDb;

fn guest(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/plugins/examples/dist/{name}.wasm",
        crate::support::manifest_dir()
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{path}: {e} — build the example plugins first: plugins/build-examples.sh")
    })
}

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn png() -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap()
}

struct Runtime {
    db: TestDb,
    engine: Engine,
    reload: ReloadHandle,
    registry: Arc<PluginRegistry>,
    _stop: watch::Sender<bool>,
    _artifacts: tempfile::TempDir,
}

impl Runtime {
    async fn start() -> Self {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let registry = PluginRegistry::new(None).unwrap();
        let (engine, _) = Engine::start(
            Vec::new(),
            Vec::new(),
            EngineOptions {
                default_wait: Duration::from_secs(10),
                plugins: Some(registry.clone()),
                vault: None,
                ..crate::support::engine_options(
                    ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap(),
                )
            },
        )
        .await
        .unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let (reload, _) = switchyard_runtime::reloader::start(
            db.store.clone(),
            engine.clone(),
            None,
            Duration::from_secs(3600),
            stop_rx,
            &switchyard_tasks::Tasks::new("plugins-test"),
        )
        .await
        .unwrap();
        Self {
            db,
            engine,
            reload,
            registry,
            _stop: stop,
            _artifacts: dir,
        }
    }

    async fn install(&self, name: &str) -> String {
        let (info, _) = install(&self.db.store, self.registry.host(), &guest(name), None)
            .await
            .unwrap();
        format!("{}@{}", info.name, info.version)
    }

    async fn add(&self, config: Value) {
        let draft: ProviderConfigDraft = serde_json::from_value(config).unwrap();
        self.db
            .store
            .insert_provider(&draft.validate().unwrap())
            .await
            .unwrap();
        let report = self.reload.reload_all().await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }

    async fn run(&self, command: Value) -> Vec<Event> {
        let mut command = command;
        command["tenant"] = json!("acme");
        if command.get("request_id").is_none() {
            command["request_id"] = json!(format!("r-{}", rand_id()));
        }
        let command: Arc<Command> = Arc::new(serde_json::from_value(command).unwrap());
        let mut events = Vec::new();
        self.engine
            .execute(Submission::new(command, 1), &mut |e| events.push(e))
            .await;
        events
    }

    async fn finish(self) {
        self.engine.shutdown();
        self.db.cleanup().await;
    }
}

fn rand_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn text(prompt: &str) -> Value {
    json!({"kind": "text.generate", "input": {"messages": [{"role": "user", "content": prompt}]}})
}

fn terminal(events: &[Event]) -> &EventBody {
    &events.last().unwrap().body
}

fn completed_text(events: &[Event]) -> String {
    match terminal(events) {
        EventBody::Completed { output, .. } => output.text.clone().unwrap_or_default(),
        other => panic!("not completed: {other:?}"),
    }
}

fn failure(events: &[Event]) -> (ErrorCode, String) {
    match terminal(events) {
        EventBody::Failed { error, .. } => (error.code, error.message.clone()),
        other => panic!("not failed: {other:?}"),
    }
}

#[tokio::test]
async fn the_replicate_example_submits_polls_and_downloads_through_the_host() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-schnell/predictions"))
        .and(header("authorization", "Bearer r8_secret_key"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "p1", "model": "black-forest-labs/flux-schnell", "status": "starting",
            "input": {"prompt": "a fox"}, "output": null, "error": null,
            "urls": {"get": format!("{base}/v1/predictions/p1"), "cancel": format!("{base}/v1/predictions/p1/cancel")}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "p1", "status": "processing", "output": null, "error": null, "urls": {"get": format!("{base}/v1/predictions/p1")}})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "p1", "status": "succeeded", "error": null,
            "output": [format!("{base}/pbxt/out-0.png")], "urls": {"get": format!("{base}/v1/predictions/p1")}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/pbxt/out-0.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png()))
        .mount(&server)
        .await;
    let rt = Runtime::start().await;
    assert_eq!(rt.install("replicate").await, "replicate@1.0.0");
    let host = base.trim_start_matches("http://").to_owned();
    // No `kinds`: narrowed to what the plugin serves (image.generate).
    rt.add(
        json!({"name": "flux", "provider": "wasm", "plugin": "replicate",
        "model": "black-forest-labs/flux-schnell", "base_url": base, "api_key": "r8_secret_key",
        "options": {"allowed_hosts": [host], "poll_interval_ms": 5}}),
    )
    .await;
    let events = rt
        .run(
            json!({"kind": "image.generate", "input": {"prompt": "a fox", "aspect_ratio": "16:9"}}),
        )
        .await;
    let EventBody::Completed {
        output, provider, ..
    } = terminal(&events)
    else {
        panic!("{events:?}")
    };
    assert_eq!(provider.name, "flux");
    assert_eq!(output.images[0].bytes, png().len() as u64);
    assert_eq!((output.images[0].width, output.images[0].height), (1, 1));
    let progress: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Progress { progress, .. } => Some(*progress),
            _ => None,
        })
        .collect();
    assert_eq!(progress, [0.0, 0.5]);
    let sent: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"input": {"prompt": "a fox", "num_outputs": 1, "aspect_ratio": "16:9"}})
    );
    // The guest never saw the key: the events say nothing of it either.
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("r8_secret_key")
    );
    rt.finish().await;
}

#[tokio::test]
async fn sandbox_violations_are_contained_and_the_runtime_keeps_serving() {
    let allowed = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|request: &Request| {
            // Echo back what arrived: the key header and the body.
            let key = request
                .headers
                .get("x-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            ResponseTemplate::new(200).set_body_string(format!(
                "header={key} body={}",
                String::from_utf8_lossy(&request.body)
            ))
        })
        .mount(&allowed)
        .await;
    let off_list = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("leaked"))
        .expect(0)
        .mount(&off_list)
        .await;
    let rt = Runtime::start().await;
    rt.install("misbehave").await;
    let allowed_host = allowed.uri().trim_start_matches("http://").to_owned();
    for (name, mode, extra) in [
        ("loop", "loop", json!({})),
        ("memory", "memory", json!({"memory_mb": 16})),
        ("trap", "trap", json!({})),
        ("garbage", "garbage", json!({})),
        (
            "offlist",
            "offlist",
            json!({"url": format!("{}/steal", off_list.uri())}),
        ),
        (
            "key",
            "key",
            json!({"url": format!("{}/echo", allowed.uri())}),
        ),
        ("fine", "fine", json!({})),
    ] {
        let mut options = json!({"mode": mode, "allowed_hosts": [allowed_host]});
        options
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        rt.add(json!({"name": name, "provider": "wasm", "plugin": "misbehave", "kinds": ["image.generate", "text.generate"],
            "api_key": "sk-plugin-secret-1", "timeout_ms": 1000, "options": options}))
            .await;
    }
    let route = |config: &str, kind: &str| {
        let mut command = if kind == "text" {
            text("hi")
        } else {
            json!({"kind": "image.generate", "input": {"prompt": "p"}})
        };
        command["route"] = json!({"config_id": config, "fallback": false});
        command
    };
    let (code, message) = failure(&rt.run(route("loop", "text")).await);
    assert_eq!(code, ErrorCode::PluginError, "{message}");
    assert!(message.contains("did not finish"), "{message}");
    let (code, message) = failure(&rt.run(route("memory", "text")).await);
    assert_eq!(code, ErrorCode::PluginError, "{message}");
    assert!(message.contains("memory"), "{message}");
    let (code, message) = failure(&rt.run(route("trap", "text")).await);
    assert_eq!(code, ErrorCode::PluginError, "{message}");
    assert!(message.contains("trapped"), "{message}");
    let (code, message) = failure(&rt.run(route("garbage", "image")).await);
    assert_eq!(code, ErrorCode::PluginError, "{message}");
    let (code, message) = failure(&rt.run(route("offlist", "text")).await);
    assert_eq!(code, ErrorCode::ProviderError, "{message}");
    assert!(
        message.contains("not on this plugin's allowed_hosts"),
        "{message}"
    );
    // The key went out in the header (filled in by the host), never in the body, and
    // what came back had it removed before the guest saw it.
    let answer = completed_text(&rt.run(route("key", "text")).await);
    assert_eq!(answer, "header=**** body=body={{api_key}}");
    let received = allowed.received_requests().await.unwrap();
    assert_eq!(
        received[0].headers.get("x-key").unwrap(),
        "sk-plugin-secret-1"
    );
    // A name on the plugin's allowlist that resolves to loopback is refused by the
    // outbound guard's resolver: the host never connects there.
    let (port, hits) = crate::guard::bait(crate::guard::Bait::Bytes(10)).await;
    rt.add(json!({"name": "rebind", "provider": "wasm", "plugin": "misbehave", "kinds": ["text.generate"],
        "api_key": "sk-plugin-secret-1", "timeout_ms": 1000,
        "options": {"mode": "offlist", "url": format!("http://localhost:{port}/steal"),
                    "allowed_hosts": [format!("localhost:{port}")]}}))
        .await;
    let (code, message) = failure(&rt.run(route("rebind", "text")).await);
    assert_eq!(code, ErrorCode::ProviderError, "{message}");
    assert!(message.contains("refused to fetch"), "{message}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // After all of that, the same plugin and runtime serve normally.
    assert_eq!(completed_text(&rt.run(route("fine", "text")).await), "fine");
    rt.finish().await;
}

#[tokio::test]
async fn a_hot_swap_under_load_fails_nothing_and_rollback_returns_to_v1() {
    let rt = Arc::new(Runtime::start().await);
    assert_eq!(rt.install("echo").await, "echo@1.0.0");
    rt.add(
        json!({"name": "echo", "provider": "wasm", "plugin": "echo", "kinds": ["text.generate"],
        "rate_limit": {"rpm": 1000000, "burst": 10000, "max_concurrency": 64}}),
    )
    .await;
    assert_eq!(
        completed_text(&rt.run(text("one")).await),
        "echo 1.0.0: one"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU32::new(0));
    let served = Arc::new(AtomicU32::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (rt, stop, failures, served) =
            (rt.clone(), stop.clone(), failures.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let events = rt.run(text("x")).await;
                match terminal(&events) {
                    EventBody::Completed { output, .. } => {
                        served.fetch_add(1, Ordering::Relaxed);
                        versions.push(output.text.clone().unwrap_or_default());
                    }
                    other => {
                        eprintln!("failed during the swap: {other:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            versions
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rt.install("echo-v2").await, "echo@2.0.0");
    let report = rt.reload.reload_all().await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for task in load {
        seen.extend(task.await.unwrap());
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    assert!(served.load(Ordering::Relaxed) > 20, "load ran");
    assert!(seen.iter().any(|t| t == "echo 1.0.0: x"));
    assert!(
        seen.iter().any(|t| t == "echo 2.0.0: x"),
        "the new version served"
    );
    assert_eq!(
        completed_text(&rt.run(text("two")).await),
        "echo 2.0.0: two"
    );

    let (old, current) = rt.db.store.rollback_plugin("echo").await.unwrap();
    assert_eq!(
        (old.version.as_str(), current.version.as_str()),
        ("2.0.0", "1.0.0")
    );
    rt.reload.reload_all().await.unwrap();
    assert_eq!(
        completed_text(&rt.run(text("three")).await),
        "echo 1.0.0: three"
    );
    // Installing the same file again is idempotent and makes it current again.
    rt.install("echo-v2").await;
    rt.reload.reload_all().await.unwrap();
    assert_eq!(
        completed_text(&rt.run(text("four")).await),
        "echo 2.0.0: four"
    );
    match Arc::try_unwrap(rt) {
        Ok(rt) => rt.finish().await,
        Err(_) => panic!("runtime still shared"),
    }
}

#[tokio::test]
async fn a_config_whose_plugin_is_missing_does_not_start_and_says_why() {
    let rt = Runtime::start().await;
    let draft: ProviderConfigDraft = serde_json::from_value(
        json!({"name": "ghost", "provider": "wasm", "plugin": "nothing-here", "kinds": ["text.generate"]}),
    )
    .unwrap();
    let config = rt
        .db
        .store
        .insert_provider(&draft.validate().unwrap())
        .await
        .unwrap();
    let report = rt.reload.reload_all().await.unwrap();
    let reason = report
        .failed
        .iter()
        .find(|(id, _)| *id == config.id)
        .map(|(_, reason)| reason.clone())
        .unwrap();
    assert!(
        reason.contains("'nothing-here' is not installed"),
        "{reason}"
    );
    rt.finish().await;
}
