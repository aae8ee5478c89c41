//! Quotas that cannot overshoot (#16): a request reserves its estimate at admission,
//! atomically in the database, and its end settles the reservation. On both
//! databases, with two stores (or two gateways) on one database as two processes.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use switchyard_core::{Command, ErrorCode, Kind};
use switchyard_runtime::{
    MasterKey,
    store::{
        Claim, Completion, Failure, HoldAsk, NewTask, Quota, QuotaPeriod, Store, StoredJson,
        StoredQuota, TaskInsert, UsageRecord,
    },
};

use crate::{
    reload::{Node, http, start_node},
    support::{TestDb, on_both_databases},
};

on_both_databases!(
    quotas_are_upserted,
    sixty_reservations_from_two_processes_against_ten_hold_exactly_ten,
    a_completion_settles_its_hold_with_what_it_used_and_a_failure_releases_it,
    a_request_reserved_twice_holds_once,
    holds_of_requests_whose_process_died_are_released,
    a_quota_set_mid_period_counts_what_was_used_already,
    batches_of_reservations_reserve_together_and_never_overshoot,
);

fn ask<'a>(request_id: &'a str, images: i64) -> HoldAsk<'a> {
    HoldAsk {
        tenant: "acme",
        user: None,
        request_id,
        images,
        tokens: 0,
        cost_usd: 0.0,
        now: Utc::now(),
    }
}

/// Sets `quota` and returns the tenant's stored quotas.
async fn set(store: &Store, quota: Quota) -> Vec<StoredQuota> {
    store.set_quota(&quota).await.unwrap();
    store.stored_quotas(&quota.tenant).await.unwrap()
}

async fn second_process(db: &TestDb) -> Store {
    db.reopen_with(MasterKey::from_base64(&db.key_b64).unwrap())
        .await
        .unwrap()
}

fn command(request_id: &str) -> Command {
    serde_json::from_value(json!({
        "request_id": request_id, "tenant": "acme", "kind": "image.generate",
        "input": {"prompt": "a kite", "n": 2},
    }))
    .unwrap()
}

async fn task(store: &Store, request_id: &str) -> i64 {
    match store
        .create_task(&NewTask::from_command(&command(request_id)))
        .await
        .unwrap()
    {
        TaskInsert::Created(task) | TaskInsert::Existing(task) => task.id,
    }
}

fn usage(task_id: i64, images: i64, cost_usd: f64) -> UsageRecord {
    UsageRecord {
        charged: true,
        task_id: Some(task_id),
        tenant: "acme".into(),
        user: None,
        config_id: None,
        provider: "mock".into(),
        model: None,
        kind: Kind::ImageGenerate,
        images,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd,
    }
}

