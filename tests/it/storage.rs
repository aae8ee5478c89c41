//! The storage suite: the same tests against SQLite and PostgreSQL.

use chrono::{Duration, Utc};
use serde_json::json;
use switchyard_core::{
    Command, ConfigId, ConfigRef, ErrorCode, Kind, ProviderConfigDraft, ProviderType,
};
use switchyard_runtime::{
    MasterKey, OpenError,
    store::{
        Completion, ConfigWriteError, Failure, NewTask, NewTaskResult, ProviderFilter, Start,
        StoredJson, TaskInsert, TaskStatus, UsageRecord,
    },
};

use crate::support::{TestDb, on_both_databases};

fn completion(
    id: i64,
    config_id: Option<ConfigId>,
    attempts: i64,
    raw_response: Option<serde_json::Value>,
    results: &[NewTaskResult],
    event: &serde_json::Value,
) -> Completion {
    Completion {
        id,
        config_id,
        attempts,
        raw_response,
        results: results.to_vec(),
        terminal_event: StoredJson::of(event),
        usage: None,
        held: false,
        attempt_log: Vec::new(),
    }
}

fn failure(
    id: i64,
    config_id: Option<ConfigId>,
    attempts: i64,
    code: ErrorCode,
    message: &str,
    event: &serde_json::Value,
) -> Failure {
    Failure {
        id,
        config_id,
        attempts,
        code,
        message: message.to_owned(),
        terminal_event: StoredJson::of(event),
        usage: None,
        held: false,
        attempt_log: Vec::new(),
    }
}

fn start(id: i64, config_id: ConfigId, attempt: i64, seq: i64) -> Start {
    Start {
        id,
        config_id,
        attempt,
        seq,
        own_accounts_only: false,
    }
}

const KEY: &str = "sk-stability-PLAINTEXT-0123456789";

fn draft(value: serde_json::Value) -> ProviderConfigDraft {
    serde_json::from_value(value).unwrap()
}

fn stability(name: &str, priority: i64) -> ProviderConfigDraft {
    draft(json!({
        "name": name, "provider": "stability", "api_key": KEY, "priority": priority,
        "model": "stable-diffusion-xl-1024-v1-0",
        "rate_limit": {"rpm": 150, "burst": 10, "max_concurrency": 3},
        "cost": {"per_image": {"1024x1024": 0.04, "default": 0.04}},
    }))
}

fn command(request_id: &str) -> Command {
    serde_json::from_value(json!({
        "request_id": request_id, "tenant": "acme", "user": "u-42", "kind": "image.edit",
        "input": {"prompt": "make it blue", "size": "1024x1024",
                  "images": [{"url": "https://example.com/a.png"}]},
        "route": {"model": "sdxl"},
    }))
    .unwrap()
}

on_both_databases!(
    provider_crud_round_trips,
    many_accounts_of_one_type_coexist_and_names_are_unique,
    patch_bumps_version_and_keeps_the_key,
    stale_writes_are_refused,
    list_filters_and_paginates,
    api_key_is_encrypted_at_rest,
    wrong_master_key_is_a_clear_error,
    hand_edits_bump_the_version_and_invalid_rows_are_reported,
    task_idempotency_key_is_unique,
    task_reaches_a_terminal_status_once,
    task_results_and_parameters_are_stored,
    usage_is_summed_per_provider_model_and_kind,
    usage_totals_count_a_tenant_or_one_user_since_a_time,
    seeding_never_overwrites_operator_edits,
    usage_is_written_with_the_terminal_row_and_only_once,
    group_commit_keeps_every_answer_of_the_single_writes,
    a_task_is_claimed_by_one_run_at_a_time,
    a_task_inserted_claimed_is_held_by_its_inserter,
);

