//! Jobs over HTTP (PROTOCOL.md §4): `POST /v1/jobs`, `GET /v1/jobs/{id}` and its
//! server-sent events, on a real `serve` runtime (memory bus, SQLite, `mock`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{RequestId, Tenant};
use switchyard_runtime::{bus::EventFilter, store::NewTask};

use crate::{
    reload::{Node, TOKEN, http, start_node},
    support::{TestDb, raw_http},
};

/// Reads `GET path` with the admin token to its end (the server closes an event
/// stream after the terminal event): the status and the raw response.
pub(crate) fn read_all(port: u16, path: &str) -> (u16, String) {
    raw_http(
        port,
        "GET",
        path,
        &[format!("Authorization: Bearer {TOKEN}")],
        b"",
    )
}

/// The `(event:, id:, data:)` of each server-sent event in a raw body.
pub(crate) fn sse_events(raw: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let (mut kind, mut id) = (String::new(), String::new());
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            kind = v.to_owned();
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            out.push((kind.clone(), id.clone(), serde_json::from_str(v).unwrap()));
        }
    }
    out
}

pub(crate) async fn wait_for_status(node: &Node, id: i64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, job) = node.call("GET", &format!("/v1/jobs/{id}"), None);
        assert_eq!(code, 200, "{job}");
        if job["status"] == status {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} not {status}: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seeds() -> Value {
    json!([
        {"name": "mock-slow", "provider": "mock", "priority": 100,
         "options": {"latency_ms": 400}, "cost": {"per_image": {"default": 0.02}}},
        {"name": "mock-broken", "provider": "mock", "priority": 1,
         "options": {"failure_rate": 1.0, "fail_with": "content_filtered"}},
    ])
}

/// A job is posted, polled from `queued`/`processing` to `done`, and its events stream
/// as SSE in order — live while it runs, replayed once it finished; posting its
/// request id again answers the same job and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_posted_polled_and_streamed() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, seeds()).await;
    let command = json!({"tenant": "acme", "kind": "image.generate",
                         "input": {"prompt": "a lighthouse", "size": "64x64", "n": 2}});
    assert_eq!(
        http(node.port, "POST", "/v1/jobs", None, Some(&command)).0,
        401
    );

    let (status, posted) = node.call("POST", "/v1/jobs", Some(command.clone()));
    assert_eq!(status, 202, "{posted}");
    assert_eq!(posted["status"], "queued");
    assert_eq!(posted["tenant"], "acme");
    let request_id = posted["request_id"].as_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 26, "a generated request id: {request_id}");
    let id = posted["id"].as_i64().unwrap();

    // Live: the stream is opened while the job runs and ends after its terminal event.
    let port = node.port;
    let live =
        tokio::task::spawn_blocking(move || read_all(port, &format!("/v1/jobs/{id}/events")));
    let (_, early) = node.call("GET", &format!("/v1/jobs/{id}"), None);
    assert!(
        early["status"] == "queued" || early["status"] == "processing",
        "{early}"
    );
    assert_eq!(early["result"], Value::Null);

    let job = wait_for_status(&node, id, "done").await;
    assert_eq!(job["request_id"], request_id.as_str());
    assert_eq!(job["kind"], "image.generate");
    assert_eq!(job["error"], Value::Null);
    let images = job["result"]["output"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{job}");
    assert_eq!(job["result"]["usage"]["images"], 2);
    assert_eq!(job["result"]["provider"]["name"], "mock-slow");
    assert!(job["completed_at"].is_string());
    let url = images[0]["url"].as_str().unwrap();
    let path = &url[url.find("/v1/artifacts/").unwrap()..];
    assert_eq!(http(node.port, "GET", path, None, None).0, 200);

    let (status, raw) = live.await.unwrap();
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("text/event-stream"), "{raw}");
    let live_events = sse_events(&raw);
    let kinds: Vec<&str> = live_events.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["accepted", "started", "completed"], "{raw}");
    for (n, (kind, seq, data)) in live_events.iter().enumerate() {
        assert_eq!(seq, &(n + 1).to_string());
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["request_id"], request_id.as_str());
    }
    assert_eq!(live_events[0].2["task_id"], id);

    // Replayed: the same events once it finished.
    let (status, raw) =
        tokio::task::spawn_blocking(move || read_all(port, &format!("/v1/jobs/{id}/events")))
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sse_events(&raw), live_events);

    // The same request id again: the same job, finished, and no second run.
    let mut again = command.clone();
    again["request_id"] = json!(request_id);
    let (status, same) = node.call("POST", "/v1/jobs", Some(again));
    assert_eq!(status, 200, "{same}");
    assert_eq!(
        (same["id"].as_i64(), &same["status"]),
        (Some(id), &json!("done"))
    );
    let mut events = node
        .bus
        .events(EventFilter::Request(
            Tenant::new("acme").unwrap(),
            RequestId::new(request_id.clone()).unwrap(),
        ))
        .await
        .unwrap();
    let mut terminals = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(700), events.next()).await
    {
        terminals += usize::from(event.is_terminal());
    }
    assert_eq!(terminals, 1, "one terminal event per request");

    assert_eq!(node.call("GET", "/v1/jobs/987654", None).0, 404);
    assert_eq!(read_all(port, "/v1/jobs/987654/events").0, 404);
    node.stop().await;
    db.cleanup().await;
}

