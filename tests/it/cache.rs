//! The answer cache (#18 §6) on a real `serve`: identical `cache: true` requests in
//! flight at once run once (single flight), the others get that answer; each kind's
//! lifetime comes from `[cache]`; streamed or not, the same request.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    jobs::run_job,
    reload::{Node, start_node_with},
    support::TestDb,
};

async fn node(db: &TestDb) -> Node {
    start_node_with(
        db,
        // Slow enough that 50 requests overlap.
        json!([{"name": "slow", "provider": "mock", "options": {"latency_ms": 500}}]),
        "memory://",
        "switchyard",
        |settings| settings.cache.text_ttl_ms = 1_000,
    )
    .await
}

fn text(content: &str, stream: bool) -> Value {
    json!({"tenant": "acme", "kind": "text.generate", "cache": true,
           "input": {"messages": [{"role": "user", "content": content}], "stream": stream}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_in_flight_run_once_and_lifetimes_are_per_kind() {
    let db = TestDb::sqlite().await;
    let node = node(&db).await;
    // 50 identical requests at once: one provider call, 49 answers from it.
    let posted: Vec<i64> = (0..50)
        .map(|_| {
            let (status, job) = node.call("POST", "/v1/jobs", Some(text("all at once", false)));
            assert_eq!(status, 202, "{job}");
            job["id"].as_i64().unwrap()
        })
        .collect();
    let mut fresh = 0;
    let mut answers = Vec::new();
    for id in posted {
        let job = crate::jobs::wait_for_status(&node, id, "done").await;
        if job["result"]["cached"] == false {
            fresh += 1;
        }
        answers.push(job["result"]["output"]["text"].clone());
    }
    assert_eq!(fresh, 1, "provider calls for 50 identical requests");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let (_, usage) = node.call("GET", "/v1/usage?tenant=acme", None);
    assert_eq!(usage["total"]["requests"], 1, "{usage}");
    let (_, metrics) = crate::support::raw_http(node.port, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("outcome=\"coalesced\""),
        "coalesced requests are counted: {metrics}"
    );

    // Streamed or not: the same request.
    let streamed = run_job(&node, text("all at once", true)).await;
    assert_eq!(streamed["result"]["cached"], true, "{streamed}");
    // Text answers live 1 s here (`cache.text_ttl_ms`), in memory and in the database.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let later = run_job(&node, text("all at once", false)).await;
    assert_eq!(
        later["result"]["cached"], false,
        "an expired answer was used: {later}"
    );
    // Images keep the default day.
    let image = json!({"tenant": "acme", "kind": "image.generate", "cache": true,
                       "input": {"prompt": "a fox", "size": "16x16"}});
    assert_eq!(
        run_job(&node, image.clone()).await["result"]["cached"],
        false
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(run_job(&node, image).await["result"]["cached"], true);
    db.cleanup().await;
}
