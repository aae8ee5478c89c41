//! A hostile tenant against a real `serve` (#14): `reply_to` cannot name the gateway's
//! own or the server's subjects, two tenants' equal request ids never collide, and an
//! event whose body does not match its subject is not believed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{Command, Event, RequestId, Tenant};
use switchyard_runtime::bus::{Bus, EventFilter, NatsOptions};

use crate::{
    reload::{http, start_node},
    support::{NatsServer, TestDb},
};

fn text(request_id: &str, tenant: &str, reply_to: &str) -> Command {
    serde_json::from_value(json!({"request_id": request_id, "tenant": tenant,
        "kind": "text.generate", "reply_to": reply_to,
        "input": {"messages": [{"role": "user", "content": "hi"}]}}))
    .unwrap()
}

/// A command on the bus whose `reply_to` names the gateway's own subjects or `$…`
/// fails with `invalid_request`, and nothing is published to that subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_cannot_name_the_gateways_own_subjects() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let targets = [
        "switchyard.cfg.changed",
        "switchyard.evt.globex.victim-1.completed",
        "switchyard.replicas.heartbeat",
        "$JS.API.STREAM.DELETE.SWITCHYARD_EVENTS",
    ];
    let mut taps = Vec::new();
    for target in targets {
        taps.push(node.bus.subscribe_core(target).await.unwrap());
    }
    for (i, target) in targets.iter().enumerate() {
        let command = text(&format!("bad-reply-{i}"), "acme", target);
        let event = publish_and_await_first(&node.bus, &command).await;
        let Some(error) = failure_of(&event) else {
            panic!("{target}: {event:?}");
        };
        assert_eq!(error["code"], "invalid_request", "{target}");
        assert!(
            error["message"].as_str().unwrap().contains("reply_to"),
            "{error}"
        );
    }
    // An _INBOX reply is still answered.
    let mut inbox = node.bus.subscribe_core("_INBOX.acme.1").await.unwrap();
    node.bus
        .publish_command(&text("good-reply", "acme", "_INBOX.acme.1"))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(20), inbox.next())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("\"completed\""));
    // Nothing reached any refused subject.
    for (tap, target) in taps.iter_mut().zip(targets) {
        let got = tokio::time::timeout(Duration::from_millis(200), tap.next()).await;
        assert!(got.is_err(), "{target} received {got:?}");
    }
    node.stop().await;
}

/// The events of `command`'s request, from its first.
async fn events_of(bus: &Bus, command: &Command) -> switchyard_runtime::bus::Events {
    bus.events(EventFilter::Request(
        command.tenant.clone(),
        command.request_id.clone(),
    ))
    .await
    .unwrap()
}

/// Publishes `command` and returns the first event of its request.
async fn publish_and_await_first(bus: &Bus, command: &Command) -> Event {
    let mut events = events_of(bus, command).await;
    bus.publish_command(command).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .unwrap()
        .unwrap()
}

fn failure_of(event: &Event) -> Option<Value> {
    let value = serde_json::to_value(event).unwrap();
    (value["type"] == "failed").then(|| value["error"].clone())
}

/// Over HTTP a tenant key may reply only to `_INBOX.…`; the admin may use the
/// configured rules; both are told 400 for the gateway's own subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_with_a_tenant_key_reply_only_to_inboxes() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let job = |reply_to: &str| {
        json!({"kind": "text.generate", "reply_to": reply_to,
               "input": {"messages": [{"role": "user", "content": "hi"}]}})
    };
    for reply_to in ["switchyard.cfg.changed", "orders.done", "$SYS.REQ.x"] {
        let (status, body) = http(
            node.port,
            "POST",
            "/v1/jobs",
            Some(&key),
            Some(&job(reply_to)),
        );
        assert_eq!(status, 400, "{reply_to}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("reply_to"),
            "{body}"
        );
    }
    let (status, body) = http(
        node.port,
        "POST",
        "/v1/jobs",
        Some(&key),
        Some(&job("_INBOX.k.1")),
    );
    assert_eq!(status, 202, "{body}");
    let mut admin_job = job("switchyard.evt.acme.x.completed");
    admin_job["tenant"] = json!("acme");
    assert_eq!(node.call("POST", "/v1/jobs", Some(admin_job)).0, 400);
    node.stop().await;
}

/// Two tenants post the same request id within the duplicate window: both jobs run
/// (the message id is `tenant:request_id`), and a repeat by one tenant is its own job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_request_ids_of_two_tenants_do_not_collide() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let mut ids = Vec::new();
    for tenant in ["acme", "globex"] {
        let job = json!({"request_id": "shared-1", "tenant": tenant, "kind": "text.generate",
                         "input": {"messages": [{"role": "user", "content": "hi"}]}});
        let (status, posted) = node.call("POST", "/v1/jobs", Some(job));
        assert_eq!(status, 202, "{tenant}: {posted}");
        ids.push(posted["id"].as_i64().unwrap());
    }
    for id in &ids {
        assert_eq!(node.job_end(*id).await["status"], "done");
    }
    let again = json!({"request_id": "shared-1", "tenant": "acme", "kind": "text.generate",
                       "input": {"messages": [{"role": "user", "content": "hi"}]}});
    let (status, repeat) = node.call("POST", "/v1/jobs", Some(again));
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["id"].as_i64(), Some(ids[0]));
    node.stop().await;
}

