//! Batch jobs (#18 §9) end to end through the HTTP API, on both databases: a batch of
//! commands runs under its own concurrency cap while an interactive job goes first,
//! its results come page by page, a retried `POST` answers the same batch, a
//! cancellation ends what had not started, and a bad batch stores nothing.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{
    jobs::wait_for_status,
    reload::{Node, start_node_with},
    support::{NatsServer, TestDb, unique_suffix},
};

fn seeds() -> Value {
    json!([{"name": "mock-slow", "provider": "mock", "priority": 1,
            "options": {"latency_ms": 300},
            "rate_limit": {"rpm": 60000, "burst": 100, "max_concurrency": 50}}])
}

fn commands(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"tenant": "acme", "kind": "image.generate",
                   "input": {"prompt": format!("kite {i}"), "size": "64x64"}})
        })
        .collect()
}

async fn node(db: &TestDb, concurrency: u32) -> Node {
    node_on(db, concurrency, "memory://", "switchyard").await
}

async fn node_on(db: &TestDb, concurrency: u32, bus: &str, prefix: &str) -> Node {
    start_node_with(db, seeds(), bus, prefix, |settings| {
        settings.batches.concurrency = concurrency;
        settings.batches.poll_ms = 50;
        settings.batches.max_commands = 40;
    })
    .await
}

/// Polls the batch until no command of it is queued or running (60 s at most).
async fn wait_finished(node: &Node, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, batch) = node.call("GET", &format!("/v1/batches/{id}?limit=0"), None);
        assert_eq!(status, 200, "{batch}");
        if batch["finished"] == true {
            return batch;
        }
        assert!(
            Instant::now() < deadline,
            "batch {id} did not finish: {batch}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn time(job: &Value, field: &str) -> DateTime<Utc> {
    job[field]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no {field} in {job}"))
}