/// A job that fails reads `failed` with the terminal event's error; bad bodies are a
/// 400 naming the problem and store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_and_bad_bodies() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, seeds()).await;
    let (status, posted) = node.call(
        "POST",
        "/v1/jobs",
        Some(
            json!({"request_id": "broken-1", "tenant": "acme", "kind": "image.generate",
                    "input": {"prompt": "x", "size": "64x64"},
                    "route": {"config_id": "mock-broken", "fallback": false}}),
        ),
    );
    assert_eq!(status, 202, "{posted}");
    let job = wait_for_status(&node, posted["id"].as_i64().unwrap(), "failed").await;
    assert_eq!(job["error"]["code"], "content_filtered", "{job}");
    assert_eq!(job["result"], Value::Null);

    for (body, needle) in [
        (json!("not an object"), "JSON object"),
        (
            json!({"tenant": "acme", "kind": "image.generate", "input": {"prompt": ""}}),
            "prompt",
        ),
        (
            json!({"tenant": "acme", "kind": "image.paint", "input": {"prompt": "x"}}),
            "unknown variant `image.paint`",
        ),
        (
            json!({"kind": "image.generate", "input": {"prompt": "x"}}),
            "tenant",
        ),
        (
            json!({"request_id": "a b", "tenant": "acme", "kind": "image.generate",
                "input": {"prompt": "x"}}),
            "request_id",
        ),
    ] {
        let (status, answer) = node.call("POST", "/v1/jobs", Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body} -> {message}");
    }
    // Not JSON at all.
    let (status, raw) = raw_http(
        node.port,
        "POST",
        "/v1/jobs",
        &[format!("Authorization: Bearer {TOKEN}")],
        b"{oops",
    );
    assert_eq!(status, 400, "{raw}");
    // Only the one good job was stored.
    assert_eq!(
        db.raw_strings("SELECT request_id FROM tasks").await,
        ["broken-1"]
    );
    node.stop().await;
    db.cleanup().await;
}

/// A job stored but never handed to the bus (the bus failed, or the process died in
/// between) is queued again when its `POST` is retried, and then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_queues_a_job_the_bus_never_took() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, seeds()).await;
    let body = json!({"request_id": "stranded-1", "tenant": "acme", "kind": "text.generate",
                      "input": {"messages": [{"role": "user", "content": "hi"}]}});
    let command: switchyard_core::Command = serde_json::from_value(body.clone()).unwrap();
    let stored = db
        .store
        .create_task(&NewTask::from_command(&command))
        .await
        .unwrap()
        .task()
        .clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, job) = node.call("GET", &format!("/v1/jobs/{}", stored.id), None);
    assert_eq!(job["status"], "queued", "nothing runs it: {job}");

    let (status, posted) = node.call("POST", "/v1/jobs", Some(body));
    assert_eq!(status, 200, "{posted}");
    assert_eq!(posted["id"], stored.id);
    let job = wait_for_status(&node, stored.id, "done").await;
    assert!(job["result"]["output"]["text"].is_string(), "{job}");
    node.stop().await;
    db.cleanup().await;
}

/// One `mock` instance at $0.01 an image.
fn priced_mock() -> Value {
    json!([{"name": "mock-a", "provider": "mock", "priority": 100,
            "cost": {"per_image": {"default": 0.01}}}])
}

