//! Multimodal chat (#18 §4) end to end through the HTTP API, on both databases: a
//! message's content parts are stored and reach the provider; routing picks only
//! instances whose `supports` covers what the request carries and explains the others
//! as `capability_mismatch`; a request nothing supports fails `no_provider` naming
//! what it carries.

use serde_json::{Value, json};

use crate::{
    jobs::{read_all, sse_events, wait_for_status},
    reload::{Node, start_node},
    support::TestDb,
};

fn seeds() -> Value {
    json!([
        {"name": "mock-text", "provider": "mock", "priority": 100, "kinds": ["text.generate"]},
        {"name": "mock-vision", "provider": "mock", "priority": 1, "kinds": ["text.generate"],
         "supports": {"images": true, "files": true}},
    ])
}

fn chat(content: Value) -> Value {
    json!({"tenant": "acme", "kind": "text.generate",
           "input": {"messages": [{"role": "user", "content": content}]}})
}

/// Posts a job, waits for `status`, and answers its terminal event.
async fn run(node: &Node, command: Value, status: &str) -> Value {
    let (code, posted) = node.call("POST", "/v1/jobs", Some(command));
    assert_eq!(code, 202, "{posted}");
    let id = posted["id"].as_i64().unwrap();
    wait_for_status(node, id, status).await;
    let port = node.port;
    let (code, raw) =
        tokio::task::spawn_blocking(move || read_all(port, &format!("/v1/jobs/{id}/events")))
            .await
            .unwrap();
    assert_eq!(code, 200);
    let events = sse_events(&raw);
    events
        .last()
        .map(|e| e.2.clone())
        .expect("a terminal event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_what_a_chat_carries_on_sqlite() {
    let db = TestDb::sqlite().await;
    routing_follows_what_a_chat_carries(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_what_a_chat_carries_on_postgres() {
    let db = TestDb::postgres().await;
    routing_follows_what_a_chat_carries(&db).await;
    db.cleanup().await;
}

async fn routing_follows_what_a_chat_carries(db: &TestDb) {
    let node = start_node(db, seeds()).await;

    // Text only: the first by priority.
    let text = run(&node, chat(json!("hello")), "done").await;
    assert_eq!(text["provider"]["name"], "mock-text", "{text}");

    // An image and a file: only the instance that supports both.
    let parts = json!([
        {"type": "text", "text": "what is on it?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/kite.png"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
    ]);
    let seen = run(&node, chat(parts.clone()), "done").await;
    assert_eq!(seen["provider"]["name"], "mock-vision", "{seen}");
    let skipped = &seen["routing"]["skipped"];
    assert_eq!(skipped.as_array().map(Vec::len), Some(1), "{seen}");
    assert_eq!(skipped[0]["reason"], "capability_mismatch", "{seen}");
    // The parts are kept as sent (the job's command is what any runtime resumes).
    let rows = db
        .raw_strings("SELECT CAST(command AS TEXT) FROM tasks WHERE prompt = 'what is on it?'")
        .await;
    let stored: Value = serde_json::from_str(&rows[0]).unwrap();
    assert_eq!(stored["input"]["messages"][0]["content"], parts);

    // Audio: nothing supports it.
    let audio =
        json!([{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]);
    let failed = run(&node, chat(audio), "failed").await;
    assert_eq!(failed["error"]["code"], "no_provider", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("audio"), "{message}");

    // A bad part is a 400 naming it.
    let bad = chat(json!([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]));
    let (code, answer) = node.call("POST", "/v1/jobs", Some(bad));
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("input.messages[0].content[0].image_url.url"),
        "{answer}"
    );
    node.stop().await;
}
