//! Webhooks (#17 §3): a tenant registers an endpoint; its jobs' terminal events are
//! POSTed to it signed in the Standard Webhooks style, retried after failures, and a
//! receiver that fails the first attempts of every event still sees exactly one
//! successful delivery per event, each attempt with the same `webhook-id`. Over the
//! in-process bus and over NATS (a durable consumer). The delivery log shows it all;
//! internal addresses, bad fields and other tenants are refused.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};
use switchyard_runtime::webhooks::sign;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::method};

use crate::{
    reload::{Node, http, start_node_with},
    support::{NatsServer, TestDb, unique_suffix},
};

/// Fails the first `fail_first` attempts of each event with a 503, then answers 200;
/// checks every signature and counts per `webhook-id`.
#[derive(Clone)]
struct Receiver {
    key: Vec<u8>,
    fail_first: usize,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    bad: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Default, Clone)]
struct Seen {
    attempts: usize,
    successes: usize,
    body: Value,
}

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let id = header("webhook-id");
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
        let expected = sign::sign(&self.key, &id, timestamp, &request.body);
        let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() < 60;
        if header("webhook-signature") != expected || !fresh {
            self.bad.lock().unwrap().push(id);
            return ResponseTemplate::new(401);
        }
        let mut seen = self.seen.lock().unwrap();
        let entry = seen.entry(id).or_default();
        entry.attempts += 1;
        entry.body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if entry.attempts <= self.fail_first {
            return ResponseTemplate::new(503);
        }
        entry.successes += 1;
        ResponseTemplate::new(200)
    }
}

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([42u8; 32])
    )
}

async fn receiver(fail_first: usize) -> (MockServer, Receiver) {
    let server = MockServer::start().await;
    let receiver = Receiver {
        key: sign::key_of(&secret()).unwrap(),
        fail_first,
        seen: Arc::default(),
        bad: Arc::default(),
    };
    Mock::given(method("POST"))
        .respond_with(receiver.clone())
        .mount(&server)
        .await;
    (server, receiver)
}

async fn node(db: &TestDb, bus: &str, prefix: &str) -> Node {
    start_node_with(
        db,
        json!([{"name": "mock-a", "provider": "mock"}]),
        bus,
        prefix,
        |s| {
            // The receiver listens on this machine: allowed for tenants' URLs here.
            s.outbound.tenant_allow = vec!["127.0.0.1".to_owned()];
            s.webhooks.first_retry_ms = 50;
            s.webhooks.poll_ms = 50;
        },
    )
    .await
}

fn submit(node: &Node, tenant: &str) -> i64 {
    let command = json!({"tenant": tenant, "kind": "image.generate",
                         "input": {"prompt": "a lighthouse", "size": "64x64"}});
    let (status, posted) = node.call("POST", "/v1/jobs", Some(command));
    assert_eq!(status, 202, "{posted}");
    posted["id"].as_i64().unwrap()
}