async fn a_task_is_claimed_by_one_run_at_a_time(db: &TestDb) {
    use switchyard_runtime::store::Claim;
    let store = &db.store;
    let writes = switchyard_runtime::store::GroupCommit::start(store.clone());
    let task = store
        .create_task(&NewTask::from_command(&command("claimed-1")))
        .await
        .unwrap()
        .task()
        .clone();
    let claim = |owner: &str, now_ms: i64| Claim {
        id: task.id,
        owner: owner.to_owned(),
        until_ms: now_ms + 30_000,
        now_ms,
    };
    assert!(writes.claim_task(claim("run-a", 1_000)).await.unwrap());
    // Another run waits while the lease is live; the holder renews it.
    assert!(!writes.claim_task(claim("run-b", 2_000)).await.unwrap());
    assert!(writes.claim_task(claim("run-a", 20_000)).await.unwrap());
    assert!(!writes.claim_task(claim("run-b", 40_000)).await.unwrap());
    // Once the lease has lapsed (the holder is gone), another run takes over.
    assert!(store.claim_task(&claim("run-b", 60_000)).await.unwrap());
    assert!(!writes.claim_task(claim("run-a", 61_000)).await.unwrap());
    // A finished task is nobody's to claim.
    assert!(
        store
            .fail_task(&failure(
                task.id,
                None,
                1,
                ErrorCode::Timeout,
                "late",
                &json!({})
            ))
            .await
            .unwrap()
    );
    assert!(!writes.claim_task(claim("run-b", 62_000)).await.unwrap());
    assert!(!writes.claim_task(claim("run-c", 999_000)).await.unwrap());
}

/// A task inserted with a claim is held by its inserter from the start: no second
/// write, and another run waits until the lease lapses.
async fn a_task_inserted_claimed_is_held_by_its_inserter(db: &TestDb) {
    use switchyard_runtime::store::Claim;
    let store = &db.store;
    let writes = switchyard_runtime::store::GroupCommit::start(store.clone());
    let inserted = writes
        .create_task(
            NewTask::from_command(&command("claimed-at-insert"))
                .claimed_by("run-a".to_owned(), 31_000),
        )
        .await
        .unwrap();
    assert!(matches!(inserted, TaskInsert::Created(_)));
    let id = inserted.task().id;
    let claim = |owner: &str, now_ms: i64| Claim {
        id,
        owner: owner.to_owned(),
        until_ms: now_ms + 30_000,
        now_ms,
    };
    assert!(!writes.claim_task(claim("run-b", 2_000)).await.unwrap());
    assert!(writes.claim_task(claim("run-a", 3_000)).await.unwrap());
    // The same insert again (a duplicate delivery) finds the row and takes no claim.
    let again = writes
        .create_task(
            NewTask::from_command(&command("claimed-at-insert"))
                .claimed_by("run-b".to_owned(), 99_000),
        )
        .await
        .unwrap();
    assert!(matches!(again, TaskInsert::Existing(_)));
    assert!(!writes.claim_task(claim("run-b", 4_000)).await.unwrap());
    assert!(writes.claim_task(claim("run-b", 40_000)).await.unwrap());
}

async fn provider_crud_round_trips(db: &TestDb) {
    let store = &db.store;
    let spec = stability("stability-main", 100).validate().unwrap();
    let created = store.insert_provider(&spec).await.unwrap();
    assert_eq!(created.version, 1);
    let read = store.get_provider(created.id).await.unwrap().unwrap();
    let config = read.config().unwrap();
    assert_eq!(config.spec, spec);
    assert_eq!(config.spec.api_key.as_ref().unwrap().expose(), KEY);
    let by_name = store
        .find_provider(&ConfigRef::Name("stability-main".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, created.id);
    assert!(store.delete_provider(created.id).await.unwrap());
    assert!(!store.delete_provider(created.id).await.unwrap());
    assert!(store.get_provider(created.id).await.unwrap().is_none());
}

async fn many_accounts_of_one_type_coexist_and_names_are_unique(db: &TestDb) {
    let store = &db.store;
    store
        .insert_provider(&stability("stab-a", 100).validate().unwrap())
        .await
        .unwrap();
    store
        .insert_provider(&stability("stab-b", 90).validate().unwrap())
        .await
        .unwrap();
    let err = store
        .insert_provider(&stability("stab-a", 10).validate().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConfigWriteError::NameTaken(ref n) if n == "stab-a"),
        "{err}"
    );
    let all = store
        .list_providers(&ProviderFilter {
            provider: Some(ProviderType::Stability),
            ..ProviderFilter::default()
        })
        .await
        .unwrap();
    let names: Vec<_> = all.iter().map(|r| r.name().to_owned()).collect();
    assert_eq!(names, ["stab-a", "stab-b"]);
}