/// Posts a job and waits for it to end: its final state.
pub(crate) async fn run_job(node: &Node, body: Value) -> Value {
    let (status, posted) = node.call("POST", "/v1/jobs", Some(body));
    assert_eq!(status, 202, "{posted}");
    let id = posted["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, job) = node.call("GET", &format!("/v1/jobs/{id}"), None);
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn image(user: &str, n: u32) -> Value {
    json!({"tenant": "acme", "user": user, "kind": "image.generate",
           "input": {"prompt": "a kite", "size": "64x64", "n": n}})
}

/// Quotas per tenant and per user, by images and requests: a request that would go
/// over fails with `quota_exceeded`, calls no provider and counts nothing; other
/// tenants and users are untouched; removing a quota lifts it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_requests_past_them_and_only_those() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, priced_mock()).await;
    for (body, needle) in [
        (
            json!({"tenant": "acme", "period": "week", "max_images": 3}),
            "period",
        ),
        (json!({"tenant": "acme", "period": "day"}), "at least one"),
        (
            json!({"tenant": "acme", "period": "day", "max_images": -1}),
            "max_images",
        ),
        (
            json!({"tenant": "acme", "period": "day", "max_imgs": 3}),
            "max_imgs",
        ),
        (
            json!({"tenant": "a b", "period": "day", "max_images": 3}),
            "tenant",
        ),
    ] {
        let (status, answer) = node.call("PUT", "/v1/quotas", Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{body} -> {answer}"
        );
    }
    let (status, stored) = node.call(
        "PUT",
        "/v1/quotas",
        Some(json!({"tenant": "acme", "period": "day", "max_images": 3})),
    );
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["max_images"], 3);
    let (status, _) = node.call(
        "PUT",
        "/v1/quotas",
        Some(json!({"tenant": "acme", "user": "bob", "period": "month", "max_requests": 1})),
    );
    assert_eq!(status, 200);

    let first = run_job(&node, image("ann", 2)).await;
    assert_eq!(first["status"], "done", "{first}");
    let over = run_job(&node, image("ann", 2)).await;
    assert_eq!(over["status"], "failed", "{over}");
    assert_eq!(over["error"]["code"], "quota_exceeded");
    assert_eq!(over["error"]["retryable"], false);
    assert!(
        over["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quota of 3 images"),
        "{over}"
    );
    assert_eq!(over["attempts"], 0, "no provider was called");
    // Text asks for no images; bob's one request a month is used by it.
    let text = json!({"tenant": "acme", "user": "bob", "kind": "text.generate",
                      "input": {"messages": [{"role": "user", "content": "hi"}]}});
    assert_eq!(run_job(&node, text.clone()).await["status"], "done");
    let bob_again = run_job(&node, text).await;
    assert_eq!(bob_again["error"]["code"], "quota_exceeded", "{bob_again}");
    // Another tenant has no quota.
    let mut other = image("ann", 3);
    other["tenant"] = json!("other");
    assert_eq!(run_job(&node, other).await["status"], "done");

    let (status, listed) = node.call("GET", "/v1/quotas?tenant=acme", None);
    assert_eq!(status, 200, "{listed}");
    let quotas = listed["quotas"].as_array().unwrap();
    let day = quotas.iter().find(|q| q["period"] == "day").unwrap();
    assert_eq!(
        day["used"]["images"], 2,
        "refused requests count nothing: {day}"
    );
    assert_eq!(day["used"]["requests"], 2);
    let month = quotas.iter().find(|q| q["user"] == "bob").unwrap();
    assert_eq!(month["used"]["requests"], 1, "{month}");

    assert_eq!(
        node.call("DELETE", "/v1/quotas?tenant=acme&period=day", None)
            .0,
        204
    );
    assert_eq!(
        node.call("DELETE", "/v1/quotas?tenant=acme&period=day", None)
            .0,
        404
    );
    assert_eq!(run_job(&node, image("ann", 2)).await["status"], "done");
    node.stop().await;
    db.cleanup().await;
}

