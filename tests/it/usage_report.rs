//! Usage reports (#16 §8): day, week and month buckets on both databases, grouped by
//! provider, model, kind and config (and user), with failures counted; the admin API.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use switchyard_runtime::{
    store::ReportScope,
    usage_report::{Bucket, report},
};

use crate::{
    reload::start_node,
    support::{TestDb, on_both_databases},
};

on_both_databases!(usage_is_reported_per_bucket_group_and_user_with_failures);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Usage rows and failed tasks on known days: Mon 2026-11-30, Wed 2026-12-02, Mon
/// 2026-12-07 (and one of another tenant, and one outside the window).
async fn seed(db: &TestDb) {
    let usage = [
        (
            "acme",
            "bob",
            1,
            "m1",
            "image.generate",
            2,
            0.04,
            "2026-11-30T08:00:00Z",
        ),
        (
            "acme",
            "bob",
            1,
            "m1",
            "image.generate",
            1,
            0.02,
            "2026-11-30T23:59:59Z",
        ),
        (
            "acme",
            "eve",
            2,
            "m2",
            "image.generate",
            4,
            0.08,
            "2026-12-02T12:00:00Z",
        ),
        (
            "acme",
            "eve",
            1,
            "m1",
            "image.generate",
            1,
            0.02,
            "2026-12-07T00:00:00Z",
        ),
        (
            "globex",
            "x",
            1,
            "m1",
            "image.generate",
            9,
            0.18,
            "2026-12-02T12:00:00Z",
        ),
        (
            "acme",
            "bob",
            1,
            "m1",
            "image.generate",
            9,
            0.18,
            "2026-10-01T12:00:00Z",
        ),
    ];
    for (tenant, user, config, model, kind, images, cost, time) in usage {
        db.raw_execute(&format!(
            "INSERT INTO usage_log (tenant, user_id, provider_config_id, provider, model, kind, \
             images, input_tokens, output_tokens, cost_usd, created_at) VALUES \
             ('{tenant}', '{user}', {config}, 'mock', '{model}', '{kind}', {images}, 0, 0, \
             {cost}, '{time}')"
        ))
        .await;
    }
    let failed = [
        ("f1", "bob", "timeout", "2026-12-01T10:00:00Z"),
        ("f2", "eve", "timeout", "2026-12-02T10:00:00Z"),
        ("f3", "eve", "no_provider", "2026-12-08T10:00:00Z"),
    ];
    for (id, user, code, time) in failed {
        db.raw_execute(&format!(
            "INSERT INTO tasks (request_id, tenant, user_id, kind, status, command, error_code, \
             created_at) VALUES ('{id}', 'acme', '{user}', 'image.generate', 'failed', '{{}}', \
             '{code}', '{time}')"
        ))
        .await;
    }
    db.raw_execute(
        "INSERT INTO tasks (request_id, tenant, kind, status, command, created_at) VALUES \
         ('ok1', 'acme', 'image.generate', 'completed', '{}', '2026-12-02T10:00:00Z')",
    )
    .await;
}

async fn usage_is_reported_per_bucket_group_and_user_with_failures(db: &TestDb) {
    seed(db).await;
    let scope = ReportScope {
        tenant: "acme",
        user: None,
        by_user: false,
        from: at("2026-11-01T00:00:00Z"),
        to: at("2026-12-31T00:00:00Z"),
    };
    let days = report(&db.store, &scope, Bucket::Day).await.unwrap();
    let starts: Vec<String> = days.buckets.iter().map(|b| b.start.to_string()).collect();
    assert_eq!(
        starts,
        [
            "2026-11-30",
            "2026-12-01",
            "2026-12-02",
            "2026-12-07",
            "2026-12-08"
        ]
    );
    let first = &days.buckets[0];
    assert_eq!(first.groups.len(), 1, "one group: both rows of the day");
    assert_eq!(first.groups[0].usage.requests, 2);
    assert_eq!(first.groups[0].usage.images, 3);
    assert_eq!(first.groups[0].config_id, Some(1));
    assert_eq!(days.total.usage.requests, 4, "globex and October left out");
    assert_eq!(days.total.usage.images, 8);
    assert_eq!(days.total.failures, 3, "the completed task is no failure");

    let weeks = report(&db.store, &scope, Bucket::Week).await.unwrap();
    let starts: Vec<String> = weeks.buckets.iter().map(|b| b.start.to_string()).collect();
    assert_eq!(starts, ["2026-11-30", "2026-12-07"]);
    let week = &weeks.buckets[0];
    assert_eq!(week.groups.len(), 2, "configs 1 (m1) and 2 (m2): {week:?}");
    assert_eq!(week.total.usage.requests, 3);
    assert_eq!(week.total.failures, 2);
    assert_eq!(week.failures.len(), 1, "both are timeouts: {week:?}");
    assert_eq!(week.failures[0].error_code.as_deref(), Some("timeout"));

    let months = report(&db.store, &scope, Bucket::Month).await.unwrap();
    let starts: Vec<String> = months.buckets.iter().map(|b| b.start.to_string()).collect();
    assert_eq!(starts, ["2026-11-01", "2026-12-01"]);
    assert_eq!(
        months.total, days.total,
        "the same sums whatever the buckets"
    );

    let by_user = ReportScope {
        by_user: true,
        ..scope
    };
    let users = report(&db.store, &by_user, Bucket::Month).await.unwrap();
    let december = &users.buckets[1];
    let eve: i64 = december
        .groups
        .iter()
        .filter(|g| g.user.as_deref() == Some("eve"))
        .map(|g| g.usage.requests)
        .sum();
    assert_eq!(eve, 2);
    assert!(december.failures.iter().all(|f| f.user.is_some()));

    let only_bob = ReportScope {
        user: Some("bob"),
        ..scope
    };
    let bob = report(&db.store, &only_bob, Bucket::Month).await.unwrap();
    assert_eq!(bob.total.usage.requests, 2);
    assert_eq!(bob.total.failures, 1);
}

/// `GET /v1/usage/report` answers the report, and names a bad bucket or window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_usage_reports_and_names_bad_queries() {
    let db = TestDb::sqlite().await;
    seed(&db).await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (status, body) = node.call(
        "GET",
        "/v1/usage/report?tenant=acme&bucket=week&by_user=true\
         &from=2026-11-01T00:00:00Z&to=2026-12-31T00:00:00Z",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["bucket"], "week");
    assert_eq!(body["buckets"][0]["start"], "2026-11-30");
    assert_eq!(body["total"]["requests"], 4, "{body}");
    assert_eq!(body["total"]["failures"], 3, "{body}");
    let group = &body["buckets"][0]["groups"][0];
    for field in ["user", "provider", "model", "kind", "config_id", "cost_usd"] {
        assert!(group.get(field).is_some(), "{field} missing: {group}");
    }
    for (query, named) in [
        ("tenant=acme&bucket=year", "bucket"),
        ("bucket=day", "tenant"),
        (
            "tenant=acme&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "400 days",
        ),
        (
            "tenant=acme&from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            "before",
        ),
    ] {
        let (status, body) = node.call("GET", &format!("/v1/usage/report?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{query}: {body}");
    }
    let (status, _): (u16, Value) =
        crate::reload::http(node.port, "GET", "/v1/usage/report?tenant=acme", None, None);
    assert_eq!(status, 401);
    node.stop().await;
    db.cleanup().await;
}