async fn counted(store: &Store) -> switchyard_runtime::store::CountedQuota {
    let mut all = store.counted_quotas("acme", Utc::now()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

async fn quotas_are_upserted(db: &TestDb) {
    let store = &db.store;
    let mut quota = Quota {
        max_requests: Some(1000),
        max_tokens: Some(500_000),
        max_cost_usd: Some(50.0),
        ..Quota::new("acme", QuotaPeriod::Month)
    };
    store.set_quota(&quota).await.unwrap();
    quota.max_requests = Some(2000);
    store.set_quota(&quota).await.unwrap();
    let per_user = Quota {
        user: Some("u-42".into()),
        period: QuotaPeriod::Day,
        ..quota.clone()
    };
    store.set_quota(&per_user).await.unwrap();
    assert_eq!(
        store.quotas("acme").await.unwrap(),
        [quota.clone(), per_user.clone()]
    );
    assert!(
        store
            .delete_quota("acme", Some("u-42"), QuotaPeriod::Day)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_quota("acme", Some("u-42"), QuotaPeriod::Day)
            .await
            .unwrap(),
        "gone already"
    );
    assert_eq!(store.quotas("acme").await.unwrap(), [quota]);
}

/// The measured hole: 60 concurrent requests against a maximum of 10 all ran. Now
/// they reserve in the database, half through another process's store.
async fn sixty_reservations_from_two_processes_against_ten_hold_exactly_ten(db: &TestDb) {
    let other = second_process(db).await;
    let quotas = set(
        &db.store,
        Quota {
            max_requests: Some(10),
            ..Quota::new("acme", QuotaPeriod::Day)
        },
    )
    .await;
    let ids: Vec<String> = (0..60).map(|i| format!("r-{i}")).collect();
    let reservations = ids.iter().enumerate().map(|(i, id)| {
        let store = if i % 2 == 0 { &db.store } else { &other };
        let quotas = &quotas;
        async move { store.reserve(quotas, &ask(id, 1)).await.unwrap() }
    });
    let verdicts = futures_util::future::join_all(reservations).await;
    let held = verdicts.iter().filter(|v| v.is_none()).count();
    assert_eq!(held, 10, "exactly the quota's 10 hold a reservation");
    for refused in verdicts.iter().flatten() {
        assert_eq!(
            refused.used.requests + refused.reserved.requests,
            10,
            "{refused:?}"
        );
    }
    let quota = counted(&other).await;
    assert_eq!(quota.reserved.requests, 10);
    assert_eq!(quota.used.requests, 0);
    assert_eq!(quota.left.requests, Some(0));
    other.close().await;
}

/// Batches of reservations (the quota path's batching, #16): a batch that fits holds
/// all of it at once; one that does not is decided request by request, so exactly
/// what fits holds; a request twice in a batch, or held already, counts once; batches
/// from two processes at once still hold exactly the quota's maximum.
async fn batches_of_reservations_reserve_together_and_never_overshoot(db: &TestDb) {
    let store = &db.store;
    let quotas = set(
        store,
        Quota {
            max_requests: Some(10),
            max_images: Some(100),
            ..Quota::new("acme", QuotaPeriod::Day)
        },
    )
    .await;
    let batch = |ids: &[&'static str]| -> Vec<(&[StoredQuota], HoldAsk<'static>)> {
        ids.iter().map(|id| (&quotas[..], ask(id, 2))).collect()
    };
    // Fits: all held, and a repeat within the batch counts once.
    let answers = store
        .reserve_batch(&batch(&["b-1", "b-2", "b-3", "b-3"]))
        .await
        .unwrap();
    assert!(answers.iter().all(Option::is_none), "{answers:?}");
    let quota = counted(store).await;
    assert_eq!((quota.reserved.requests, quota.reserved.images), (3, 6));
    // Held already (a redelivery) plus new ones, past the maximum: decided one by one.
    let ids = [
        "b-1", "c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7", "c-8", "c-9",
    ];
    let answers = store.reserve_batch(&batch(&ids)).await.unwrap();
    let held: Vec<&str> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        held,
        ["b-1", "c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7"]
    );
    assert_eq!(counted(store).await.reserved.requests, 10);

    // Two processes, batches at once, against what is left of a fresh quota.
    let other = second_process(db).await;
    let quotas = set(
        store,
        Quota {
            max_requests: Some(25),
            ..Quota::new("globex", QuotaPeriod::Month)
        },
    )
    .await;
    let ids: Vec<String> = (0..60).map(|i| format!("m-{i}")).collect();
    let batches = ids.chunks(10).enumerate().map(|(i, chunk)| {
        let store = if i % 2 == 0 { store } else { &other };
        let asks: Vec<(&[StoredQuota], HoldAsk<'_>)> = chunk
            .iter()
            .map(|id| {
                let mut ask = ask(id, 0);
                ask.tenant = "globex";
                (&quotas[..], ask)
            })
            .collect();
        async move { store.reserve_batch(&asks).await.unwrap() }
    });
    let answers: Vec<_> = futures_util::future::join_all(batches)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 25);
    let counted = other.counted_quotas("globex", Utc::now()).await.unwrap();
    assert_eq!(counted[0].reserved.requests, 25, "{counted:?}");
    other.close().await;
}

async fn a_completion_settles_its_hold_with_what_it_used_and_a_failure_releases_it(db: &TestDb) {
    let store = &db.store;
    let quotas = set(
        store,
        Quota {
            max_images: Some(5),
            ..Quota::new("acme", QuotaPeriod::Day)
        },
    )
    .await;
    let (one, two) = (task(store, "r-1").await, task(store, "r-2").await);
    assert!(
        store
            .reserve(&quotas, &ask("r-1", 2))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .reserve(&quotas, &ask("r-2", 2))
            .await
            .unwrap()
            .is_none()
    );
    let refused = store.reserve(&quotas, &ask("r-3", 2)).await.unwrap();
    assert!(
        refused.is_some_and(|q| q.reserved.images == 4),
        "4 held + 2 asked > 5"
    );
    assert_eq!(counted(store).await.left.images, Some(1));

    // r-1 made one image of the two it asked for: one counts, the hold goes.
    let done = Completion {
        id: one,
        config_id: None,
        attempts: 1,
        raw_response: None,
        results: Vec::new(),
        terminal_event: StoredJson::of(&json!({"type": "completed"})),
        usage: Some(usage(one, 1, 0.01)),
        held: true,
        attempt_log: Vec::new(),
    };
    assert!(store.complete_task(&done).await.unwrap());
    let quota = counted(store).await;
    assert_eq!((quota.used.images, quota.reserved.images), (1, 2));
    assert_eq!(quota.used.requests, 1);
    assert!((quota.used.cost_usd - 0.01).abs() < 1e-9);

    // r-2 failed without using a provider: its hold is released, nothing counts.
    let failed = Failure {
        id: two,
        config_id: None,
        attempts: 1,
        code: ErrorCode::ProviderError,
        message: "boom".into(),
        terminal_event: StoredJson::of(&json!({"type": "failed"})),
        usage: None,
        held: true,
        attempt_log: Vec::new(),
    };
    assert!(store.fail_task(&failed).await.unwrap());
    let quota = counted(store).await;
    assert_eq!((quota.used.images, quota.reserved.images), (1, 0));
    assert_eq!(quota.used.requests, 1);
    assert!(
        db.raw_strings("SELECT request_id FROM quota_holds")
            .await
            .is_empty()
    );
    assert!(
        store
            .reserve(&quotas, &ask("r-3", 2))
            .await
            .unwrap()
            .is_none()
    );
}

/// A command delivered again after a crash before its first attempt is admitted
/// again: it keeps its one hold instead of taking a second.
async fn a_request_reserved_twice_holds_once(db: &TestDb) {
    let store = &db.store;
    let quotas = set(
        store,
        Quota {
            max_requests: Some(2),
            ..Quota::new("acme", QuotaPeriod::Day)
        },
    )
    .await;
    for _ in 0..3 {
        assert!(
            store
                .reserve(&quotas, &ask("r-1", 1))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(counted(store).await.reserved.requests, 1);
    assert!(
        store
            .reserve(&quotas, &ask("r-2", 1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .reserve(&quotas, &ask("r-3", 1))
            .await
            .unwrap()
            .is_some()
    );
}

async fn holds_of_requests_whose_process_died_are_released(db: &TestDb) {
    let store = &db.store;
    let quotas = set(
        store,
        Quota {
            max_requests: Some(3),
            ..Quota::new("acme", QuotaPeriod::Day)
        },
    )
    .await;
    // A synchronous call whose record died with its process (no task row), a task
    // whose claim lapsed, and a task running elsewhere under a live claim.
    let now = Utc::now().timestamp_millis();
    let lapsed = task(store, "lapsed").await;
    let running = task(store, "running").await;
    for (id, until_ms) in [(lapsed, now - 1), (running, now + 60_000)] {
        let claim = Claim {
            id,
            owner: "elsewhere".into(),
            until_ms,
            now_ms: now - 10,
        };
        assert!(store.claim_task(&claim).await.unwrap());
    }
    for id in ["lost-call", "lapsed", "running"] {
        assert!(store.reserve(&quotas, &ask(id, 1)).await.unwrap().is_none());
    }
    let young = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        store.release_stale_holds(young, now).await.unwrap(),
        0,
        "too young to be stale"
    );
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.release_stale_holds(later, now).await.unwrap(), 2);
    assert_eq!(
        counted(store).await.reserved.requests,
        1,
        "the live one holds"
    );
    let held = db.raw_strings("SELECT request_id FROM quota_holds").await;
    assert_eq!(held, ["running"]);
    // Removing the quota removes its counters and holds.
    assert!(
        store
            .delete_quota("acme", None, QuotaPeriod::Day)
            .await
            .unwrap()
    );
    assert!(
        db.raw_strings("SELECT request_id FROM quota_holds")
            .await
            .is_empty()
    );
}

async fn a_quota_set_mid_period_counts_what_was_used_already(db: &TestDb) {
    let store = &db.store;
    for _ in 0..3 {
        let earlier = UsageRecord {
            charged: true,
            task_id: None,
            ..usage(0, 1, 0.0)
        };
        store.record_usage(&earlier).await.unwrap();
    }
    let quotas = set(
        store,
        Quota {
            max_images: Some(4),
            ..Quota::new("acme", QuotaPeriod::Month)
        },
    )
    .await;
    assert_eq!(
        counted(store).await.used.images,
        3,
        "read from the usage log"
    );
    assert!(
        store
            .reserve(&quotas, &ask("r-1", 1))
            .await
            .unwrap()
            .is_none()
    );
    let refused = store.reserve(&quotas, &ask("r-2", 1)).await.unwrap();
    assert!(refused.is_some_and(|q| q.used.images == 3 && q.reserved.images == 1));
}

fn slow_mock() -> Value {
    json!([{"name": "mock-a", "provider": "mock", "options": {"latency_ms": 150},
            "rate_limit": {"rpm": 1_000_000, "burst": 10_000, "max_concurrency": 1000}}])
}

async fn put_quota(node: &Node, max_requests: i64) {
    let quota = json!({"tenant": "acme", "period": "day", "max_requests": max_requests});
    let (status, answer) = node.call("PUT", "/v1/quotas", Some(quota));
    assert_eq!(status, 200, "{answer}");
}

/// Polls `GET /v1/quotas` until nothing is reserved (records written behind settle
/// their holds a moment after the answer): the tenant-wide daily quota.
async fn settled_quota(node: &Node) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, listed) = node.call("GET", "/v1/quotas?tenant=acme", None);
        assert_eq!(status, 200, "{listed}");
        let quota = listed["quotas"][0].clone();
        if quota["reserved"]["requests"] == 0 {
            return quota;
        }
        assert!(Instant::now() < deadline, "holds never settled: {quota}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 60 jobs posted at once to two gateways on one database, against a daily maximum
/// of 10: exactly 10 complete and 50 fail with `quota_exceeded`.
async fn sixty_jobs_on_two_gateways_against_ten(db: TestDb) {
    let nodes = [
        start_node(&db, slow_mock()).await,
        start_node(&db, slow_mock()).await,
    ];
    put_quota(&nodes[0], 10).await;
    let posts: Vec<_> = (0..60)
        .map(|i| {
            let port = nodes[i % 2].port;
            tokio::task::spawn_blocking(move || {
                let job = json!({"tenant": "acme", "kind": "text.generate",
                                 "input": {"messages": [{"role": "user", "content": "hi"}]}});
                let (status, posted) = http(
                    port,
                    "POST",
                    "/v1/jobs",
                    Some(crate::reload::TOKEN),
                    Some(&job),
                );
                assert_eq!(status, 202, "{posted}");
                posted["id"].as_i64().unwrap()
            })
        })
        .collect();
    let mut ended = Vec::new();
    for (i, post) in posts.into_iter().enumerate() {
        let id = post.await.unwrap();
        ended.push(nodes[i % 2].job_end(id).await);
    }
    let done = ended.iter().filter(|j| j["status"] == "done").count();
    let over = ended
        .iter()
        .filter(|j| j["error"]["code"] == "quota_exceeded")
        .count();
    assert_eq!((done, over), (10, 50), "{ended:?}");
    let quota = settled_quota(&nodes[1]).await;
    assert_eq!(quota["used"]["requests"], 10, "{quota}");
    assert_eq!(quota["left"]["requests"], 0, "{quota}");
    for node in nodes {
        node.stop().await;
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_jobs_on_two_gateways_against_a_quota_of_ten_run_ten_on_sqlite() {
    sixty_jobs_on_two_gateways_against_ten(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_jobs_on_two_gateways_against_a_quota_of_ten_run_ten_on_postgres() {
    sixty_jobs_on_two_gateways_against_ten(TestDb::postgres().await).await;
}

/// The synchronous path (an OpenAI-compatible call runs on the receiving gateway with
/// its record written after the answer) reserves just the same: 60 chat calls at once
/// against 10 give 10 answers and 50 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_chat_calls_at_once_against_a_quota_of_ten_answer_ten() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, slow_mock()).await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    put_quota(&node, 10).await;
    let calls: Vec<_> = (0..60)
        .map(|_| {
            let (port, key) = (node.port, key.clone());
            tokio::task::spawn_blocking(move || {
                let ask = json!({"model": "auto",
                                 "messages": [{"role": "user", "content": "hi"}]});
                http(port, "POST", "/v1/chat/completions", Some(&key), Some(&ask))
            })
        })
        .collect();
    let mut answered = 0;
    let mut refused = 0;
    for call in calls {
        let (status, body) = call.await.unwrap();
        match status {
            200 => answered += 1,
            429 => {
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((answered, refused), (10, 50));
    let quota = settled_quota(&node).await;
    assert_eq!(quota["used"]["requests"], 10, "{quota}");
    node.stop().await;
    db.cleanup().await;
}
