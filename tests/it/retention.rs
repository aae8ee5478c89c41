//! Retention (#17 §2) on both databases: tasks, images and usage rows go after their
//! tenant's policy (its own, else the defaults), in batches; an image a kept task
//! still references is never deleted (counted by content hash); a dry run deletes
//! nothing; and one cleaner runs for the whole cluster, chosen by the lease.

use switchyard_runtime::{
    artifacts::{ArtifactError, ArtifactStore},
    retention::{Cleaner, RetentionError, RetentionReport},
    settings::RetentionSettings,
    store::{RetentionPolicy, Store},
};

use crate::support::TestDb;

/// A distinct w×1 PNG (its id is its content hash).
fn png(width: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, 1);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&vec![7; width as usize]).unwrap();
    drop(writer);
    out
}

/// The defaults of these tests: tasks 10 days, images 5, usage 40; batches of 2 so
/// that every delete loops; no grace, so images written just now may go.
fn settings() -> RetentionSettings {
    RetentionSettings {
        tasks_days: 10,
        artifacts_days: 5,
        usage_days: 40,
        batch: 2,
        grace_ms: 0,
        ..RetentionSettings::default()
    }
}

/// A UTC time `days` ago as SQL text both databases read.
fn ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A task of `tenant` ended `days` ago (`status` completed or failed; pending: not
/// ended, created then), with a result per image in `images`.
async fn task(db: &TestDb, tenant: &str, request: &str, status: &str, days: i64, images: &[&str]) {
    let at = ago(days);
    let completed = if status == "pending" {
        "NULL".to_owned()
    } else {
        format!("'{at}'")
    };
    db.raw_execute(&format!(
        "INSERT INTO tasks (request_id, tenant, kind, command, status, created_at, completed_at) \
         VALUES ('{request}', '{tenant}', 'image.generate', '{{}}', '{status}', '{at}', {completed})"
    ))
    .await;
    for image in images {
        db.raw_execute(&format!(
            "INSERT INTO task_results (task_id, artifact_id, created_at) \
             SELECT id, '{image}', '{at}' FROM tasks WHERE request_id = '{request}'"
        ))
        .await;
    }
}

async fn usage(db: &TestDb, tenant: &str, days: i64) {
    db.raw_execute(&format!(
        "INSERT INTO usage_log (tenant, provider, kind, created_at) \
         VALUES ('{tenant}', 'mock', 'image.generate', '{}')",
        ago(days)
    ))
    .await;
}

async fn exists(artifacts: &ArtifactStore, id: &str) -> bool {
    match artifacts.get(id).await {
        Ok(_) => true,
        Err(ArtifactError::NotFound(_)) => false,
        Err(e) => panic!("artifact store: {e}"),
    }
}

async fn count(db: &TestDb, sql: &str) -> usize {
    db.raw_strings(sql).await.len()
}

async fn policies_apply_and_nothing_referenced_is_deleted(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
    let mut ids = Vec::new();
    for width in 1..=5 {
        ids.push(artifacts.put(&png(width)).await.unwrap().id);
    }
    let [a, b, c, d, e] = [&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]];
    // acme has the defaults; keeper keeps tasks and images for ever.
    db.store
        .set_tenant_retention(
            "keeper",
            &RetentionPolicy {
                tasks_days: Some(0),
                artifacts_days: Some(0),
                usage_days: Some(0),
            },
        )
        .await
        .unwrap();
    task(&db, "acme", "t1", "completed", 20, &[a]).await; // goes, and A with it
    task(&db, "acme", "t2", "failed", 20, &[b]).await; // goes, but B stays:
    task(&db, "keeper", "t3", "completed", 20, &[b]).await; // kept, holds B
    task(&db, "acme", "t4", "completed", 7, &[c]).await; // kept; its image C goes
    task(&db, "acme", "t6", "completed", 1, &[e]).await; // kept with E
    // An unfinished edit names D as its mask; acme's upload of D expires.
    db.raw_execute(&format!(
        "INSERT INTO tasks (request_id, tenant, kind, command, status, created_at) \
         VALUES ('t5', 'acme', 'image.edit', \
         '{{\"input\": {{\"mask\": {{\"artifact_id\": \"{d}\"}}}}}}', 'pending', '{}')",
        ago(20)
    ))
    .await;
    db.raw_execute(&format!(
        "INSERT INTO artifact_uploads (artifact_id, tenant, created_at) VALUES ('{d}', 'acme', '{}')",
        ago(20)
    ))
    .await;
    for days in [50, 50, 50, 10] {
        usage(&db, "acme", days).await;
    }
    // acme's webhook log: a finished delivery goes with the tasks; a pending one stays.
    db.raw_execute(&format!(
        "INSERT INTO webhooks (tenant, url, events, secret_ciphertext, created_at) \
         VALUES ('acme', 'https://example.com/hook', '[\"completed\"]', 'x', '{}')",
        ago(30)
    ))
    .await;
    for (event, status) in [("e1", "delivered"), ("e2", "failed"), ("e3", "pending")] {
        db.raw_execute(&format!(
            "INSERT INTO webhook_deliveries (webhook_id, tenant, event_id, event_type, \
             request_id, payload, status, next_attempt_ms, created_at) SELECT id, 'acme', \
             '{event}', 'completed', 't1', '{{}}', '{status}', 0, '{}' FROM webhooks",
            ago(20)
        ))
        .await;
    }
    usage(&db, "keeper", 50).await;

    let cleaner = Cleaner::new(db.store.clone(), artifacts.clone(), settings());
    let dry = cleaner.run(true).await.unwrap();
    assert_eq!(
        dry,
        RetentionReport {
            dry_run: true,
            tasks: 2,
            results_released: 3,
            uploads: 1,
            deliveries: 2,
            usage: 3,
            ..RetentionReport::default()
        }
    );
    assert_eq!(count(&db, "SELECT request_id FROM tasks").await, 6);
    for id in &ids {
        assert!(exists(&artifacts, id).await, "a dry run deleted {id}");
    }

    let report = cleaner.run(false).await.unwrap();
    assert_eq!(
        report,
        RetentionReport {
            dry_run: false,
            tasks: 2,
            results_released: 3,
            uploads: 1,
            deliveries: 2,
            batches: 0,
            usage: 3,
            attempts: 0,
            artifacts_deleted: 2,
            artifacts_referenced: 2,
            artifacts_recent: 0,
        }
    );
    assert!(!exists(&artifacts, a).await, "A lost its only reference");
    assert!(exists(&artifacts, b).await, "B is still keeper's");
    assert!(!exists(&artifacts, c).await, "C outlived artifacts_days");
    assert!(
        exists(&artifacts, d).await,
        "D is an unfinished task's input"
    );
    assert!(exists(&artifacts, e).await, "E is young");
    let mut left = db.raw_strings("SELECT request_id FROM tasks").await;
    left.sort();
    assert_eq!(left, ["t3", "t4", "t5", "t6"]);
    // t4's result row stays, released: it no longer makes acme an owner of C.
    assert!(db.store.artifact_owners(c).await.unwrap().is_empty());
    assert_eq!(db.store.artifact_owners(b).await.unwrap(), ["keeper"]);
    assert_eq!(count(&db, "SELECT tenant FROM usage_log").await, 2);
    // D stays queued: nothing queues it again when t5 ends.
    assert_eq!(
        db.raw_strings("SELECT artifact_id FROM artifact_gc").await,
        [d.as_str()]
    );
    assert_eq!(
        db.raw_strings("SELECT event_id FROM webhook_deliveries")
            .await,
        ["e3"]
    );

    // Nothing is left to do.
    let again = cleaner.run(false).await.unwrap();
    assert_eq!(again.tasks + again.results_released + again.usage, 0);
    assert_eq!(again.artifacts_deleted, 0);
    // t5 ends: nothing holds D any more, and the next run deletes it.
    db.raw_execute(&format!(
        "UPDATE tasks SET status = 'failed', completed_at = '{}' WHERE request_id = 't5'",
        ago(0)
    ))
    .await;
    let after = cleaner.run(false).await.unwrap();
    assert_eq!(after.artifacts_deleted, 1, "{after:?}");
    assert!(
        !exists(&artifacts, d).await,
        "D outlived the task that used it"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn retention_applies_each_tenants_policy_on_sqlite() {
    policies_apply_and_nothing_referenced_is_deleted(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn retention_applies_each_tenants_policy_on_postgres() {
    policies_apply_and_nothing_referenced_is_deleted(TestDb::postgres().await).await;
}

#[tokio::test]
async fn an_image_written_within_the_grace_waits_for_a_later_run() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
    let id = artifacts.put(&png(3)).await.unwrap().id;
    task(&db, "acme", "t1", "completed", 20, &[&id]).await;
    let slow = RetentionSettings {
        grace_ms: 3_600_000,
        ..settings()
    };
    let report = Cleaner::new(db.store.clone(), artifacts.clone(), slow)
        .run(false)
        .await
        .unwrap();
    assert_eq!((report.tasks, report.artifacts_recent), (1, 1));
    assert!(exists(&artifacts, &id).await);
    // Still queued: the next run without the grace deletes it.
    let report = Cleaner::new(db.store.clone(), artifacts.clone(), settings())
        .run(false)
        .await
        .unwrap();
    assert_eq!(report.artifacts_deleted, 1);
    assert!(!exists(&artifacts, &id).await);
    db.cleanup().await;
}

/// Two processes' cleaners (each its own connection pool) on one PostgreSQL database:
/// within an interval only one of them runs, and a run is refused while another
/// process holds the lease; an expired lease is taken over.
#[tokio::test]
async fn one_cleaner_runs_for_the_whole_cluster() {
    let db = TestDb::postgres().await;
    let key = || switchyard_runtime::MasterKey::from_base64(&db.key_b64).unwrap();
    let second: Store = db.reopen_with(key()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
    let hourly = RetentionSettings {
        interval_ms: 3_600_000,
        ..settings()
    };
    let one = Cleaner::new(db.store.clone(), artifacts.clone(), hourly.clone());
    let two = Cleaner::new(second.clone(), artifacts.clone(), hourly);
    let mut ran = 0;
    for _ in 0..5 {
        let (a, b) = tokio::join!(one.tick(), two.tick());
        ran += usize::from(a.unwrap().is_some()) + usize::from(b.unwrap().is_some());
    }
    assert_eq!(ran, 1, "one run per interval across the cluster");

    // Another process is cleaning (it holds the lease): a run now is refused.
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        second
            .take_lease("retention", "other", now, now + 60_000, i64::MAX)
            .await
            .unwrap()
    );
    assert!(matches!(one.run(false).await, Err(RetentionError::Busy)));
    // Its lease runs out (it died): the next run takes over.
    second.renew_lease("retention", "other", 1).await.unwrap();
    assert!(one.run(false).await.is_ok());
    second.close().await;
    db.cleanup().await;
}

/// The admin API sets, shows and removes a tenant's policy and names a bad field; a
/// running server's cleaner applies it in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_cleaner_applies_the_policy_set_through_the_admin_api() {
    use serde_json::{Value, json};
    let db = TestDb::sqlite().await;
    let node = crate::reload::start_node_with(
        &db,
        json!([{"name": "mock-a", "provider": "mock"}]),
        "memory://",
        "switchyard",
        |s| {
            s.retention.interval_ms = 200;
            s.retention.tasks_days = 0;
        },
    )
    .await;
    let (status, shown) = node.call("GET", "/v1/tenants/acme/retention", None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["own"]["tasks_days"], Value::Null, "{shown}");
    assert_eq!(shown["effective"]["tasks_days"], 0, "for ever: {shown}");
    assert_eq!(shown["effective"]["usage_days"], 400, "{shown}");
    for (bad, named) in [
        (json!({"usage_days": 7}), "usage_days"),
        (json!({"tasks_days": -1}), "tasks_days"),
        (json!({"artifacts_days": 40000}), "artifacts_days"),
        (json!({"keep": 5}), "keep"),
    ] {
        let (status, body) = node.call("PUT", "/v1/tenants/acme/retention", Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{bad}: {body}");
    }
    let (status, _) = crate::reload::http(
        node.port,
        "PUT",
        "/v1/tenants/acme/retention",
        None,
        Some(&json!({"tasks_days": 1})),
    );
    assert_eq!(status, 401, "retention needs the admin token");

    task(&db, "acme", "old", "completed", 3, &[]).await;
    task(&db, "other", "old", "completed", 3, &[]).await;
    let (status, body) = node.call(
        "PUT",
        "/v1/tenants/acme/retention",
        Some(json!({"tasks_days": 1})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["effective"]["tasks_days"], 1, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(&db, "SELECT tenant FROM tasks WHERE tenant = 'acme'").await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cleaner never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        db.raw_strings("SELECT tenant FROM tasks").await,
        ["other"],
        "the default keeps other's for ever"
    );
    let (status, _) = node.call("DELETE", "/v1/tenants/acme/retention", None);
    assert_eq!(status, 204);
    let (status, _) = node.call("DELETE", "/v1/tenants/acme/retention", None);
    assert_eq!(status, 404);
    node.stop().await;
    db.cleanup().await;
}
