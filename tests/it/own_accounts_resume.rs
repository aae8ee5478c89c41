//! A task that admission restricted to its tenant's own provider accounts (a tenant
//! over its quota that prefers them, issue 16 §6) keeps the restriction when it is
//! resumed after a crash: the resumed run does not read the tenant's setting again and
//! fall back to the shared accounts, which would charge a tenant over its quota.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{Event, EventBody, RequestId, Tenant};
use switchyard_runtime::{
    Engine,
    artifacts::ArtifactStore,
    bus::{Bus, EventFilter, NatsOptions},
    pipeline::{Pipeline, Readiness, run_intake},
    quota::Quotas,
    store::{NewTask, TaskInsert},
};
use tokio::sync::watch;

use crate::support::{TestDb, on_both_databases, unique_suffix};

fn command(request_id: &str) -> Value {
    json!({"request_id": request_id, "tenant": "acme", "kind": "text.generate",
           "input": {"messages": [{"role": "user", "content": "hi"}]}})
}

/// The terminal event of `request_id` after the command is delivered to a pipeline
/// over `db` whose task row says: started, restricted (or not), its run gone.
async fn resumed_terminal(db: &TestDb, request_id: &str, restricted: bool) -> Event {
    let bus = Bus::connect(
        "memory://",
        &format!("sy{}", unique_suffix().replace('_', "")),
        NatsOptions::default(),
    )
    .await
    .unwrap();
    let artifacts =
        ArtifactStore::open(&format!("file://{}/artifacts", db._dir.path().display())).unwrap();
    // acme's own account fails (retryably); the shared one answers.
    let configs = vec![
        crate::support::provider_config(
            1,
            json!({"name": "shared", "provider": "mock", "priority": 5}),
        ),
        crate::support::provider_config(
            2,
            json!({"name": "acme.own", "provider": "mock", "owner": "acme",
                   "options": {"failure_rate": 1.0, "fail_with": "provider_unavailable"}}),
        ),
    ];
    let (engine, failures) = Engine::start(
        configs,
        Vec::new(),
        crate::support::engine_options(artifacts),
    )
    .await
    .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    // The crashed run: the row was written, its first attempt started on the own
    // account, and its claim has lapsed.
    let body = command(request_id);
    let parsed: switchyard_core::Command = serde_json::from_value(body.clone()).unwrap();
    let TaskInsert::Created(task) = db
        .store
        .create_task(&NewTask::from_command(&parsed))
        .await
        .unwrap()
    else {
        panic!("the task existed");
    };
    db.raw_execute(&format!(
        "UPDATE tasks SET status = 'processing', attempts = 1, last_seq = 2, \
         provider_config_id = 2, own_accounts_only = {restricted}, claimed_by = 'gone', \
         claim_until = 0 WHERE id = {}",
        task.id
    ))
    .await;
    let pipeline = Pipeline::new(
        db.store.clone(),
        engine.clone(),
        bus.clone(),
        Quotas::new(db.store.clone()),
    )
    .with_lease(Duration::from_millis(300));
    let (stop, stop_rx) = watch::channel(false);
    let intake = tokio::spawn(async move {
        run_intake(pipeline, 4, Readiness::default(), stop_rx)
            .await
            .unwrap();
    });
    let mut events = bus
        .events(EventFilter::Request(
            Tenant::new("acme").unwrap(),
            RequestId::new(request_id).unwrap(),
        ))
        .await
        .unwrap();
    let subject = format!("{}.cmd.text.generate", bus.subjects().prefix());
    bus.publish_command_raw(
        &subject,
        Bytes::from(serde_json::to_vec(&body).unwrap()),
        Some(&format!("acme:{request_id}")),
    )
    .await
    .unwrap();
    let terminal = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.next().await.expect("the event stream ended");
            if event.is_terminal() {
                return event;
            }
        }
    })
    .await
    .expect("no terminal event");
    let _ = stop.send(true);
    let _ = intake.await;
    engine.shutdown();
    terminal
}

async fn a_resumed_task_keeps_its_restriction_to_own_accounts(db: &TestDb) {
    // Restricted by admission: resumed, it is still served only by the own account,
    // which fails; the shared account is not used.
    let terminal = resumed_terminal(db, "resume-restricted", true).await;
    let EventBody::Failed { attempts, .. } = &terminal.body else {
        panic!("a restricted task was served by a shared account: {terminal:?}");
    };
    assert!(
        !attempts.is_empty() && attempts.iter().all(|a| a.config_id.0 == 2),
        "{attempts:?}"
    );
    // Not restricted (the tenant prefers its own accounts): the shared one serves.
    let terminal = resumed_terminal(db, "resume-preferring", false).await;
    let EventBody::Completed { provider, .. } = &terminal.body else {
        panic!("an unrestricted task did not fall back: {terminal:?}");
    };
    assert_eq!(provider.name, "shared");
}

on_both_databases!(a_resumed_task_keeps_its_restriction_to_own_accounts);
