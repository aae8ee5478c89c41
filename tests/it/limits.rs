//! Per-tenant limits at intake and fair share (#16 §1): requests per minute and at
//! once, per tenant and per user; 429 with `Retry-After` on synchronous calls; bus
//! commands that wait their turn or fail with `rate_limited`; tenants in turn when a
//! process is saturated; and the 1/n share across replicas.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{Command, Event};
use switchyard_runtime::{
    Settings,
    bus::{Bus, EventFilter},
    settings::OverLimit,
    store::TenantLimits,
};

use crate::{
    reload::{Node, http, start_node_on, start_node_with},
    support::{NatsServer, TestDb, on_both_databases, raw_http, unique_suffix},
};

on_both_databases!(tenant_limits_are_stored_replaced_and_removed);

async fn tenant_limits_are_stored_replaced_and_removed(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.tenant_limits("acme").await.unwrap(), None);
    let limits = TenantLimits {
        rpm: Some(30),
        concurrency: Some(3),
        ..TenantLimits::default()
    };
    store.set_tenant_limits("acme", &limits).await.unwrap();
    assert_eq!(store.tenant_limits("acme").await.unwrap(), Some(limits));
    let replaced = TenantLimits {
        user_concurrency: Some(1),
        own_accounts: Some(switchyard_core::routing::OwnAccounts::Only),
        ..TenantLimits::default()
    };
    store.set_tenant_limits("acme", &replaced).await.unwrap();
    assert_eq!(store.tenant_limits("acme").await.unwrap(), Some(replaced));
    assert_eq!(store.tenant_limits("globex").await.unwrap(), None);
    assert!(store.delete_tenant_limits("acme").await.unwrap());
    assert!(!store.delete_tenant_limits("acme").await.unwrap());
    assert_eq!(store.tenant_limits("acme").await.unwrap(), None);
}

fn slow_mock(latency_ms: u64) -> Value {
    json!([{"name": "mock-a", "provider": "mock", "options": {"latency_ms": latency_ms},
            "rate_limit": {"rpm": 1_000_000, "burst": 10_000, "max_concurrency": 1000}}])
}

async fn node(db: &TestDb, latency_ms: u64, configure: impl FnOnce(&mut Settings)) -> Node {
    start_node_with(
        db,
        slow_mock(latency_ms),
        "memory://",
        "switchyard",
        configure,
    )
    .await
}

fn put_limits(node: &Node, tenant: &str, limits: Value) {
    let (status, body) = node.call("PUT", &format!("/v1/tenants/{tenant}/limits"), Some(limits));
    assert_eq!(status, 200, "{body}");
}

fn tenant_key(node: &Node, tenant: &str) -> String {
    let (status, made) = node.call("POST", &format!("/v1/tenants/{tenant}/keys"), None);
    assert_eq!(status, 201, "{made}");
    made["key"].as_str().unwrap().to_owned()
}

/// A chat call with its whole answer (head and body) as text.
fn chat(port: u16, key: &str) -> (u16, String) {
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    raw_http(
        port,
        "POST",
        "/v1/chat/completions",
        &[
            format!("Authorization: Bearer {key}"),
            "Content-Type: application/json".to_owned(),
        ],
        body.to_string().as_bytes(),
    )
}

/// `Retry-After` of an answer, in seconds.
fn retry_after(answer: &str) -> Option<u64> {
    answer.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())?
    })
}

fn body_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Limits are set, shown and removed through the admin API; a bad field is named, and
/// the defaults of `[tenants]` show where a tenant has none of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_sets_shows_and_removes_limits_and_names_a_bad_field() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 0, |s| s.tenants.rpm = Some(30)).await;
    let (status, shown) = node.call("GET", "/v1/tenants/acme/limits", None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["tenant"], "acme");
    assert_eq!(shown["own"]["rpm"], Value::Null, "{shown}");
    assert_eq!(shown["effective"]["rpm"], 30, "{shown}");
    assert_eq!(shown["effective"]["concurrency"], Value::Null, "{shown}");

    for (bad, named) in [
        (json!({"concurrency": 0}), "concurrency"),
        (json!({"rpm": -1}), "rpm"),
        (json!({"burst": 5}), "burst"),
    ] {
        let (status, body) = node.call("PUT", "/v1/tenants/acme/limits", Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{bad}: {body}");
    }
    let (status, _) = http(
        node.port,
        "PUT",
        "/v1/tenants/acme/limits",
        None,
        Some(&json!({"rpm": 1})),
    );
    assert_eq!(status, 401, "limits need the admin token");

    put_limits(&node, "acme", json!({"rpm": 5, "user_concurrency": 1}));
    let (_, shown) = node.call("GET", "/v1/tenants/acme/limits", None);
    assert_eq!(shown["own"]["rpm"], 5, "{shown}");
    assert_eq!(shown["effective"]["rpm"], 5, "{shown}");
    assert_eq!(shown["effective"]["user_concurrency"], 1, "{shown}");

    let (status, _) = node.call("DELETE", "/v1/tenants/acme/limits", None);
    assert_eq!(status, 204);
    let (status, _) = node.call("DELETE", "/v1/tenants/acme/limits", None);
    assert_eq!(status, 404, "nothing left to remove");
    let (_, shown) = node.call("GET", "/v1/tenants/acme/limits", None);
    assert_eq!(shown["effective"]["rpm"], 30, "the default again: {shown}");
    node.stop().await;
    db.cleanup().await;
}

