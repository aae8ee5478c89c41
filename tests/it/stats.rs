//! Statistics per provider config (#18 §1) and feedback on results (#18 §7), end to end
//! through the HTTP API on both databases: every attempt of a job is counted against
//! the config it ran on (failures by error code, latency percentiles), with usage and
//! cost; the numbers survive an edit of the config; feedback by the job's own tenant
//! shows in its config's statistics.

use serde_json::{Value, json};

use crate::{
    jobs::wait_for_status,
    reload::{http, start_node},
    support::TestDb,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_usage_and_feedback_are_reported_per_config_on_sqlite() {
    let db = TestDb::sqlite().await;
    attempts_usage_and_feedback_are_reported_per_config(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_usage_and_feedback_are_reported_per_config_on_postgres() {
    let db = TestDb::postgres().await;
    attempts_usage_and_feedback_are_reported_per_config(&db).await;
    db.cleanup().await;
}

fn seeds() -> Value {
    json!([
        {"name": "mock-ok", "provider": "mock", "priority": 1,
         "cost": {"per_image": {"default": 0.02}}},
        {"name": "mock-broken", "provider": "mock", "priority": 100,
         "options": {"failure_rate": 1.0, "fail_with": "provider_unavailable"}},
    ])
}

fn item<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

async fn attempts_usage_and_feedback_are_reported_per_config(db: &TestDb) {
    let node = start_node(db, seeds()).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let command = json!({"tenant": "acme", "kind": "image.generate",
                             "input": {"prompt": "a kite", "size": "64x64"}});
        let (status, posted) = node.call("POST", "/v1/jobs", Some(command));
        assert_eq!(status, 202, "{posted}");
        jobs.push(posted["id"].as_i64().unwrap());
    }
    for &id in &jobs {
        wait_for_status(&node, id, "done").await;
    }

    let (status, stats) = node.call("GET", "/v1/providers/stats", None);
    assert_eq!(status, 200, "{stats}");
    let broken = item(&stats, "mock-broken");
    assert_eq!(broken["requests"], 3, "{broken}");
    assert_eq!(broken["failed"], 3, "{broken}");
    assert_eq!(broken["success_rate"], 0.0, "{broken}");
    assert_eq!(broken["error_codes"], json!({"provider_unavailable": 3}));
    let ok = item(&stats, "mock-ok");
    assert_eq!(
        (ok["requests"].clone(), ok["succeeded"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(ok["success_rate"], 1.0, "{ok}");
    assert!(ok["p50_ms"].is_i64() && ok["p99_ms"].is_i64(), "{ok}");
    assert!(ok["p50_ms"].as_i64() <= ok["p99_ms"].as_i64(), "{ok}");
    assert_eq!(ok["images"], 3, "{ok}");
    assert!(
        (ok["cost_usd"].as_f64().unwrap() - 0.06).abs() < 1e-9,
        "{ok}"
    );
    assert_eq!(ok["provider"], "mock");

    // An edit of the config keeps its numbers (they are read from the database). A
    // config is named by id or by name.
    let ok_id = ok["config_id"].as_i64().unwrap();
    let (status, patched) = node.call(
        "PATCH",
        "/v1/providers/mock-ok",
        Some(json!({"priority": 2})),
    );
    assert_eq!(status, 200, "{patched}");
    let (status, shown) = node.call("GET", "/v1/providers/mock-ok", None);
    assert_eq!(
        (status, shown["id"].as_i64()),
        (200, Some(ok_id)),
        "{shown}"
    );
    let (status, _) = node.call("GET", "/v1/providers/no-such-config", None);
    assert_eq!(status, 404);
    let (status, by_name) = node.call("GET", "/v1/providers/mock-ok/stats", None);
    assert_eq!(status, 200, "{by_name}");
    assert_eq!(by_name["items"][0]["config_id"], ok_id, "{by_name}");
    let (status, one) = node.call(
        "GET",
        &format!("/v1/providers/{ok_id}/stats?bucket=hour"),
        None,
    );
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["items"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["items"][0]["requests"], 3, "{one}");
    let series = one["series"].as_array().unwrap();
    // One hour, or two if the jobs straddled the turn of an hour.
    assert!((1..=2).contains(&series.len()), "{one}");
    let total: i64 = series.iter().map(|b| b["requests"].as_i64().unwrap()).sum();
    assert_eq!(total, 3, "{one}");
    assert!(
        series[0]["start"].as_str().unwrap().ends_with(":00"),
        "{one}"
    );
    for bad in [
        "bucket=week",
        "from=yesterday",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let (status, body) = node.call("GET", &format!("/v1/providers/stats?{bad}"), None);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Each config's status, in the list and in the live status.
    let (status, made) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "oa", "provider": "openai", "enabled": false})),
    );
    assert_eq!(status, 201, "{made}");
    let (status, _) = node.call(
        "PATCH",
        "/v1/providers/mock-broken",
        Some(json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    let (_, list) = node.call("GET", "/v1/providers", None);
    let status_of = |name: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["config_status"].clone())
    };
    assert_eq!(status_of("mock-ok"), Some(json!("configured")), "{list}");
    assert_eq!(status_of("mock-broken"), Some(json!("disabled")), "{list}");
    assert_eq!(status_of("oa"), Some(json!("needs_api_key")), "{list}");
    let (_, live) = node.call("GET", "/v1/providers/status", None);
    assert!(
        live["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "mock-ok" && i["config_status"] == "configured"),
        "{live}"
    );
    let (status, _) = http(node.port, "GET", "/v1/providers/stats", None, None);
    assert_eq!(status, 401, "statistics need the admin token");

    // Feedback by the job's own tenant, reported with the config that served it.
    let (_, key) = node.call("POST", "/v1/tenants/acme/keys", None);
    let acme = key["key"].as_str().unwrap().to_owned();
    let (_, key) = node.call("POST", "/v1/tenants/other/keys", None);
    let other = key["key"].as_str().unwrap().to_owned();
    let path = format!("/v1/jobs/{}/feedback", jobs[0]);
    let rating = json!({"rating": 4, "favorite": true, "comment": "sharp"});
    assert_eq!(
        http(node.port, "POST", &path, Some(&other), Some(&rating)).0,
        404
    );
    for (bad, named) in [
        (json!({"rating": 9}), "rating"),
        (json!({"rating": "good"}), "rating"),
        (json!({}), "rating"),
        (json!({"stars": 3}), "stars"),
    ] {
        let (status, body) = http(node.port, "POST", &path, Some(&acme), Some(&bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(named),
            "{bad}: {body}"
        );
    }
    let (status, stored) = http(node.port, "POST", &path, Some(&acme), Some(&rating));
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["rating"], 4);
    let (status, _) = http(
        node.port,
        "POST",
        &format!("/v1/jobs/{}/feedback", jobs[1]),
        Some(&acme),
        Some(&json!({"rating": 2})),
    );
    assert_eq!(status, 200);
    let (_, stats) = node.call("GET", "/v1/providers/stats", None);
    let ok = item(&stats, "mock-ok");
    assert_eq!(
        (ok["ratings"].clone(), ok["favorites"].clone()),
        (json!(2), json!(1)),
        "{ok}"
    );
    assert_eq!(ok["rating_avg"], 3.0, "{ok}");
    // The mark can be taken back.
    let (status, _) = http(
        node.port,
        "POST",
        &path,
        Some(&acme),
        Some(&json!({"favorite": false})),
    );
    assert_eq!(status, 200);
    let (_, stats) = node.call("GET", "/v1/providers/stats", None);
    assert_eq!(item(&stats, "mock-ok")["favorites"], 0, "{stats}");
    node.stop().await;
}
