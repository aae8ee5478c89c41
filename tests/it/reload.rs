//! Hot reload and the admin API: writes through the API, hand-written SQL and replicas
//! all converge, bad configs are refused or reported without taking anything down.

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use switchyard_runtime::{Settings, bus::Bus};
use switchyard_server::Serve;

use crate::support::{TestDb, free_port};

pub(crate) const TOKEN: &str = "reload-test-admin-token";

/// A minimal HTTP/1.1 client (one request per connection).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let payload = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Chunked bodies: take the JSON between the first '{' or '[' and the last '}' or ']'.
    let start = payload.find(['{', '[']);
    let end = payload.rfind(['}', ']']);
    let value = match (start, end) {
        (Some(s), Some(e)) if e >= s => {
            serde_json::from_str(&payload[s..=e]).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    };
    (status, value)
}

pub(crate) struct Node {
    pub(crate) port: u16,
    pub(crate) bus: Bus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

pub(crate) async fn start_node(db: &TestDb, seeds: Value) -> Node {
    start_node_on(db, seeds, "memory://", "switchyard").await
}

/// [`start_node`] on another bus (e.g. a test's own nats-server) and subject prefix.
pub(crate) async fn start_node_on(db: &TestDb, seeds: Value, bus_url: &str, prefix: &str) -> Node {
    start_node_with(db, seeds, bus_url, prefix, |_| {}).await
}

/// [`start_node_on`] with settings of the test's own (`configure` runs last).
pub(crate) async fn start_node_with(
    db: &TestDb,
    seeds: Value,
    bus_url: &str,
    prefix: &str,
    configure: impl FnOnce(&mut Settings),
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut settings = Settings::default();
    settings.database.url = db.options.url.clone();
    settings.database.schema = db.schema.clone();
    settings.database.change_poll_ms = 200;
    settings.http.listen = format!("127.0.0.1:{port}");
    settings.artifacts.url = format!("file://{}/artifacts", dir.path().display());
    settings.secrets.master_key = Some(switchyard_runtime::settings::Secret::new(
        db.key_b64.clone(),
    ));
    settings.admin.token = Some(switchyard_runtime::settings::Secret::new(TOKEN));
    settings.providers = serde_json::from_value(seeds).unwrap();
    configure(&mut settings);
    let (runtime, _) = switchyard_runtime::prepare(settings).await.unwrap();
    let bus = Bus::connect(bus_url, prefix, Default::default())
        .await
        .unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_bus = bus.clone();
    let task = tokio::spawn(async move {
        runtime
            .run_with_bus(server_bus, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Node {
        port,
        bus,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Node {
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }

    /// Polls `GET /v1/jobs/{id}` until the job is `done` or `failed` (20 s at most).
    pub(crate) async fn job_end(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, job) = self.call("GET", &format!("/v1/jobs/{id}"), None);
            if job["status"] == "failed" || job["status"] == "done" {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(self.port, method, path, Some(TOKEN), body.as_ref())
    }

    fn status_of(&self, name: &str) -> Option<Value> {
        let (_, status) = self.call("GET", "/v1/providers/status", None);
        status["instances"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
    }

    async fn wait_for(&self, what: &str, within: Duration, mut ok: impl FnMut(&Node) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            assert!(Instant::now() < deadline, "not within {within:?}: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn seeds() -> Value {
    json!([{"name": "mock-a", "provider": "mock", "priority": 100}, {"name": "mock-b", "provider": "mock", "priority": 50}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_writes_validate_mask_and_reload_at_once() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, seeds()).await;
    assert_eq!(http(node.port, "GET", "/v1/providers", None, None).0, 401);
    assert_eq!(
        http(
            node.port,
            "GET",
            "/v1/providers",
            Some("wrong-token-wrong-token"),
            None
        )
        .0,
        401
    );
    assert_eq!(http(node.port, "GET", "/healthz", None, None).0, 200);
    // The OpenAPI document describes every endpoint.
    let (status, doc) = http(node.port, "GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/healthz",
        "/readyz",
        "/v1/artifacts/{id}",
        "/v1/providers",
        "/v1/providers/{id}",
        "/v1/providers/reload",
        "/v1/providers/status",
        "/v1/providers/{id}/test",
        "/v1/usage",
        "/v1/quotas",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/tenants/{tenant}/keys",
        "/v1/tenants/{tenant}/keys/{id}",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/chat/completions",
        "/v1/models",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    for method in ["get", "patch", "delete"] {
        assert!(
            doc["paths"]["/v1/providers/{id}"][method].is_object(),
            "{method}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["admin"]["scheme"],
        "bearer"
    );

    let (status, body) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "x", "provider": "stabilty", "rate_limit": {"rpm": 0}})),
    );
    assert_eq!(status, 400);
    assert_eq!(body["fields"][0]["path"], "provider");
    assert_eq!(
        body["fields"][1],
        json!({"path": "rate_limit.rpm", "message": "must be > 0"})
    );
    let (status, body) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "x", "provider": "mock", "bogus": 1})),
    );
    assert_eq!(status, 400, "{body}");

    let (status, created) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "mock-c", "provider": "mock", "priority": 300, "api_key": "sk-SECRET-0123456789abcd"})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["api_key"], "sk-…abcd");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        node.call(
            "POST",
            "/v1/providers",
            Some(json!({"name": "mock-c", "provider": "mock"}))
        )
        .0,
        409
    );
    // The new instance serves at once.
    node.wait_for("mock-c live", Duration::from_secs(2), |n| {
        n.status_of("mock-c").is_some()
    })
    .await;

    let (status, patched) = node.call(
        "PATCH",
        &format!("/v1/providers/{id}"),
        Some(json!({"priority": 5, "api_key": "sk-…abcd"})),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["version"], 2);
    node.wait_for("version 2 applied", Duration::from_secs(2), |n| {
        n.status_of("mock-c").is_some_and(|s| s["version"] == 2)
    })
    .await;
    let (_, list) = node.call("GET", "/v1/providers?provider=mock&limit=2&offset=1", None);
    assert_eq!(list["total"], 3);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("SECRET"));
    assert_eq!(node.call("GET", "/v1/providers?kind=video", None).0, 400);
    let (_, tested) = node.call("POST", &format!("/v1/providers/{id}/test"), None);
    assert_eq!(tested["ok"], true);

    assert_eq!(
        node.call("DELETE", &format!("/v1/providers/{id}"), None).0,
        204
    );
    assert_eq!(
        node.call("GET", &format!("/v1/providers/{id}"), None).0,
        404
    );
    node.wait_for("mock-c gone", Duration::from_secs(2), |n| {
        n.status_of("mock-c").is_none()
    })
    .await;
    let (status, report) = node.call("POST", "/v1/providers/reload", None);
    assert_eq!(status, 200);
    assert_eq!(report["live"], 2);
    node.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_edits_are_followed_and_an_invalid_row_keeps_the_working_instance() {
    let db = TestDb::postgres().await;
    let node = start_node(&db, seeds()).await;
    node.wait_for("seeded", Duration::from_secs(2), |n| {
        n.status_of("mock-b").is_some()
    })
    .await;
    // A hand-written UPDATE: NOTIFY → reload, without calling reload.
    db.raw_execute("UPDATE provider_configs SET priority = 200 WHERE name = 'mock-b'")
        .await;
    node.wait_for("priority change followed", Duration::from_secs(1), |n| {
        n.status_of("mock-b").is_some_and(|s| s["version"] == 2)
    })
    .await;
    // An invalid row inserted by SQL is reported; the working instance stays.
    db.raw_execute("UPDATE provider_configs SET rpm = 0 WHERE name = 'mock-a'")
        .await;
    let (_, report) = node.call("POST", "/v1/providers/reload", None);
    assert_eq!(
        report["invalid"][0]["errors"][0]["path"], "rate_limit.rpm",
        "{report}"
    );
    let (_, status) = node.call("GET", "/v1/providers/status", None);
    assert_eq!(
        status["invalid"][0]["errors"][0]["path"], "rate_limit.rpm",
        "{status}"
    );
    let a = node.status_of("mock-a").expect("mock-a still serves");
    assert_eq!(a["version"], 1);
    assert_eq!(a["actor"], "running");
    node.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_on_one_database_both_follow_every_change() {
    let db = TestDb::postgres().await;
    let a = start_node(&db, seeds()).await;
    let b = start_node(&db, seeds()).await;
    let (_, list) = a.call("GET", "/v1/providers", None);
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mock-b")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    for round in 0..5 {
        let (status, _) = a.call(
            "PATCH",
            &format!("/v1/providers/{id}"),
            Some(json!({"priority": 10 + round})),
        );
        assert_eq!(status, 200);
        let version = 2 + round;
        for node in [&a, &b] {
            node.wait_for("replica converged", Duration::from_secs(1), |n| {
                n.status_of("mock-b")
                    .is_some_and(|s| s["version"] == version)
            })
            .await;
        }
    }
    a.stop().await;
    b.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_api_changes_under_load_fail_no_request_and_routing_follows() {
    use futures_util::StreamExt;
    use switchyard_runtime::bus::EventFilter;

    let db = TestDb::sqlite().await;
    let limits = json!({"rpm": 600000, "burst": 10000, "max_concurrency": 256});
    let node = start_node(&db, json!([
        {"name": "mock-a", "provider": "mock", "priority": 10, "rate_limit": limits, "options": {"latency_ms": 2}},
        {"name": "mock-b", "provider": "mock", "priority": 5, "rate_limit": limits, "options": {"latency_ms": 2}},
    ]))
    .await;
    let id_of = |node: &Node, name: &str| {
        let (_, list) = node.call("GET", "/v1/providers", None);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["id"].as_i64().unwrap())
    };
    let a = id_of(&node, "mock-a").unwrap();
    let b = id_of(&node, "mock-b").unwrap();
    let mut events = node.bus.events(EventFilter::All).await.unwrap();

    // Continuous load: a publisher task sends commands until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (bus, stop) = (node.bus.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let command: switchyard_core::Command = serde_json::from_value(json!({
                    "request_id": format!("load-{sent}"), "tenant": "acme", "kind": "text.generate",
                    "input": {"messages": [{"role": "user", "content": "x"}]},
                }))
                .unwrap();
                bus.publish_command(&command).await.unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };
    let mut extra: Vec<i64> = Vec::new();
    for round in 0..100i64 {
        let (status, body) = match round % 6 {
            0 => node.call("PATCH", &format!("/v1/providers/{a}"), Some(json!({"priority": 10 + round % 3}))),
            1 => node.call("PATCH", &format!("/v1/providers/{b}"), Some(json!({"enabled": round % 4 != 1}))),
            2 => node.call("POST", "/v1/providers", Some(json!({"name": format!("extra-{round}"), "provider": "mock", "priority": 1, "rate_limit": limits}))),
            3 => match extra.pop() {
                Some(id) => {
                    let (status, _) = node.call("DELETE", &format!("/v1/providers/{id}"), None);
                    (if status == 204 { 200 } else { status }, Value::Null)
                }
                None => (200, Value::Null),
            },
            4 => node.call("PATCH", &format!("/v1/providers/{a}"), Some(json!({"rate_limit": {"rpm": 600000 - round, "burst": 10000, "max_concurrency": 256}}))),
            _ => node.call("PATCH", &format!("/v1/providers/{a}"), Some(json!({"api_key": format!("sk-rotated-key-{round:08}")}))),
        };
        assert!(
            status == 200 || status == 201,
            "round {round}: {status} {body}"
        );
        if status == 201 {
            extra.push(body["id"].as_i64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Routing follows a change within 1 s: make b the top priority and see it serve.
    node.call(
        "PATCH",
        &format!("/v1/providers/{b}"),
        Some(json!({"enabled": true, "priority": 1000})),
    );
    let changed_at = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = publisher.await.unwrap();
    let mut completed = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed < sent {
        let event = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            events.next(),
        )
        .await
        .expect("every request ends")
        .unwrap();
        match &event.body {
            switchyard_core::EventBody::Completed { .. } => completed += 1,
            switchyard_core::EventBody::Failed { error, .. } => panic!(
                "request {} failed during reloads: {error:?}",
                event.request_id
            ),
            _ => {}
        }
    }
    assert!(sent > 100, "only {sent} requests were sent");
    // One more request after the change lands on b.
    let command: switchyard_core::Command = serde_json::from_value(json!({
        "request_id": "after-change", "tenant": "acme", "kind": "text.generate",
        "input": {"messages": [{"role": "user", "content": "x"}]},
    }))
    .unwrap();
    node.bus.publish_command(&command).await.unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        if let switchyard_core::EventBody::Completed { provider, .. } = &event.body
            && event.request_id.as_str() == "after-change"
        {
            assert_eq!(provider.name, "mock-b");
            break;
        }
    }
    assert!(
        changed_at.elapsed() < Duration::from_secs(5),
        "routing followed only after {:?}",
        changed_at.elapsed()
    );
    node.stop().await;
    db.cleanup().await;
}