/// The most jobs that ran at one time.
fn most_at_once(jobs: &[Value]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = jobs
        .iter()
        .flat_map(|job| {
            [
                (time(job, "started_at"), 1),
                (time(job, "completed_at"), -1),
            ]
        })
        .collect();
    // An end before a start at the same instant.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_under_its_cap_behind_interactive_traffic_on_sqlite() {
    let db = TestDb::sqlite().await;
    a_batch_runs_under_its_cap_behind_interactive_traffic(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_under_its_cap_behind_interactive_traffic_on_postgres() {
    let db = TestDb::postgres().await;
    a_batch_runs_under_its_cap_behind_interactive_traffic(&db).await;
    db.cleanup().await;
}

async fn a_batch_runs_under_its_cap_behind_interactive_traffic(db: &TestDb) {
    let node = node(db, 3).await;
    let body = json!({"commands": commands(24), "idempotency_key": "nightly-1"});
    let (status, batch) = node.call("POST", "/v1/batches", Some(body.clone()));
    assert_eq!(status, 202, "{batch}");
    let id = batch["id"].as_str().unwrap().to_owned();
    assert_eq!(batch["total"], 24, "{batch}");
    assert_eq!(batch["tenant"], "acme");

    // A retried POST with the same key answers the same batch, and adds nothing.
    let (status, again) = node.call("POST", "/v1/batches", Some(body));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());

    // An interactive job posted behind the whole batch ends while the batch runs.
    let job = json!({"tenant": "acme", "kind": "image.generate",
                     "input": {"prompt": "urgent", "size": "64x64"}});
    let (status, posted) = node.call("POST", "/v1/jobs", Some(job));
    assert_eq!(status, 202, "{posted}");
    wait_for_status(&node, posted["id"].as_i64().unwrap(), "done").await;
    let (_, midway) = node.call("GET", &format!("/v1/batches/{id}?limit=0"), None);
    assert!(
        midway["counts"]["queued"].as_i64().unwrap() > 0,
        "the batch was not behind the interactive job: {midway}"
    );

    let finished = wait_finished(&node, &id).await;
    assert_eq!(
        finished["counts"],
        json!({"queued": 0, "processing": 0, "done": 24, "failed": 0, "cancelled": 0}),
        "{finished}"
    );
    assert_eq!(finished["state"], "closed", "{finished}");

    // The results, page by page, in the order posted: each a job with its result.
    let mut jobs = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/v1/batches/{id}?limit=10&after={a}"),
            None => format!("/v1/batches/{id}?limit=10"),
        };
        let (status, page) = node.call("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        for result in page["results"].as_array().unwrap() {
            assert_eq!(result["index"], jobs.len() as i64, "{result}");
            assert_eq!(result["cancelled"], false);
            let job = &result["job"];
            assert_eq!(job["status"], "done", "{job}");
            assert_eq!(job["request_id"], format!("{id}-{}", jobs.len()));
            assert!(
                job["result"]["output"]["images"][0]["url"].is_string(),
                "{job}"
            );
            jobs.push(job.clone());
        }
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(jobs.len(), 24);
    // Never more than the cap at once (without it, all 24 run together).
    let most = most_at_once(&jobs);
    assert!(most <= 3, "{most} batch commands ran at once; the cap is 3");
    // Each is a job of its own, with its events' record.
    let (_, one) = node.call("GET", &format!("/v1/jobs/{}", jobs[5]["id"]), None);
    assert_eq!(one["status"], "done", "{one}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_batch_ends_what_had_not_started_on_sqlite() {
    let db = TestDb::sqlite().await;
    cancelling_a_batch_ends_what_had_not_started(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_batch_ends_what_had_not_started_on_postgres() {
    let db = TestDb::postgres().await;
    cancelling_a_batch_ends_what_had_not_started(&db).await;
    db.cleanup().await;
}

async fn cancelling_a_batch_ends_what_had_not_started(db: &TestDb) {
    let node = node(db, 2).await;
    let (status, batch) = node.call(
        "POST",
        "/v1/batches",
        Some(json!({"commands": commands(20)})),
    );
    assert_eq!(status, 202, "{batch}");
    let id = batch["id"].as_str().unwrap().to_owned();
    let (status, cancelled) = node.call("DELETE", &format!("/v1/batches/{id}"), None);
    assert_eq!(status, 200, "{cancelled}");
    let now = cancelled["cancelled_now"].as_i64().unwrap();
    assert!(
        now >= 10,
        "only {now} of 20 cancelled with a cap of 2: {cancelled}"
    );
    assert_eq!(cancelled["state"], "cancelled");

    let finished = wait_finished(&node, &id).await;
    let counts = &finished["counts"];
    assert_eq!(counts["cancelled"], now, "{finished}");
    assert_eq!(
        counts["done"].as_i64().unwrap() + now,
        20,
        "what was queued ran to its end: {finished}"
    );
    // A cancelled command is a failed job saying so.
    let (_, page) = node.call("GET", &format!("/v1/batches/{id}?limit=500"), None);
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    let last = &results[19];
    assert_eq!(last["cancelled"], true, "{last}");
    assert_eq!(last["job"]["status"], "failed", "{last}");
    assert_eq!(last["job"]["error"]["code"], "invalid_request", "{last}");
    assert!(
        last["job"]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cancelled"),
        "{last}"
    );
    // A second DELETE cancels nothing more.
    let (status, again) = node.call("DELETE", &format!("/v1/batches/{id}"), None);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cancelled_now"], 0);
    node.stop().await;

    // Retention: the batch row stays while any task of it does, and goes a day after
    // it ended once its tasks are gone.
    let day_ago = chrono::Utc::now() - chrono::TimeDelta::hours(25);
    assert_eq!(db.store.expire_empty_batches(day_ago, 10).await.unwrap(), 0);
    db.raw_execute(&format!(
        "UPDATE batches SET ended_at = '{}' WHERE id = '{id}'",
        (chrono::Utc::now() - chrono::TimeDelta::days(2)).to_rfc3339()
    ))
    .await;
    assert_eq!(
        db.store.expire_empty_batches(day_ago, 10).await.unwrap(),
        0,
        "its tasks are still there"
    );
    db.raw_execute(&format!("DELETE FROM tasks WHERE batch_id = '{id}'"))
        .await;
    assert_eq!(db.store.expire_empty_batches(day_ago, 0).await.unwrap(), 1);
    assert_eq!(db.store.expire_empty_batches(day_ago, 10).await.unwrap(), 1);
    assert_eq!(db.store.expire_empty_batches(day_ago, 0).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_is_refused_whole_and_stores_nothing() {
    let db = TestDb::sqlite().await;
    let node = node(&db, 2).await;
    let refused = |body: Value, expect: &str| {
        let (status, answer) = node.call("POST", "/v1/batches", Some(body));
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(expect), "{expect:?} not in {answer}");
    };
    let mut bad = commands(3);
    bad[0]["request_id"] = json!("r0");
    bad[1]["kind"] = json!("video.generate");
    refused(json!({"commands": bad}), "commands[1]");
    let mut twins = commands(3);
    twins[0]["request_id"] = json!("same");
    twins[2]["request_id"] = json!("same");
    refused(json!({"commands": twins}), "commands[2]: request_id 'same'");
    let mut other = commands(2);
    other[1]["tenant"] = json!("globex");
    refused(json!({"commands": other}), "commands[1]");
    refused(json!({"commands": []}), "at least one command");
    refused(json!({"commands": commands(41)}), "at most 40");
    refused(
        json!({"commands": commands(1), "idempotency_key": "a b"}),
        "idempotency_key",
    );
    refused(json!({"commandz": commands(1)}), "commandz");

    // Nothing of the first batch was stored: its request id is still free.
    let job = json!({"request_id": "r0", "tenant": "acme", "kind": "image.generate",
                     "input": {"prompt": "fresh", "size": "64x64"}});
    let (status, posted) = node.call("POST", "/v1/jobs", Some(job));
    assert_eq!(status, 202, "{posted}");

    let (status, _) = node.call("GET", "/v1/batches/nope", None);
    assert_eq!(status, 404);
    let (status, _) = node.call("GET", "/v1/batches/nope?limit=501", None);
    assert_eq!(status, 400);
    node.stop().await;
    db.cleanup().await;
}

/// Two gateways on one NATS and one database: one dispatcher for both, so the cap
/// holds for the cluster, and a batch posted to one is read from the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_for_the_whole_cluster_on_nats() {
    let nats = NatsServer::start();
    let db = TestDb::postgres().await;
    let prefix = format!("batches{}", unique_suffix());
    let first = node_on(&db, 3, &nats.url(), &prefix).await;
    let second = node_on(&db, 3, &nats.url(), &prefix).await;
    let (status, batch) = first.call(
        "POST",
        "/v1/batches",
        Some(json!({"commands": commands(18)})),
    );
    assert_eq!(status, 202, "{batch}");
    let id = batch["id"].as_str().unwrap().to_owned();
    let finished = wait_finished(&second, &id).await;
    assert_eq!(finished["counts"]["done"], 18, "{finished}");
    let (_, page) = second.call("GET", &format!("/v1/batches/{id}?limit=500"), None);
    let jobs: Vec<Value> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].clone())
        .collect();
    assert_eq!(jobs.len(), 18);
    let most = most_at_once(&jobs);
    assert!(
        most <= 3,
        "{most} batch commands ran at once in the cluster; the cap is 3"
    );
    first.stop().await;
    second.stop().await;
    db.cleanup().await;
}