async fn patch_bumps_version_and_keeps_the_key(db: &TestDb) {
    let store = &db.store;
    let created = store
        .insert_provider(&stability("s", 100).validate().unwrap())
        .await
        .unwrap();
    let patched = store
        .patch_provider(
            created.id,
            draft(json!({"priority": 200, "rate_limit": {"rpm": 30}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.version, 2);
    assert_eq!(patched.spec.priority, 200);
    assert_eq!(patched.spec.rate_limit.rpm, 30);
    // An account never changes hands, whoever patches it (API or local CLI).
    let moved = store
        .patch_provider(created.id, draft(json!({"owner": "acme"})))
        .await
        .unwrap_err();
    assert!(
        moved.to_string().contains("owner") || format!("{moved:?}").contains("owner"),
        "{moved:?}"
    );
    assert_eq!(
        patched.spec.rate_limit.burst, 10,
        "unpatched nested fields stay"
    );
    // A masked key sent back (as read from the API) leaves the real key in place.
    let patched = store
        .patch_provider(
            created.id,
            draft(json!({"api_key": "sk-…6789", "weight": 3})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.api_key.unwrap().expose(), KEY);
    // A new key replaces it.
    let patched = store
        .patch_provider(
            created.id,
            draft(json!({"api_key": "sk-new-key-abcdefghijkl"})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.spec.api_key.unwrap().expose(),
        "sk-new-key-abcdefghijkl"
    );
    assert_eq!(patched.version, 4);
    // An invalid patch is refused with field errors and changes nothing.
    let err = store
        .patch_provider(created.id, draft(json!({"rate_limit": {"rpm": 0}})))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid provider config: rate_limit.rpm must be > 0"
    );
    assert_eq!(
        store
            .get_provider(created.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        4
    );
    let missing = store
        .patch_provider(ConfigId(9999), ProviderConfigDraft::default())
        .await;
    assert!(matches!(
        missing,
        Err(ConfigWriteError::NotFound(ConfigId(9999)))
    ));
}

async fn stale_writes_are_refused(db: &TestDb) {
    let store = &db.store;
    let created = store
        .insert_provider(&stability("s", 100).validate().unwrap())
        .await
        .unwrap();
    let spec = stability("s", 5).validate().unwrap();
    store
        .update_provider(created.id, &spec, Some(1))
        .await
        .unwrap();
    let err = store
        .update_provider(created.id, &spec, Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigWriteError::VersionConflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
}

async fn list_filters_and_paginates(db: &TestDb) {
    let store = &db.store;
    for (name, provider, priority, enabled) in [
        ("m1", "mock", 10, true),
        ("m2", "mock", 30, false),
        ("m3", "mock", 20, true),
    ] {
        let d = draft(
            json!({"name": name, "provider": provider, "priority": priority, "enabled": enabled}),
        );
        store.insert_provider(&d.validate().unwrap()).await.unwrap();
    }
    let text_only = draft(json!({"name": "claude", "provider": "anthropic", "api_key": KEY}));
    store
        .insert_provider(&text_only.validate().unwrap())
        .await
        .unwrap();
    let names = |records: Vec<switchyard_runtime::store::ProviderRecord>| {
        records
            .iter()
            .map(|r| r.name().to_owned())
            .collect::<Vec<_>>()
    };
    let all = store
        .list_providers(&ProviderFilter::default())
        .await
        .unwrap();
    assert_eq!(names(all), ["m2", "m3", "m1", "claude"]);
    let enabled_images = store
        .list_providers(&ProviderFilter {
            enabled: Some(true),
            kind: Some(Kind::ImageGenerate),
            ..ProviderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(names(enabled_images), ["m3", "m1"]);
    let page = store
        .list_providers(&ProviderFilter {
            offset: 1,
            limit: Some(2),
            ..ProviderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(names(page), ["m3", "m1"]);
}

async fn api_key_is_encrypted_at_rest(db: &TestDb) {
    let store = &db.store;
    store
        .insert_provider(&stability("s", 100).validate().unwrap())
        .await
        .unwrap();
    let stored = db
        .raw_strings("SELECT api_key_ciphertext FROM provider_configs")
        .await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("v1:"), "{}", stored[0]);
    assert!(!stored[0].contains("PLAINTEXT"));
    if let Some(path) = db.sqlite_path() {
        store.close().await;
        // Every byte of the database files, WAL included.
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            if let Ok(bytes) = std::fs::read(&file) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains("PLAINTEXT"), "plaintext key found in {file}");
            }
        }
    } else {
        let dump = db
            .raw_strings("SELECT row_to_json(p)::text FROM provider_configs p")
            .await;
        assert!(!dump.concat().contains("PLAINTEXT"));
    }
}

async fn wrong_master_key_is_a_clear_error(db: &TestDb) {
    let created = db
        .store
        .insert_provider(&stability("s", 100).validate().unwrap())
        .await
        .unwrap();
    let (other, _) = MasterKey::generate();
    let reopened = db.reopen_with(other).await.unwrap();
    let err = reopened.check_master_key().await.unwrap_err();
    assert!(matches!(err, OpenError::WrongMasterKey));
    assert!(
        err.to_string().contains("master key does not match"),
        "{err}"
    );
    let err = reopened.get_provider(created.id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "provider config {}: cannot decrypt: the master key is not the one this value was encrypted with",
            created.id
        )
    );
    reopened.close().await;
    // The right key still works.
    let right = db
        .reopen_with(MasterKey::from_base64(&db.key_b64).unwrap())
        .await
        .unwrap();
    right.check_master_key().await.unwrap();
    assert!(right.get_provider(created.id).await.unwrap().is_some());
    right.close().await;
}

async fn hand_edits_bump_the_version_and_invalid_rows_are_reported(db: &TestDb) {
    let store = &db.store;
    let created = store
        .insert_provider(
            &draft(json!({"name": "m", "provider": "mock"}))
                .validate()
                .unwrap(),
        )
        .await
        .unwrap();
    db.raw_execute("UPDATE provider_configs SET priority = 200 WHERE name = 'm'")
        .await;
    let record = store.get_provider(created.id).await.unwrap().unwrap();
    assert_eq!(record.version, 2, "a hand edit bumps the version");
    assert_eq!(record.config().unwrap().spec.priority, 200);
    db.raw_execute("UPDATE provider_configs SET rpm = 0, provider = 'stabilty' WHERE name = 'm'")
        .await;
    let record = store.get_provider(created.id).await.unwrap().unwrap();
    let err = record.config().unwrap_err().to_string();
    assert_eq!(
        err,
        "provider unknown provider type 'stabilty' (did you mean 'stability'?); rate_limit.rpm must be > 0"
    );
    // An invalid row does not break listing.
    assert_eq!(
        store
            .list_providers(&ProviderFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn task_idempotency_key_is_unique(db: &TestDb) {
    let store = &db.store;
    let first = store
        .create_task(&NewTask::from_command(&command("req-1")))
        .await
        .unwrap();
    let TaskInsert::Created(task) = &first else {
        panic!("first insert must create: {first:?}");
    };
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(task.kind, "image.edit");
    assert_eq!(task.prompt.as_deref(), Some("make it blue"));
    assert_eq!(task.size.as_deref(), Some("1024x1024"));
    assert_eq!(task.model.as_deref(), Some("sdxl"));
    assert_eq!(
        task.input_images,
        Some(json!([{"url": "https://example.com/a.png"}]))
    );
    let again = store
        .create_task(&NewTask::from_command(&command("req-1")))
        .await
        .unwrap();
    assert_eq!(again, TaskInsert::Existing(task.clone()));
    // The same request id under another tenant is another task.
    let mut other = NewTask::from_command(&command("req-1"));
    other.tenant = switchyard_core::Tenant::new("globex").unwrap();
    assert!(matches!(
        store.create_task(&other).await.unwrap(),
        TaskInsert::Created(_)
    ));
    // The database itself enforces the key, not just the repository.
    let duplicate = "INSERT INTO tasks (request_id, tenant, kind, status, command) \
         VALUES ('req-1', 'acme', 'image.edit', 'pending', '{}')";
    let result = match &db.schema {
        None => {
            let pool = sqlx::SqlitePool::connect(&db.options.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(duplicate))
                .execute(&pool)
                .await
                .map(|_| ())
        }
        Some(schema) => {
            use std::str::FromStr;
            let options = sqlx::postgres::PgConnectOptions::from_str(&db.options.url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let pool = sqlx::PgPool::connect_with(options).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(duplicate))
                .execute(&pool)
                .await
                .map(|_| ())
        }
    };
    let err = result.unwrap_err();
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err}"
    );
}

async fn task_reaches_a_terminal_status_once(db: &TestDb) {
    let store = &db.store;
    let config = store
        .insert_provider(
            &draft(json!({"name": "m", "provider": "mock"}))
                .validate()
                .unwrap(),
        )
        .await
        .unwrap();
    let task = store
        .create_task(&NewTask::from_command(&command("req-2")))
        .await
        .unwrap()
        .task()
        .clone();
    assert!(
        store
            .start_attempt(start(task.id, config.id, 1, 2))
            .await
            .unwrap()
    );
    let processing = store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(processing.status, TaskStatus::Processing);
    assert!(processing.started_at.is_some());
    assert_eq!(processing.last_seq, 2);
    let event = json!({"type": "completed", "seq": 3});
    let results = [NewTaskResult {
        artifact_id: Some("a1".into()),
        text: None,
        ..NewTaskResult::default()
    }];
    assert!(
        store
            .complete_task(&completion(
                task.id,
                Some(config.id),
                1,
                Some(json!({"ok": true})),
                &results,
                &event
            ))
            .await
            .unwrap()
    );
    // A second terminal transition (a redelivery racing the first) is refused and stores nothing.
    assert!(
        !store
            .complete_task(&completion(
                task.id,
                Some(config.id),
                2,
                None,
                &results,
                &event
            ))
            .await
            .unwrap()
    );
    assert!(
        !store
            .fail_task(&failure(
                task.id,
                None,
                2,
                ErrorCode::Timeout,
                "late",
                &json!({})
            ))
            .await
            .unwrap()
    );
    assert!(
        !store
            .start_attempt(start(task.id, config.id, 2, 5))
            .await
            .unwrap()
    );
    let done = store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.terminal_event, Some(event));
    assert!(done.completed_at.is_some());
    assert_eq!(store.task_results(task.id).await.unwrap().len(), 1);

    let failed = store
        .create_task(&NewTask::from_command(&command("req-3")))
        .await
        .unwrap()
        .task()
        .clone();
    assert!(
        store
            .fail_task(&failure(
                failed.id,
                Some(config.id),
                3,
                ErrorCode::NoProvider,
                "no instance serves image.edit",
                &json!({"type": "failed"})
            ))
            .await
            .unwrap()
    );
    let failed = store.get_task(failed.id).await.unwrap().unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("no_provider"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("no instance serves image.edit")
    );
}

async fn task_results_and_parameters_are_stored(db: &TestDb) {
    let store = &db.store;
    let task = store
        .create_task(&NewTask::from_command(&command("req-4")))
        .await
        .unwrap()
        .task()
        .clone();
    let results = vec![
        NewTaskResult {
            artifact_id: Some("sha-1".into()),
            url: Some("/v1/artifacts/sha-1".into()),
            content_type: Some("image/png".into()),
            bytes: Some(1234),
            width: Some(1024),
            height: Some(1024),
            sha256: Some("ab".repeat(32)),
            model: Some("sdxl".into()),
            seed: Some(7),
            revised_prompt: Some("a blue thing".into()),
            text: None,
        },
        NewTaskResult {
            artifact_id: Some("sha-2".into()),
            ..NewTaskResult::default()
        },
    ];
    assert!(
        store
            .complete_task(&completion(task.id, None, 1, None, &results, &json!({})))
            .await
            .unwrap()
    );
    let stored = store.task_results(task.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|r| r.result.clone()).collect::<Vec<_>>(),
        results
    );
    store
        .set_task_parameters(
            task.id,
            &[
                ("size".into(), "1024x1024".into()),
                ("seed".into(), "7".into()),
            ],
        )
        .await
        .unwrap();
    store
        .set_task_parameters(task.id, &[("seed".into(), "8".into())])
        .await
        .unwrap();
    assert_eq!(
        store.task_parameters(task.id).await.unwrap(),
        [
            // Written with the task, from the command.
            ("route.strategy".to_owned(), "priority".to_owned()),
            ("seed".to_owned(), "8".to_owned()),
            ("size".to_owned(), "1024x1024".to_owned())
        ]
    );
}

async fn usage_is_summed_per_provider_model_and_kind(db: &TestDb) {
    let store = &db.store;
    let record = |provider: &str, kind: Kind, images: i64, cost: f64| UsageRecord {
        charged: true,
        task_id: None,
        tenant: "acme".into(),
        user: None,
        config_id: None,
        provider: provider.into(),
        model: Some("m1".into()),
        kind,
        images,
        input_tokens: 10,
        output_tokens: 20,
        cost_usd: cost,
    };
    store
        .record_usage(&record("openai", Kind::ImageGenerate, 1, 0.04))
        .await
        .unwrap();
    store
        .record_usage(&record("openai", Kind::ImageGenerate, 2, 0.08))
        .await
        .unwrap();
    store
        .record_usage(&record("anthropic", Kind::TextGenerate, 0, 0.01))
        .await
        .unwrap();
    let mut other = record("openai", Kind::ImageGenerate, 5, 1.0);
    other.tenant = "globex".into();
    store.record_usage(&other).await.unwrap();
    let now = Utc::now();
    let rows = store
        .usage_summary("acme", now - Duration::hours(1), now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].provider, "anthropic");
    assert_eq!(rows[1].provider, "openai");
    assert_eq!(rows[1].requests, 2);
    assert_eq!(rows[1].images, 3);
    assert_eq!(rows[1].input_tokens, 20);
    assert!((rows[1].cost_usd - 0.12).abs() < 1e-9);
    let empty = store
        .usage_summary("acme", now + Duration::hours(1), now + Duration::hours(2))
        .await
        .unwrap();
    assert!(empty.is_empty());
}

fn usage_row(user: Option<&str>, images: i64, cost_usd: f64) -> UsageRecord {
    UsageRecord {
        charged: true,
        task_id: None,
        tenant: "acme".into(),
        user: user.map(str::to_owned),
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

/// What quotas count: a tenant's (or one user's) usage rows since a time.
async fn usage_totals_count_a_tenant_or_one_user_since_a_time(db: &TestDb) {
    let store = &db.store;
    let row = usage_row;
    let before = Utc::now() - Duration::seconds(1);
    for usage in [
        row(Some("bob"), 2, 0.02),
        row(Some("ann"), 3, 0.03),
        row(None, 1, 0.01),
        UsageRecord {
            charged: true,
            tenant: "other".into(),
            ..row(Some("bob"), 9, 0.09)
        },
    ] {
        store.record_usage(&usage).await.unwrap();
    }
    let all = store.usage_totals("acme", None, before).await.unwrap();
    assert_eq!((all.requests, all.images), (3, 6));
    assert!((all.cost_usd - 0.06).abs() < 1e-9);
    let bob = store
        .usage_totals("acme", Some("bob"), before)
        .await
        .unwrap();
    assert_eq!((bob.requests, bob.images), (1, 2));
    let later = store
        .usage_totals("acme", None, Utc::now() + Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(later, Default::default());
}

async fn seeding_never_overwrites_operator_edits(db: &TestDb) {
    let store = &db.store;
    let seeds = vec![
        draft(json!({"name": "mock-primary", "provider": "mock", "priority": 100})),
        draft(json!({"name": "mock-fallback", "provider": "mock", "priority": 50})),
    ];
    let report = store.seed_providers(&seeds).await.unwrap();
    assert_eq!(report.inserted, ["mock-primary", "mock-fallback"]);
    let primary = store
        .find_provider(&ConfigRef::Name("mock-primary".into()))
        .await
        .unwrap()
        .unwrap();
    store
        .patch_provider(primary.id, draft(json!({"priority": 7})))
        .await
        .unwrap();
    let fallback = store
        .find_provider(&ConfigRef::Name("mock-fallback".into()))
        .await
        .unwrap()
        .unwrap();
    store.delete_provider(fallback.id).await.unwrap();
    // A restart seeds again: the edit stays, the deleted seed stays deleted.
    let report = store.seed_providers(&seeds).await.unwrap();
    assert!(report.inserted.is_empty());
    assert_eq!(report.already_seeded, ["mock-primary", "mock-fallback"]);
    let all = store
        .list_providers(&ProviderFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].config().unwrap().spec.priority, 7);
    // A new seed added to the file later is applied; an operator's own config with
    // that name is left alone.
    store
        .insert_provider(
            &draft(json!({"name": "ops-made", "provider": "mock", "priority": 1}))
                .validate()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut more = seeds.clone();
    more.push(draft(json!({"name": "mock-third", "provider": "mock"})));
    more.push(draft(
        json!({"name": "ops-made", "provider": "mock", "priority": 99}),
    ));
    let report = store.seed_providers(&more).await.unwrap();
    assert_eq!(report.inserted, ["mock-third"]);
    assert_eq!(report.existing, ["ops-made"]);
    let ops = store
        .find_provider(&ConfigRef::Name("ops-made".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ops.config().unwrap().spec.priority, 1);
    // A bad seed is refused naming its index, and nothing is written.
    let bad = vec![draft(
        json!({"name": "x", "provider": "mock", "rate_limit": {"rpm": 0}}),
    )];
    let err = store.seed_providers(&bad).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid provider config: providers[0].rate_limit.rpm must be > 0"
    );
}

async fn usage_is_written_with_the_terminal_row_and_only_once(db: &TestDb) {
    let store = &db.store;
    let task = store
        .create_task(&NewTask::from_command(&command("req-usage")))
        .await
        .unwrap()
        .task()
        .clone();
    let usage = UsageRecord {
        charged: true,
        task_id: Some(task.id),
        tenant: "acme".into(),
        user: Some("u-42".into()),
        config_id: Some(ConfigId(3)),
        provider: "stability".into(),
        model: Some("sdxl".into()),
        kind: Kind::ImageEdit,
        images: 2,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0.08,
    };
    let results = [
        NewTaskResult {
            artifact_id: Some("first".into()),
            width: Some(8),
            ..NewTaskResult::default()
        },
        NewTaskResult {
            artifact_id: Some("second".into()),
            text: Some("t".into()),
            ..NewTaskResult::default()
        },
    ];
    let event = json!({"type": "completed"});
    let finish = |attempts| Completion {
        usage: Some(usage.clone()),
        ..completion(task.id, Some(ConfigId(3)), attempts, None, &results, &event)
    };
    assert!(store.complete_task(&finish(1)).await.unwrap());
    // A second finisher (a redelivery racing the first) writes nothing.
    assert!(!store.complete_task(&finish(2)).await.unwrap());
    let stored: Vec<_> = store
        .task_results(task.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.result)
        .collect();
    assert_eq!(stored, results);
    let now = Utc::now();
    let rows = store
        .usage_summary("acme", now - Duration::hours(1), now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].requests, rows[0].images), (1, 2));
    assert!((rows[0].cost_usd - 0.08).abs() < 1e-9);
    let task = store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.provider_config_id, Some(ConfigId(3)));
}

/// Many concurrent writers through one [`GroupCommit`]: batched, yet each caller gets
/// exactly the answer the single-statement methods give (created or existing, and
/// whether its terminal transition won), and the rows are the same.
async fn group_commit_keeps_every_answer_of_the_single_writes(db: &TestDb) {
    use switchyard_runtime::store::{Completion, Failure, GroupCommit};
    let store = &db.store;
    let writes = GroupCommit::start(store.clone());
    // 200 creates at once, each request id twice: one creates, the other finds it.
    let creates = (0..400).map(|i| {
        let writes = writes.clone();
        async move {
            writes
                .create_task(NewTask::from_command(&command(&format!("gc-{}", i % 200))))
                .await
                .unwrap()
        }
    });
    let inserted = futures_util::future::join_all(creates).await;
    let created = inserted
        .iter()
        .filter(|i| matches!(i, TaskInsert::Created(_)))
        .count();
    assert_eq!(created, 200);
    // A valid command's `accepted` event is seq 1: a resume continues after it.
    assert!(inserted.iter().all(|i| i.task().last_seq == 1));
    let mut ids: Vec<i64> = inserted.iter().map(|i| i.task().id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    // The command's settings are parameter rows, written once per task.
    for id in &ids {
        let parameters = store.task_parameters(*id).await.unwrap();
        assert!(
            parameters.contains(&("size".to_owned(), "1024x1024".to_owned())),
            "{parameters:?}"
        );
        let sizes = parameters.iter().filter(|(name, _)| name == "size").count();
        assert_eq!(sizes, 1);
    }
    // Attempt starts, then half complete and half fail — each twice, concurrently:
    // exactly one of each pair wins.
    // Attempt starts are not waited for; the writer takes ops in order, so once a later
    // write has been answered they are in the database.
    // A task that falls back starts twice, and both may land in one batch: the later
    // start is the one that stands.
    // Odd ids were restricted to their tenant's own accounts by admission: the start
    // records it, for a resume.
    for id in &ids {
        writes.record_start(start(*id, ConfigId(3), 1, 2)).unwrap();
        writes
            .record_start(Start {
                own_accounts_only: id % 2 == 1,
                ..start(*id, ConfigId(3), 2, 3)
            })
            .unwrap();
    }
    writes
        .create_task(NewTask::from_command(&command("gc-barrier")))
        .await
        .unwrap();
    for id in &ids {
        let task = store.get_task(*id).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Processing);
        assert_eq!((task.attempts, task.last_seq), (2, 3));
        assert_eq!(task.own_accounts_only, id % 2 == 1, "task {id}");
    }
    let usage = |id: i64| UsageRecord {
        charged: true,
        task_id: Some(id),
        tenant: "acme".into(),
        user: None,
        config_id: Some(ConfigId(3)),
        provider: "mock".into(),
        model: None,
        kind: Kind::ImageEdit,
        images: 1,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0.01,
    };
    let finishes = ids.iter().flat_map(|id| {
        let id = *id;
        let writes = writes.clone();
        (0..2).map(move |_| {
            let writes = writes.clone();
            async move {
                if id % 2 == 0 {
                    writes
                        .complete_task(Completion {
                            id,
                            config_id: Some(ConfigId(3)),
                            attempts: 1,
                            raw_response: Some(json!({"ok": true})),
                            results: vec![NewTaskResult {
                                artifact_id: Some(format!("a-{id}")),
                                ..NewTaskResult::default()
                            }],
                            terminal_event: switchyard_runtime::store::StoredJson::of(
                                &json!({"type": "completed"}),
                            ),
                            usage: Some(usage(id)),
                            held: false,
                            attempt_log: Vec::new(),
                        })
                        .await
                        .unwrap()
                } else {
                    writes
                        .fail_task(Failure {
                            id,
                            config_id: None,
                            attempts: 1,
                            code: switchyard_core::ErrorCode::ProviderError,
                            message: "boom".into(),
                            terminal_event: switchyard_runtime::store::StoredJson::of(
                                &json!({"type": "failed"}),
                            ),
                            usage: None,
                            held: false,
                            attempt_log: Vec::new(),
                        })
                        .await
                        .unwrap()
                }
            }
        })
    });
    let won = futures_util::future::join_all(finishes).await;
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        200,
        "one winner per task"
    );
    for id in &ids {
        let task = store.get_task(*id).await.unwrap().unwrap();
        assert_eq!(task.last_seq, 3);
        assert_eq!(task.provider_config_id, Some(ConfigId(3)));
        let results = store.task_results(*id).await.unwrap();
        if id % 2 == 0 {
            assert_eq!(task.status, TaskStatus::Completed);
            assert_eq!(task.raw_response, Some(json!({"ok": true})));
            assert_eq!(results.len(), 1, "results written once");
            assert_eq!(results[0].result.artifact_id, Some(format!("a-{id}")));
        } else {
            assert_eq!(task.status, TaskStatus::Failed);
            assert_eq!(task.error_code.as_deref(), Some("provider_error"));
            assert!(results.is_empty());
        }
    }
    let now = Utc::now();
    let rows = store
        .usage_summary("acme", now - Duration::hours(1), now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.requests).sum::<i64>(),
        100,
        "usage once per completion"
    );
}

/// SQLite: the WAL is copied back into the database file in the background, so no
/// committing writer has to (its own automatic checkpoint only starts at 10,000 pages,
/// ~40 MB). Without the checkpointer the ~2.5 MB written here stays in the WAL and the
/// database file keeps its empty size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let db = TestDb::sqlite().await;
    let path = db.sqlite_path().unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let prompt = "x".repeat(8 * 1024);
    for i in 0..300 {
        let mut task = NewTask::from_command(&command(&format!("wal-{i}")));
        task.prompt = Some(prompt.clone());
        db.store.create_task(&task).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&path).unwrap().len();
        if size > before + 2 * 1024 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes (was {before}): the WAL was not checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