async fn each_event_is_delivered_once_after_failures(bus: &str, prefix: &str) {
    let db = TestDb::sqlite().await;
    let node = node(&db, bus, prefix).await;
    let (server, receiver) = receiver(2).await;
    let (status, created) = node.call(
        "POST",
        "/v1/tenants/acme/webhooks",
        Some(json!({"url": format!("{}/hook", server.uri()), "secret": secret()})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret"], secret());
    assert_eq!(created["events"], json!(["completed", "failed"]));
    let hook = created["id"].as_i64().unwrap();
    // Another tenant's jobs are not acme's to hear about.
    submit(&node, "other");
    let jobs: Vec<i64> = (0..3).map(|_| submit(&node, "acme")).collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver
        .seen
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.successes > 0)
        .count()
        < jobs.len()
    {
        assert!(
            Instant::now() < deadline,
            "not every event was delivered: {:?}",
            receiver.seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything sent twice would come within a few retry periods.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.bad.lock().unwrap().is_empty(), "bad signatures");
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), jobs.len(), "one event id per job: {seen:?}");
    for (id, s) in &seen {
        assert_eq!((s.attempts, s.successes), (3, 1), "{id}: {s:?}");
        assert_eq!(s.body["type"], "completed", "{id}");
        assert_eq!(s.body["tenant"], "acme", "{id}");
        assert!(
            id.starts_with("acme:") && id.contains(":completed:"),
            "{id}"
        );
    }

    let (status, log) = node.call(
        "GET",
        &format!("/v1/tenants/acme/webhooks/{hook}/deliveries"),
        None,
    );
    assert_eq!(status, 200, "{log}");
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), jobs.len(), "{log}");
    for item in items {
        assert_eq!(item["status"], "delivered", "{item}");
        assert_eq!(item["attempts"], 3, "{item}");
        assert_eq!(item["last_status"], 200, "{item}");
        assert!(seen.contains_key(item["event_id"].as_str().unwrap()));
    }
    node.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_delivered_once_after_failures_in_process() {
    each_event_is_delivered_once_after_failures("memory://", "switchyard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_delivered_once_after_failures_over_nats() {
    let nats = NatsServer::start();
    let prefix = format!("wh{}", unique_suffix());
    each_event_is_delivered_once_after_failures(&nats.url(), &prefix).await;
}

/// Registration refuses internal addresses, bad fields and other tenants' keys; the
/// secret is shown once; a disabled endpoint's queued deliveries are given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_checked_and_tenants_see_only_their_own() {
    let db = TestDb::sqlite().await;
    let node = node(&db, "memory://", "switchyard").await;
    for (bad, named) in [
        (json!({"url": "http://169.254.169.254/latest"}), "url"),
        (json!({"url": "http://10.1.2.3/hook"}), "url"),
        (json!({"url": "ftp://example.com/hook"}), "url"),
        (json!({"url": "http://u:p@127.0.0.1/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "http://127.0.0.1/h", "events": ["chunk"]}),
            "events",
        ),
        (json!({"url": "http://127.0.0.1/h", "events": []}), "events"),
        (
            json!({"url": "http://127.0.0.1/h", "secret": "hunter2"}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1/h", "retries": 3}),
            "retries",
        ),
    ] {
        let (status, body) = node.call("POST", "/v1/tenants/acme/webhooks", Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{bad}: {body}");
        assert!(!message.contains("hunter2"), "a secret echoed: {body}");
    }

    let (status, created) = node.call(
        "POST",
        "/v1/tenants/acme/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["progress", "failed", "failed"]})),
    );
    assert_eq!(status, 201, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["events"], json!(["progress", "failed"]));
    let id = created["id"].as_i64().unwrap();
    let (_, listed) = node.call("GET", "/v1/tenants/acme/webhooks", None);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert!(listed["items"][0].get("secret").is_none(), "{listed}");

    // A key of another tenant: 403; acme's id under another tenant: 404.
    let (status, key) = node.call("POST", "/v1/tenants/other/keys", None);
    assert_eq!(status, 201, "{key}");
    let other_key = key["key"].as_str().unwrap().to_owned();
    let (status, _) = http(
        node.port,
        "GET",
        "/v1/tenants/acme/webhooks",
        Some(&other_key),
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = http(
        node.port,
        "GET",
        &format!("/v1/tenants/other/webhooks/{id}/deliveries"),
        Some(&other_key),
        None,
    );
    assert_eq!(status, 404);

    let (status, off) = node.call(
        "PATCH",
        &format!("/v1/tenants/acme/webhooks/{id}"),
        Some(json!({"enabled": false})),
    );
    assert_eq!(
        (status, off["enabled"].clone()),
        (200, json!(false)),
        "{off}"
    );
    let (status, _) = node.call("DELETE", &format!("/v1/tenants/acme/webhooks/{id}"), None);
    assert_eq!(status, 204);
    let (status, _) = node.call("DELETE", &format!("/v1/tenants/acme/webhooks/{id}"), None);
    assert_eq!(status, 404);
    node.stop().await;
    db.cleanup().await;
}
