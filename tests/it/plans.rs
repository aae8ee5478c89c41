//! Plans (#16 §4): seed 004's plans ship as editable defaults; a tenant assigned a plan
//! gets it as a quota (reserved from and counted like any), its own quota for the same
//! period wins, and editing a plan edits every tenant's quota of it. On both databases,
//! and enforced at admission.

use serde_json::{Value, json};
use switchyard_runtime::store::{Plan, PlanError, Quota, QuotaPeriod, Store, StoredQuota};

use crate::{
    reload::{http, start_node},
    support::{TestDb, on_both_databases},
};

on_both_databases!(plans_ship_as_defaults_and_follow_their_tenants);

fn tenant_wide(quotas: &[StoredQuota]) -> Vec<(Option<String>, QuotaPeriod, Option<i64>)> {
    quotas
        .iter()
        .filter(|q| q.quota.user.is_none())
        .map(|q| (q.plan.clone(), q.quota.period, q.quota.max_images))
        .collect()
}

async fn acme(store: &Store) -> Vec<(Option<String>, QuotaPeriod, Option<i64>)> {
    tenant_wide(&store.stored_quotas("acme").await.unwrap())
}

async fn plans_ship_as_defaults_and_follow_their_tenants(db: &TestDb) {
    let store = &db.store;
    let plans = store.plans().await.unwrap();
    let shipped: Vec<(&str, Option<i64>, Option<i64>)> = plans
        .iter()
        .map(|p| (p.name.as_str(), p.max_tokens, p.max_images))
        .collect();
    assert_eq!(
        shipped,
        [
            ("basic", Some(100_000), Some(50)),
            ("enterprise", Some(2_000_000), Some(1_000)),
            ("professional", Some(500_000), Some(200)),
        ]
    );
    assert!(plans.iter().all(|p| p.period == QuotaPeriod::Month));

    store.assign_plan("acme", "basic").await.unwrap();
    let month = QuotaPeriod::Month;
    assert_eq!(acme(store).await, [(Some("basic".into()), month, Some(50))]);
    assert_eq!(
        store.tenant_plan("acme").await.unwrap().as_deref(),
        Some("basic")
    );
    // A plan's quota is not removed as a quota of the tenant's own (its counters stay).
    assert!(!store.delete_quota("acme", None, month).await.unwrap());
    assert_eq!(acme(store).await, [(Some("basic".into()), month, Some(50))]);

    // The tenant's own quota for the month wins, and gives way again when removed.
    store
        .set_quota(&Quota {
            max_images: Some(5),
            ..Quota::new("acme", month)
        })
        .await
        .unwrap();
    assert_eq!(acme(store).await, [(None, month, Some(5))]);
    assert!(store.delete_quota("acme", None, month).await.unwrap());
    assert_eq!(acme(store).await, [(Some("basic".into()), month, Some(50))]);

    // Editing the plan edits the tenant's quota of it, also across periods.
    let mut basic = plans[0].clone();
    basic.max_images = Some(60);
    assert_eq!(store.set_plan(&basic).await.unwrap(), ["acme"]);
    assert_eq!(acme(store).await, [(Some("basic".into()), month, Some(60))]);
    basic.period = QuotaPeriod::Day;
    store.set_plan(&basic).await.unwrap();
    assert_eq!(
        acme(store).await,
        [(Some("basic".into()), QuotaPeriod::Day, Some(60))]
    );

    // Another plan replaces the first; an unknown one is refused.
    store.assign_plan("acme", "enterprise").await.unwrap();
    assert_eq!(
        acme(store).await,
        [(Some("enterprise".into()), month, Some(1_000))]
    );
    assert!(matches!(
        store.assign_plan("acme", "gold").await,
        Err(PlanError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_plan("enterprise").await,
        Err(PlanError::InUse { tenants: 1, .. })
    ));
    assert!(store.unassign_plan("acme").await.unwrap());
    assert!(acme(store).await.is_empty());
    assert!(!store.unassign_plan("acme").await.unwrap());
    store.delete_plan("enterprise").await.unwrap();
    assert!(matches!(
        store.delete_plan("enterprise").await,
        Err(PlanError::NotFound(_))
    ));
    let custom = Plan {
        name: "tiny".into(),
        period: QuotaPeriod::Day,
        max_requests: Some(2),
        max_images: None,
        max_tokens: None,
        max_cost_usd: None,
    };
    assert!(custom.check().is_ok());
    assert!(
        Plan {
            name: "a b".into(),
            ..custom.clone()
        }
        .check()
        .unwrap_err()
        .contains("name")
    );
    assert!(
        Plan {
            max_requests: None,
            ..custom
        }
        .check()
        .unwrap_err()
        .contains("at least one")
    );
}

fn chat(port: u16, key: &str) -> (u16, Value) {
    let ask = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    http(port, "POST", "/v1/chat/completions", Some(key), Some(&ask))
}

/// A plan's quota is enforced at admission like the tenant's own, and its own quota
/// for the period overrides it; the admin API manages both and `GET /v1/quotas` says
/// where a quota comes from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_enforced_and_the_tenants_own_quota_overrides_it() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let (status, body) = node.call(
        "PUT",
        "/v1/plans/tiny",
        Some(json!({"period": "day", "max_requests": 2})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.call("PUT", "/v1/plans/bad", Some(json!({"period": "week"})));
    assert_eq!(status, 400, "{body}");
    let (status, body) = node.call(
        "PUT",
        "/v1/tenants/acme/plan",
        Some(json!({"plan": "gold"})),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = node.call(
        "PUT",
        "/v1/tenants/acme/plan",
        Some(json!({"plan": "tiny"})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, listed) = node.call("GET", "/v1/plans", None);
    assert!(
        listed["plans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "tiny")
    );

    assert_eq!(chat(node.port, &key).0, 200);
    assert_eq!(chat(node.port, &key).0, 200);
    let (status, body) = chat(node.port, &key);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let (_, quotas) = node.call("GET", "/v1/quotas?tenant=acme", None);
    assert_eq!(quotas["quotas"][0]["plan"], "tiny", "{quotas}");

    // The tenant's own daily quota takes the plan's place, with what it counted.
    let own = json!({"tenant": "acme", "period": "day", "max_requests": 3});
    assert_eq!(node.call("PUT", "/v1/quotas", Some(own)).0, 200);
    let (_, quotas) = node.call("GET", "/v1/quotas?tenant=acme", None);
    assert_eq!(quotas["quotas"][0]["plan"], Value::Null, "{quotas}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Written behind the answers: wait until both calls are counted.
        let (_, quotas) = node.call("GET", "/v1/quotas?tenant=acme", None);
        if quotas["quotas"][0]["reserved"]["requests"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{quotas}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        chat(node.port, &key).0,
        200,
        "the third fits the tenant's own 3"
    );
    assert_eq!(chat(node.port, &key).0, 429);

    let (status, _) = node.call("DELETE", "/v1/plans/tiny", None);
    assert_eq!(status, 409, "still assigned");
    assert_eq!(node.call("DELETE", "/v1/tenants/acme/plan", None).0, 204);
    assert_eq!(node.call("DELETE", "/v1/tenants/acme/plan", None).0, 404);
    assert_eq!(node.call("DELETE", "/v1/plans/tiny", None).0, 204);
    let (_, plan) = node.call("GET", "/v1/tenants/acme/plan", None);
    assert_eq!(plan["plan"], Value::Null, "{plan}");
    node.stop().await;
    db.cleanup().await;
}