/// OpenAI-compatible calls over a tenant's limits are answered 429 in OpenAI's error
/// shape with `Retry-After`: at once over its requests at once, and over its requests a
/// minute with the time until the next one is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_calls_over_a_tenants_limits_get_429_with_retry_after() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 400, |_| {}).await;
    let key = tenant_key(&node, "acme");
    put_limits(&node, "acme", json!({"concurrency": 2}));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (port, key) = (node.port, key.clone());
            tokio::task::spawn_blocking(move || chat(port, &key))
        })
        .collect();
    let mut statuses = HashMap::<u16, usize>::new();
    for call in calls {
        let (status, answer) = call.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        if status == 429 {
            let body = body_of(&answer);
            assert_eq!(body["error"]["code"], "rate_limited", "{answer}");
            assert_eq!(body["error"]["type"], "rate_limit_error", "{answer}");
            assert!(retry_after(&answer).is_some_and(|s| s >= 1), "{answer}");
        }
    }
    assert_eq!(statuses, HashMap::from([(200, 2), (429, 4)]));

    // Another tenant is not held back by acme's limits.
    let other = tenant_key(&node, "globex");
    assert_eq!(chat(node.port, &other).0, 200);

    put_limits(&node, "acme", json!({"rpm": 2}));
    assert_eq!(chat(node.port, &key).0, 200);
    assert_eq!(chat(node.port, &key).0, 200);
    let (status, answer) = chat(node.port, &key);
    assert_eq!(status, 429, "{answer}");
    let wait = retry_after(&answer).unwrap();
    assert!(
        (1..=30).contains(&wait),
        "2 a minute: the next in ≤ 30 s, not {wait}"
    );
    node.stop().await;
    db.cleanup().await;
}

fn text(tenant: &str, request_id: &str) -> Command {
    serde_json::from_value(json!({"request_id": request_id, "tenant": tenant,
        "kind": "text.generate",
        "input": {"messages": [{"role": "user", "content": "hi"}]}}))
    .unwrap()
}

/// The terminal events of `expected` requests on `events`, in the order they came,
/// with every event seen before the last of them.
async fn collect(
    events: &mut switchyard_runtime::bus::Events,
    expected: usize,
) -> (Vec<Value>, Vec<Value>) {
    let mut terminals = Vec::new();
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while terminals.len() < expected {
        let event: Event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expected} ended", terminals.len()))
            .unwrap();
        let value = serde_json::to_value(&event).unwrap();
        if event.is_terminal() {
            terminals.push(value.clone());
        }
        all.push(value);
    }
    (terminals, all)
}

async fn publish(bus: &Bus, commands: &[Command]) {
    for command in commands {
        bus.publish_command(command).await.unwrap();
    }
}

/// A process saturated by one tenant's backlog still starts another tenant's commands
/// in turn: the calm tenant's four commands end long before the flood's sixty do (in
/// arrival order they would wait behind all sixty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_starve_another_on_the_bus() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 100, |s| s.bus.concurrency = 4).await;
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    let flood: Vec<_> = (0..60).map(|i| text("flood", &format!("f{i}"))).collect();
    let calm: Vec<_> = (0..4).map(|i| text("calm", &format!("c{i}"))).collect();
    publish(&node.bus, &flood).await;
    publish(&node.bus, &calm).await;
    let (terminals, _) = collect(&mut events, 64).await;
    assert!(
        terminals.iter().all(|t| t["type"] == "completed"),
        "every command of both tenants completes: {terminals:?}"
    );
    let last_calm = terminals
        .iter()
        .rposition(|t| t["tenant"] == "calm")
        .unwrap();
    let flood_before = terminals[..last_calm]
        .iter()
        .filter(|t| t["tenant"] == "flood")
        .count();
    assert!(
        flood_before < 30,
        "calm's last command ended after {flood_before} of flood's 60"
    );
    node.stop().await;
    db.cleanup().await;
}

/// Over its limits a bus command waits for its tenant's turn (`over_limit = "wait"`):
/// with one request at once, no request of the tenant is accepted before the one
/// running has ended, and all of them complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_commands_over_a_tenants_concurrency_wait_their_turn() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 50, |_| {}).await;
    put_limits(&node, "acme", json!({"concurrency": 1}));
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    let commands: Vec<_> = (0..5).map(|i| text("acme", &format!("w{i}"))).collect();
    publish(&node.bus, &commands).await;
    let (terminals, all) = collect(&mut events, 5).await;
    assert!(
        terminals.iter().all(|t| t["type"] == "completed"),
        "{terminals:?}"
    );
    let mut running: Option<String> = None;
    for event in &all {
        let id = event["request_id"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "accepted" => {
                assert_eq!(running, None, "{id} accepted while another ran: {all:?}");
                running = Some(id);
            }
            "completed" | "failed" => {
                assert_eq!(running.as_deref(), Some(id.as_str()));
                running = None;
            }
            _ => {}
        }
    }
    node.stop().await;
    db.cleanup().await;
}