/// `cache: true` is answered from the tenant's identical earlier request: the same
/// images, `cached`, no attempt, no usage; another input, another tenant or
/// `cache: false` run; a streamed text comes back as one chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_true_answers_from_an_identical_earlier_request() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, priced_mock()).await;
    let fox = |tenant: &str, prompt: &str, cache: bool| {
        json!({"tenant": tenant, "kind": "image.generate", "cache": cache,
               "input": {"prompt": prompt, "size": "64x64", "seed": 7}})
    };
    // Only `cache: true` requests are cache entries: this one answers nothing later.
    let plain = run_job(&node, fox("acme", "a fox", false)).await;
    assert_eq!(plain["result"]["cached"], false);
    let first = run_job(&node, fox("acme", "a fox", true)).await;
    assert_eq!(first["status"], "done", "{first}");
    assert_eq!(
        first["result"]["cached"], false,
        "nothing to answer from yet"
    );
    let artifact = first["result"]["output"]["images"][0]["artifact_id"].clone();

    let again = run_job(&node, fox("acme", "a fox", true)).await;
    assert_eq!(again["status"], "done", "{again}");
    assert_eq!(again["result"]["cached"], true, "{again}");
    assert_eq!(
        again["result"]["output"]["images"][0]["artifact_id"],
        artifact
    );
    assert_eq!(again["result"]["usage"]["cost_usd"], 0.0);
    assert_eq!(again["result"]["provider"]["name"], "mock-a");
    assert_eq!(again["attempts"], 0, "no provider was called");

    for (body, why) in [
        (fox("acme", "a fox", false), "cache: false"),
        (fox("acme", "a hen", true), "another input"),
        (fox("other", "a fox", true), "another tenant"),
    ] {
        let job = run_job(&node, body).await;
        assert_eq!(job["result"]["cached"], false, "{why}: {job}");
        assert_eq!(job["attempts"], 1, "{why}");
    }
    let (_, usage) = node.call("GET", "/v1/usage?tenant=acme", None);
    assert_eq!(
        usage["total"]["requests"], 4,
        "the cached answer counted nothing: {usage}"
    );

    let text = json!({"tenant": "acme", "kind": "text.generate", "cache": true,
                      "input": {"messages": [{"role": "user", "content": "hello"}], "stream": true}});
    let fresh = run_job(&node, text.clone()).await;
    let cached = run_job(&node, text).await;
    assert_eq!(cached["result"]["cached"], true, "{cached}");
    assert_eq!(
        cached["result"]["output"]["text"],
        fresh["result"]["output"]["text"]
    );
    let port = node.port;
    let id = cached["id"].as_i64().unwrap();
    let (_, raw) =
        tokio::task::spawn_blocking(move || read_all(port, &format!("/v1/jobs/{id}/events")))
            .await
            .unwrap();
    let events = sse_events(&raw);
    let kinds: Vec<&str> = events.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["accepted", "chunk", "completed"], "{raw}");
    assert_eq!(events[1].2["delta"], fresh["result"]["output"]["text"]);
    assert_eq!(events[2].2["cached"], true);
    node.stop().await;
    db.cleanup().await;
}

/// A tenant key reaches its own tenant's jobs only: it may leave `tenant` out, may not
/// submit for another tenant, and sees another tenant's job as no job at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_reach_their_own_jobs_only() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, priced_mock()).await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let text = json!({"kind": "text.generate",
                      "input": {"messages": [{"role": "user", "content": "hi"}]}});
    let (status, posted) = http(node.port, "POST", "/v1/jobs", Some(&key), Some(&text));
    assert_eq!(status, 202, "{posted}");
    assert_eq!(posted["tenant"], "acme", "the key's tenant fills in");
    let mut other = text.clone();
    other["tenant"] = json!("other");
    let (status, refused) = http(node.port, "POST", "/v1/jobs", Some(&key), Some(&other));
    assert_eq!(status, 403, "{refused}");
    // The admin submits for any tenant; the key does not see that job.
    let (status, theirs) = node.call("POST", "/v1/jobs", Some(other));
    assert_eq!(status, 202, "{theirs}");
    let own = posted["id"].as_i64().unwrap();
    let foreign = theirs["id"].as_i64().unwrap();
    let (status, mine) = http(
        node.port,
        "GET",
        &format!("/v1/jobs/{own}"),
        Some(&key),
        None,
    );
    assert_eq!((status, &mine["tenant"]), (200, &json!("acme")), "{mine}");
    for path in [
        format!("/v1/jobs/{foreign}"),
        format!("/v1/jobs/{foreign}/events"),
    ] {
        assert_eq!(
            http(node.port, "GET", &path, Some(&key), None).0,
            404,
            "{path}"
        );
    }
    assert_eq!(
        node.call("GET", &format!("/v1/jobs/{foreign}"), None).0,
        200
    );
    // The key is for jobs and the OpenAI-compatible API, not the admin API.
    assert_eq!(
        http(node.port, "GET", "/v1/providers", Some(&key), None).0,
        401
    );
    assert_eq!(
        http(
            node.port,
            "GET",
            &format!("/v1/jobs/{own}"),
            Some("sy_wrong"),
            None
        )
        .0,
        401
    );
    node.stop().await;
    db.cleanup().await;
}