/// `GET /v1/usage`: what a tenant's finished requests used, grouped by provider type,
/// model and kind, from the usage rows written with each terminal row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_reported_per_tenant_provider_model_and_kind() {
    use futures_util::StreamExt;
    use switchyard_runtime::bus::EventFilter;

    let db = TestDb::sqlite().await;
    let node = start_node(
        &db,
        json!([{"name": "mock-a", "provider": "mock", "priority": 100,
                "cost": {"per_image": {"default": 0.01}}}]),
    )
    .await;
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    let commands = [
        json!({"request_id": "u-t1", "tenant": "acme", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "hello"}]}}),
        json!({"request_id": "u-t2", "tenant": "acme", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "again"}]}}),
        json!({"request_id": "u-i1", "tenant": "acme", "kind": "image.generate",
               "input": {"prompt": "a fox", "n": 2, "size": "64x64"}}),
        json!({"request_id": "u-i2", "tenant": "acme", "kind": "image.generate",
               "input": {"prompt": "a hen", "n": 3, "size": "64x64"}}),
        json!({"request_id": "u-o1", "tenant": "other", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "hi"}]}}),
    ];
    for command in &commands {
        let command: switchyard_core::Command = serde_json::from_value(command.clone()).unwrap();
        node.bus.publish_command(&command).await.unwrap();
    }
    let mut done = 0;
    while done < commands.len() {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .unwrap()
            .unwrap();
        if event.is_terminal() {
            assert_eq!(event.event_type().as_str(), "completed", "{event:?}");
            done += 1;
        }
    }

    let (status, body) = node.call("GET", "/v1/usage?tenant=acme", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "acme");
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{body}");
    let image = groups
        .iter()
        .find(|g| g["kind"] == "image.generate")
        .unwrap();
    assert_eq!(image["provider"], "mock");
    assert_eq!(image["requests"], 2);
    assert_eq!(image["images"], 5);
    assert!(
        (image["cost_usd"].as_f64().unwrap() - 0.05).abs() < 1e-9,
        "{image}"
    );
    let text = groups
        .iter()
        .find(|g| g["kind"] == "text.generate")
        .unwrap();
    assert_eq!(text["requests"], 2);
    assert!(text["output_tokens"].as_i64().unwrap() > 0, "{text}");
    assert_eq!(body["total"]["requests"], 4);
    assert_eq!(body["total"]["images"], 5);

    // Another tenant sees only its own; a window before the requests sees nothing.
    let (_, other) = node.call("GET", "/v1/usage?tenant=other", None);
    assert_eq!(other["total"]["requests"], 1, "{other}");
    let (_, past) = node.call(
        "GET",
        "/v1/usage?tenant=acme&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
        None,
    );
    assert_eq!(past["groups"], json!([]), "{past}");
    assert_eq!(past["total"]["requests"], 0);

    // Bad input is a clear 400; no token, 401.
    for (path, says) in [
        ("/v1/usage", "tenant query parameter is required"),
        ("/v1/usage?tenant=a.b", "tenant"),
        (
            "/v1/usage?tenant=acme&from=yesterday",
            "from 'yesterday' is not an RFC 3339 time",
        ),
        (
            "/v1/usage?tenant=acme&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from must be before to",
        ),
    ] {
        let (status, body) = node.call("GET", path, None);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    assert_eq!(
        http(node.port, "GET", "/v1/usage?tenant=acme", None, None).0,
        401
    );
    node.stop().await;
}
