//! Priority at intake (#16 §2): PROTOCOL's `priority` (1 urgent … 10 background) orders
//! the commands a process has pulled but not started, on memory:// and on JetStream, so
//! an urgent command published behind a backlog starts at the next free slot.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use switchyard_core::{Command, Event};
use switchyard_runtime::bus::EventFilter;

use crate::{
    reload::{Node, start_node_with},
    support::{NatsServer, TestDb, unique_suffix},
};

fn command(request_id: &str, priority: i64) -> Command {
    serde_json::from_value(json!({"request_id": request_id, "tenant": "acme",
        "kind": "text.generate", "priority": priority,
        "input": {"messages": [{"role": "user", "content": "hi"}]}}))
    .unwrap()
}

/// Publishes 200 background commands and then one urgent one to a process with 4
/// slots; returns how many background commands ended after the urgent one was
/// published and before it ended.
async fn backgrounds_before_the_urgent_one(node: &Node) -> usize {
    let mut events = node.bus.events(EventFilter::All).await.unwrap();
    for i in 0..200 {
        node.bus
            .publish_command(&command(&format!("bg{i}"), 10))
            .await
            .unwrap();
    }
    // What ended while the backlog was still being published (a slow machine
    // publishes slowly) says nothing of the order: only what ended after the urgent
    // command was published counts.
    let published = chrono::Utc::now();
    node.bus
        .publish_command(&command("urgent", 1))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = 0;
    loop {
        let event: Event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .expect("the urgent command never ended")
            .unwrap();
        if !event.is_terminal() {
            continue;
        }
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "completed", "{value}");
        if value["request_id"] == "urgent" {
            return before;
        }
        if event.time >= published {
            before += 1;
        }
    }
}

fn slow_mock() -> serde_json::Value {
    json!([{"name": "mock-a", "provider": "mock", "options": {"latency_ms": 50},
            "rate_limit": {"rpm": 1_000_000, "burst": 10_000, "max_concurrency": 1000}}])
}

/// On `bus_url` (with `prefix`): a process with 4 slots lets the urgent command
/// overtake nearly all of 200 background ones.
async fn overtakes_on(bus_url: &str, prefix: &str) {
    let db = TestDb::sqlite().await;
    let node = start_node_with(&db, slow_mock(), bus_url, prefix, |s| {
        s.bus.concurrency = 4;
    })
    .await;
    let before = backgrounds_before_the_urgent_one(&node).await;
    assert!(
        before < 20,
        "{before} of 200 background commands ended first"
    );
    node.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_command_overtakes_a_background_backlog_on_memory() {
    overtakes_on("memory://", "switchyard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_command_overtakes_a_background_backlog_on_jetstream() {
    let nats = NatsServer::start();
    overtakes_on(&nats.url(), &format!("prio{}", unique_suffix())).await;
}
