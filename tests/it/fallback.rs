//! Fallback chains (#18 §5) through jobs, on both databases: `route.models` tries
//! each model's instances in turn and moves on only after a retryable failure; a
//! config's `fallback_models` chains after the model a request names; and
//! `route.fallback_to_cache` answers an earlier identical result, marked `cached` and
//! `stale`, when every provider has failed.

use serde_json::{Value, json};

use crate::{
    jobs::run_job,
    reload::{Node, start_node_with},
    support::TestDb,
};

fn text(route: Value) -> Value {
    json!({"tenant": "acme", "kind": "text.generate", "route": route,
           "input": {"messages": [{"role": "user", "content": "hello there"}]}})
}

fn config_id(node: &Node, name: &str) -> i64 {
    let (_, list) = node.call("GET", "/v1/providers?limit=100", None);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_i64())
        .unwrap_or_else(|| panic!("no config {name}: {list}"))
}

async fn models_are_tried_in_turn_and_the_cache_answers_last(db: &TestDb) {
    let node = start_node_with(
        db,
        json!([
            {"name": "big", "provider": "mock", "model": "m-big", "priority": 10,
             "options": {"failure_rate": 1.0, "fail_with": "provider_unavailable"}},
            {"name": "strict", "provider": "mock", "model": "m-strict", "priority": 10,
             "options": {"failure_rate": 1.0, "fail_with": "content_filtered"}},
            {"name": "small", "provider": "mock", "model": "m-small"}
        ]),
        "memory://",
        "switchyard",
        // Text answers answer `cache: true` requests for 1 s here.
        |settings| settings.cache.text_ttl_ms = 1_000,
    )
    .await;
    // Bad chains are named.
    let (status, refused) = node.call(
        "POST",
        "/v1/jobs",
        Some(text(json!({"model": "m-big", "models": ["m-small"]}))),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("route.models"), "{refused}");

    // big fails retryably: the chain moves on to small.
    let job = run_job(&node, text(json!({"models": ["m-big", "m-small"]}))).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["result"]["provider"]["name"], "small", "{job}");
    assert_eq!(job["attempts"], 2, "big, then small: {job}");
    // A failure that is not retryable ends the chain.
    let job = run_job(&node, text(json!({"models": ["m-strict", "m-small"]}))).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "content_filtered", "{job}");

    // One model, no chain: big's failure is the answer, until big's config chains on.
    let job = run_job(&node, text(json!({"model": "m-big"}))).await;
    assert_eq!(job["status"], "failed", "{job}");
    let big = config_id(&node, "big");
    let (status, patched) = node.call(
        "PATCH",
        &format!("/v1/providers/{big}"),
        Some(json!({"fallback_models": ["m-small"]})),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["fallback_models"], json!(["m-small"]));
    let (status, refused) = node.call(
        "PATCH",
        &format!("/v1/providers/{big}"),
        Some(json!({"fallback_models": ["m-big"]})),
    );
    assert_eq!(status, 400, "its own model: {refused}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // The reload that carries the edit is asynchronous.
        let job = run_job(&node, text(json!({"model": "m-big"}))).await;
        if job["status"] == "done" {
            assert_eq!(job["result"]["provider"]["name"], "small", "{job}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never chained: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // fallback_to_cache: a fresh answer first, from small.
    let asked = text(json!({"model": "m-small", "fallback_to_cache": true}));
    let fresh = run_job(&node, asked.clone()).await;
    assert_eq!(fresh["status"], "done", "{fresh}");
    assert_eq!(fresh["result"]["cached"], false, "{fresh}");
    assert!(fresh["result"].get("stale").is_none(), "{fresh}");
    // small goes away: the same request gets that answer, marked stale.
    let small = config_id(&node, "small");
    let (status, _) = node.call(
        "PATCH",
        &format!("/v1/providers/{small}"),
        Some(json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let stale = loop {
        let job = run_job(&node, asked.clone()).await;
        if job["result"]["stale"] == true {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "never stale: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(stale["status"], "done", "{stale}");
    assert_eq!(stale["result"]["cached"], true, "{stale}");
    assert_eq!(
        stale["result"]["output"]["text"], fresh["result"]["output"]["text"],
        "{stale}"
    );
    // A stale answer is no cache entry of its own: once the provider's answer is past
    // the text lifetime, a `cache: true` request finds nothing (and fails, small
    // being off), though a stale answer was given a moment ago.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again = run_job(&node, asked.clone()).await;
    assert_eq!(again["result"]["stale"], true, "{again}");
    let mut cached = text(json!({"model": "m-small"}));
    cached["cache"] = json!(true);
    let job = run_job(&node, cached).await;
    assert_eq!(
        job["status"], "failed",
        "a stale answer came back fresh: {job}"
    );
    // Nothing earlier to fall back to: the failure stands; without the flag too.
    let mut other = text(json!({"model": "m-small", "fallback_to_cache": true}));
    other["input"]["messages"][0]["content"] = json!("something new");
    let job = run_job(&node, other).await;
    assert_eq!(job["status"], "failed", "{job}");
    let job = run_job(&node, text(json!({"model": "m-small"}))).await;
    assert_eq!(job["status"], "failed", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_tried_in_turn_and_the_cache_answers_last_on_sqlite() {
    let db = TestDb::sqlite().await;
    models_are_tried_in_turn_and_the_cache_answers_last(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_tried_in_turn_and_the_cache_answers_last_on_postgres() {
    let db = TestDb::postgres().await;
    models_are_tried_in_turn_and_the_cache_answers_last(&db).await;
    db.cleanup().await;
}
