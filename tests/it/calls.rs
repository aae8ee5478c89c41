//! Synchronous calls (#15): an OpenAI-compatible call runs on the process that
//! received it, with no command on the bus, and its record — the task row, its usage
//! and the events bus subscribers see — follows behind the answer.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{Event, RequestId, Tenant};
use switchyard_runtime::bus::EventFilter;

use crate::{
    reload::{http, start_node, start_node_on},
    support::{NatsServer, TestDb},
};

fn chat(port: u16, key: &str) -> (u16, Value) {
    let ask = json!({"messages": [{"role": "user", "content": "hello"}]});
    http(port, "POST", "/v1/chat/completions", Some(key), Some(&ask))
}

/// The request id behind a chat answer (`chatcmpl-<request id>`).
fn request_of(answer: &Value) -> RequestId {
    let id = answer["id"].as_str().unwrap();
    RequestId::new(id.strip_prefix("chatcmpl-").unwrap()).unwrap()
}

/// Over NATS: no command is published for the call, yet subscribers get its whole
/// event sequence (`accepted` with the row's id at `seq` 1, through `completed`), and
/// its task row and usage are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_runs_where_it_arrives_and_its_record_follows() {
    let nats = NatsServer::start();
    let db = TestDb::sqlite().await;
    let prefix = format!("calls{}", crate::support::unique_suffix());
    let node = start_node_on(
        &db,
        json!([{"name": "mock-a", "provider": "mock"}]),
        &nats.url(),
        &prefix,
    )
    .await;
    let mut commands = node
        .bus
        .subscribe_core(&format!("{prefix}.cmd.>"))
        .await
        .unwrap();
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let (status, answer) = chat(node.port, &key);
    assert_eq!(status, 200, "{answer}");

    let mut events = node
        .bus
        .events(EventFilter::Request(
            Tenant::new("acme").unwrap(),
            request_of(&answer),
        ))
        .await
        .unwrap();
    let mut seen: Vec<Event> = Vec::new();
    while !seen.iter().any(Event::is_terminal) {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the call's events never reached the bus")
            .unwrap();
        seen.push(event);
    }
    let kinds: Vec<(&str, u64)> = seen
        .iter()
        .map(|e| (e.event_type().as_str(), e.seq))
        .collect();
    assert_eq!(kinds, [("accepted", 1), ("started", 2), ("completed", 3)]);
    let accepted = serde_json::to_value(&seen[0]).unwrap();
    let task_id = accepted["task_id"].as_i64().unwrap();
    let (status, job) = node.call("GET", &format!("/v1/jobs/{task_id}"), None);
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "done", "{job}");
    let (_, usage) = node.call("GET", "/v1/usage?tenant=acme", None);
    assert_eq!(usage["total"]["requests"], 1, "{usage}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), commands.next())
            .await
            .is_err(),
        "a synchronous call published a command"
    );
    node.stop().await;
    db.cleanup().await;
}

/// Calls answered while the database fails their records' writes (the tasks table is
/// away), then the database back and the server stopped at once: it writes every
/// answered call's record before it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_writes_the_records_of_answered_calls() {
    let db = TestDb::sqlite().await;
    let node = start_node(
        &db,
        json!([{"name": "mock-a", "provider": "mock",
                "rate_limit": {"rpm": 600_000, "burst": 10_000, "max_concurrency": 1024}}]),
    )
    .await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let port = node.port;
    let (status, answer) = chat(port, &key);
    assert_eq!(status, 200, "{answer}");
    db.raw_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let key = key.clone();
            tokio::task::spawn_blocking(move || chat(port, &key))
        })
        .collect();
    let mut answered = 1;
    for call in calls {
        let (status, answer) = call.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answered += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.raw_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await;
    node.stop().await;
    assert_eq!(
        db.usage_requests("acme").await,
        answered,
        "every answered call is recorded"
    );
    db.cleanup().await;
}