/// On JetStream, an event whose body names another tenant or request than its subject
/// is dropped by every reader; a true one still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_believed_only_on_its_own_subject() {
    let server = NatsServer::start();
    let prefix = format!("forge{}", crate::support::unique_suffix());
    let bus = Bus::connect(&server.url(), &prefix, NatsOptions::default())
        .await
        .unwrap();
    let (tenant, id) = (Tenant::new("acme").unwrap(), RequestId::new("r1").unwrap());
    let mut events = bus
        .events(EventFilter::Request(tenant.clone(), id.clone()))
        .await
        .unwrap();
    let event = |tenant: &str| {
        json!({"v": 1, "request_id": "r1", "tenant": tenant, "seq": 1,
               "time": "2026-12-03T08:00:00Z", "type": "accepted", "task_id": 1,
               "kind": "text.generate"})
    };
    let js = async_nats::jetstream::new(bus.nats_client().unwrap().clone());
    let subject = format!("{prefix}.evt.acme.r1.accepted");
    for body in [event("globex"), event("acme")] {
        js.publish(subject.clone(), Bytes::from(body.to_string()))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.tenant, tenant, "the forged event was believed");
    bus.delete_streams().await.unwrap();
}

/// A NUL in `user`, the prompt or `metadata` (which PostgreSQL cannot store) is an
/// `invalid_request` at once, not a database error retried until the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_an_invalid_request_on_postgres() {
    let db = TestDb::postgres().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    for (i, field) in ["user", "prompt", "metadata"].into_iter().enumerate() {
        let mut command = json!({"request_id": format!("nul-{i}"), "tenant": "acme",
            "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "hi"}]}});
        match field {
            "user" => command["user"] = json!("u\u{0}1"),
            "prompt" => command["input"]["messages"][0]["content"] = json!("h\u{0}i"),
            _ => command["metadata"] = json!({"note": "a\u{0}b"}),
        }
        let command: Command = serde_json::from_value(command).unwrap();
        let event = publish_and_await_first(&node.bus, &command).await;
        let error = failure_of(&event).unwrap_or_else(|| panic!("{field}: {event:?}"));
        assert_eq!(error["code"], "invalid_request", "{field}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains("NUL"),
            "{field}: {error}"
        );
    }
    node.stop().await;
    db.cleanup().await;
}

/// The same command delivered twice at once (published without a message id) runs
/// once: the second delivery finds the task claimed and waits instead of calling the
/// provider a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_delivered_twice_runs_once() {
    let db = TestDb::sqlite().await;
    let node = start_node(
        &db,
        json!([{"name": "mock-slow", "provider": "mock", "options": {"latency_ms": 600}}]),
    )
    .await;
    let command = text("twice-1", "acme", "_INBOX.twice");
    let mut events = events_of(&node.bus, &command).await;
    let subject = node.bus.subjects().command(command.kind);
    let body = Bytes::from(serde_json::to_vec(&command).unwrap());
    for _ in 0..2 {
        node.bus
            .publish_command_raw(&subject, body.clone(), None)
            .await
            .unwrap();
    }
    let mut terminal = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline.into(), events.next()).await {
        if event.is_terminal() {
            terminal += 1;
        }
    }
    assert_eq!(terminal, 1, "one terminal event");
    let (_, status) = node.call("GET", "/v1/providers/status", None);
    assert_eq!(status["instances"][0]["requests"], 1, "{status}");
    node.stop().await;
}

/// While the database fails the pipeline's writes, `/readyz` answers 503 (load
/// balancers move traffic away) and the command waits; once the database answers
/// again the command completes and `/readyz` is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database_and_commands_wait_for_it() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let ready = || http(node.port, "GET", "/readyz", None, None).0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready() != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tasks table is gone: every write of the pipeline fails.
    db.raw_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await;
    let command = text("outage-1", "acme", "_INBOX.outage");
    let mut events = events_of(&node.bus, &command).await;
    node.bus.publish_command(&command).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready() != 503 {
        assert!(
            Instant::now() < deadline,
            "readyz stayed 200 while the database failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.raw_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await;
    let mut completed = false;
    let until = Instant::now() + Duration::from_secs(20);
    while let Ok(Some(event)) = tokio::time::timeout_at(until.into(), events.next()).await {
        if event.is_terminal() {
            completed = serde_json::to_value(&event).unwrap()["type"] == "completed";
            break;
        }
    }
    assert!(completed, "the command did not complete after the outage");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready() != 200 {
        assert!(Instant::now() < deadline, "readyz did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
}

/// Every response carries the security headers, errors included; HSTS only with an
/// https public URL (not set here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    for (path, status) in [
        ("/healthz", 200),
        ("/v1/providers", 401),
        ("/v1/jobs/1", 401),
    ] {
        let (code, raw) = crate::support::raw_http(node.port, "GET", path, &[], b"");
        assert_eq!(code, status, "{path}");
        let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        for header in [
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "content-security-policy: default-src 'none'",
        ] {
            assert!(head.contains(header), "{path}: no {header} in {head}");
        }
        assert!(!head.contains("strict-transport-security"), "{head}");
    }
    node.stop().await;
}

/// An OpenAI-compatible call naming a model nothing serves is the caller's mistake:
/// 404 `model_not_found`, as OpenAI answers, not a 503 outage (found by schemathesis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_not_found_not_an_outage() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let body = json!({"model": "no-such-model", "prompt": "a fox"});
    let (status, answer) = http(
        node.port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&body),
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "model_not_found", "{answer}");
    // A name, a provider type and no model at all still route.
    for model in ["mock-a", "mock", "auto"] {
        let body = json!({"model": model, "prompt": "a fox", "size": "64x64"});
        let (status, answer) = http(
            node.port,
            "POST",
            "/v1/images/generations",
            Some(&key),
            Some(&body),
        );
        assert_eq!(status, 200, "{model}: {answer}");
    }
    node.stop().await;
}