/// With `over_limit = "fail"`, a bus command over its tenant's requests a minute fails
/// at once with `rate_limited` (retryable): one `failed` event each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_commands_over_a_tenants_rate_fail_with_rate_limited_when_set_to() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 0, |s| s.tenants.over_limit = OverLimit::Fail).await;
    put_limits(&node, "acme", json!({"rpm": 2}));
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    let commands: Vec<_> = (0..5).map(|i| text("acme", &format!("r{i}"))).collect();
    publish(&node.bus, &commands).await;
    let (terminals, _) = collect(&mut events, 5).await;
    let completed = terminals
        .iter()
        .filter(|t| t["type"] == "completed")
        .count();
    let limited: Vec<_> = terminals
        .iter()
        .filter(|t| t["error"]["code"] == "rate_limited")
        .collect();
    assert_eq!((completed, limited.len()), (2, 3), "{terminals:?}");
    assert!(limited.iter().all(|t| t["error"]["retryable"] == true));
    node.stop().await;
    db.cleanup().await;
}

/// Two gateways on one NATS cluster share a tenant's limit: with both live, each takes
/// half of it (as provider accounts' limits are shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_a_tenants_concurrency() {
    let nats = NatsServer::start();
    let db = TestDb::sqlite().await;
    let prefix = format!("limits{}", unique_suffix());
    let nodes = [
        start_node_on(&db, slow_mock(500), &nats.url(), &prefix).await,
        start_node_on(&db, slow_mock(500), &nats.url(), &prefix).await,
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        while node.call("GET", "/v1/providers/status", None).1["replicas"] != 2 {
            assert!(
                Instant::now() < deadline,
                "the replicas never saw each other"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let key = tenant_key(&nodes[0], "acme");
    put_limits(&nodes[0], "acme", json!({"concurrency": 4}));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (port, key) = (nodes[0].port, key.clone());
            tokio::task::spawn_blocking(move || chat(port, &key).0)
        })
        .collect();
    let mut answered = 0;
    for call in calls {
        if call.await.unwrap() == 200 {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 2,
        "each of two replicas takes 2 of the tenant's 4"
    );
    for node in nodes {
        node.stop().await;
    }
    db.cleanup().await;
}

/// A tenant over its limits that already has its share of the intake window waiting
/// has further commands fail at once with `rate_limited` (nothing goes round the bus):
/// every command ends, those that waited complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_limits_with_its_share_waiting_is_refused_at_once() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 100, |s| s.bus.intake_window = 4).await;
    put_limits(&node, "acme", json!({"concurrency": 1}));
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    let commands: Vec<_> = (0..12).map(|i| text("acme", &format!("s{i}"))).collect();
    publish(&node.bus, &commands).await;
    let (terminals, _) = collect(&mut events, 12).await;
    let refused: Vec<_> = terminals
        .iter()
        .filter(|t| t["error"]["code"] == "rate_limited")
        .collect();
    let completed = terminals
        .iter()
        .filter(|t| t["type"] == "completed")
        .count();
    assert_eq!(completed + refused.len(), 12, "{terminals:?}");
    assert!(
        completed >= 2,
        "the running one and those waiting complete: {terminals:?}"
    );
    assert!(
        refused.iter().any(|t| t["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already waiting")),
        "{terminals:?}"
    );
    node.stop().await;
    db.cleanup().await;
}

fn text_of(tenant: &str, user: &str, request_id: &str) -> Command {
    let mut command = text(tenant, request_id);
    command.user = Some(user.to_owned());
    command
}

/// A user at its own limit holds up only itself: with one request at once per user,
/// bob's backlog waits in turn while carol, of the same tenant, starts at once (her
/// command ends before bob's third, not after his fifth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_its_limit_does_not_hold_up_the_rest_of_its_tenant() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 200, |_| {}).await;
    put_limits(&node, "acme", json!({"user_concurrency": 1}));
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    let bob: Vec<_> = (0..5)
        .map(|i| text_of("acme", "bob", &format!("b{i}")))
        .collect();
    publish(&node.bus, &bob).await;
    publish(&node.bus, &[text_of("acme", "carol", "c0")]).await;
    let (terminals, _) = collect(&mut events, 6).await;
    assert!(
        terminals.iter().all(|t| t["type"] == "completed"),
        "{terminals:?}"
    );
    let order: Vec<&str> = terminals
        .iter()
        .map(|t| t["request_id"].as_str().unwrap())
        .collect();
    let carol = order.iter().position(|id| *id == "c0").unwrap();
    assert!(carol < 3, "carol ended after {carol} of bob's: {order:?}");
    node.stop().await;
    db.cleanup().await;
}
