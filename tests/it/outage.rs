//! Database outages and permanent database errors on the command path (#14 item 8): a
//! command given up after its deliveries still ends for its subscribers, exactly once,
//! and a value the database refuses for good fails the command at once instead of
//! being retried as if the database were down.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{Event, ProviderConfig, RequestId, Tenant};
use switchyard_runtime::{
    Engine,
    artifacts::ArtifactStore,
    bus::{Bus, EventFilter, Events, NatsOptions},
    pipeline::{Pipeline, Readiness, run_intake},
    quota::Quotas,
    store::{NewTask, RefusalKind, TaskStatus},
};
use tokio::sync::watch;

use crate::support::{NatsServer, TestDb, on_both_databases, unique_suffix};

/// Deliveries before a command is given up, in these tests.
const DELIVERIES: u64 = 3;

/// A pipeline with a short delivery limit and backoff over `db`, on memory or on a
/// nats-server of its own.
struct Rig {
    bus: Bus,
    db: TestDb,
    stop: watch::Sender<bool>,
    intake: tokio::task::JoinHandle<()>,
    engine: Engine,
    _nats: Option<NatsServer>,
}

fn provider(json: Value) -> ProviderConfig {
    crate::support::provider_config(1, json)
}

impl Rig {
    async fn start(db: TestDb, nats: bool, config: Value) -> Self {
        let server = nats.then(NatsServer::start);
        let url = server
            .as_ref()
            .map_or_else(|| "memory://".to_owned(), NatsServer::url);
        let prefix = format!("sy{}", unique_suffix().replace('_', ""));
        let bus = Bus::connect(&url, &prefix, NatsOptions::default())
            .await
            .unwrap();
        let artifacts =
            ArtifactStore::open(&format!("file://{}/artifacts", db._dir.path().display())).unwrap();
        let (engine, failures) = Engine::start(
            vec![provider(config)],
            Vec::new(),
            crate::support::engine_options(artifacts),
        )
        .await
        .unwrap();
        assert!(failures.is_empty());
        let pipeline = Pipeline::new(
            db.store.clone(),
            engine.clone(),
            bus.clone(),
            Quotas::new(db.store.clone()),
        )
        .with_max_deliveries(DELIVERIES)
        .with_first_backoff(Duration::from_millis(50))
        // Short, so a redelivery resumes a task at once instead of waiting on its claim.
        .with_lease(Duration::from_millis(300));
        let (stop, stop_rx) = watch::channel(false);
        let intake = tokio::spawn(async move {
            run_intake(pipeline, 16, Readiness::default(), stop_rx)
                .await
                .unwrap();
        });
        Self {
            bus,
            db,
            stop,
            intake,
            engine,
            _nats: server,
        }
    }

    async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.intake.await;
        self.engine.shutdown();
        self.db.cleanup().await;
    }

    async fn events(&self, request_id: &str) -> Events {
        self.bus
            .events(EventFilter::Request(
                Tenant::new("acme").unwrap(),
                RequestId::new(request_id).unwrap(),
            ))
            .await
            .unwrap()
    }

    /// Publishes a command body on its kind's subject, with a message id.
    async fn publish(&self, body: &Value, msg_id: &str) {
        let kind = body["kind"].as_str().unwrap();
        let subject = format!("{}.cmd.{kind}", self.bus.subjects().prefix());
        self.bus
            .publish_command_raw(
                &subject,
                Bytes::from(serde_json::to_vec(body).unwrap()),
                Some(msg_id),
            )
            .await
            .unwrap();
    }

    /// What reaches `<prefix>.dlq` from now on (on NATS, from the event stream that
    /// keeps it).
    async fn dlq(&self) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>> {
        let dlq = self.bus.subjects().dlq();
        match &self.bus {
            Bus::Nats(_) => {
                let client = self.bus.nats_client().unwrap().clone();
                let stream = async_nats::jetstream::new(client)
                    .get_stream(self.bus.subjects().event_stream())
                    .await
                    .unwrap();
                let consumer = stream
                    .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                        filter_subject: dlq,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let messages = consumer.messages().await.unwrap();
                messages
                    .filter_map(|m| async move { m.ok().map(|m| m.payload.clone()) })
                    .boxed()
            }
            Bus::Memory(_) => self.bus.subscribe_core(&dlq).await.unwrap(),
        }
    }

    async fn task_of(&self, request_id: &str) -> Option<switchyard_runtime::store::Task> {
        self.db
            .store
            .find_task(
                &Tenant::new("acme").unwrap(),
                &RequestId::new(request_id).unwrap(),
            )
            .await
            .unwrap()
    }
}

fn text_command(request_id: &str) -> Value {
    json!({"request_id": request_id, "tenant": "acme", "kind": "text.generate",
           "input": {"messages": [{"role": "user", "content": "hi"}]}})
}

/// Events of a stream until its first terminal one, then `linger` more (to catch a
/// second terminal event).
async fn until_terminal(events: &mut Events, linger: Duration) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(Event::is_terminal) {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => seen.push(event),
            _ => panic!("no terminal event: {seen:#?}"),
        }
    }
    while let Ok(Some(event)) = tokio::time::timeout(linger, events.next()).await {
        seen.push(event);
    }
    seen
}

fn types_and_seqs(events: &[Event]) -> Vec<(String, u64)> {
    events
        .iter()
        .map(|e| (e.event_type().as_str().to_owned(), e.seq))
        .collect()
}

fn error_of(event: &Event) -> Value {
    serde_json::to_value(event).unwrap()["error"].clone()
}

async fn next_dlq(
    dlq: &mut std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>>,
) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(10), dlq.next())
        .await
        .expect("nothing reached the DLQ")
        .unwrap();
    serde_json::from_slice(&message).unwrap()
}

/// A deterministic string of `len` hex digits that does not compress (so PostgreSQL
/// cannot shrink it below its index entry limit).
fn incompressible(len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_digit(u32::try_from(state % 16).unwrap(), 16).unwrap()
        })
        .collect()
}

// ------------------------------------------------------------- outages

/// The database fails longer than the delivery limit: one command after its
/// `accepted` and `started` went out, one from its first delivery. Each subscriber
/// gets exactly one terminal event, `failed` with `internal` and `retryable`, right
/// after the last event it saw; the DLQ gets both commands with the reason. Once the
/// database answers, the failures are in the task rows, and a duplicate of a given-up
/// command replays its failure instead of running.
async fn a_command_given_up_in_an_outage_ends_once_for_its_subscribers(nats: bool) {
    let rig = Rig::start(
        TestDb::sqlite().await,
        nats,
        json!({"name": "mock-slow", "provider": "mock", "options": {"latency_ms": 800}}),
    )
    .await;
    let mut dlq = rig.dlq().await;
    let mut mid = rig.events("outage-mid").await;
    rig.publish(&text_command("outage-mid"), "outage-mid").await;
    // It has started on the provider: now the database goes.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = Vec::new();
        while let Some(event) = mid.next().await {
            let started = event.event_type().as_str() == "started";
            seen.push(event);
            if started {
                return seen;
            }
        }
        seen
    })
    .await
    .unwrap();
    rig.db
        .raw_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await;
    let mut early = rig.events("outage-early").await;
    rig.publish(&text_command("outage-early"), "outage-early")
        .await;

    let mut mid_events = first;
    mid_events.extend(until_terminal(&mut mid, Duration::from_millis(500)).await);
    assert_eq!(
        types_and_seqs(&mid_events),
        [
            ("accepted".to_owned(), 1),
            ("started".to_owned(), 2),
            ("failed".to_owned(), 3)
        ]
    );
    let early_events = until_terminal(&mut early, Duration::from_millis(500)).await;
    assert_eq!(
        types_and_seqs(&early_events),
        [("failed".to_owned(), 1)],
        "nothing was published before: the failure is its only event"
    );
    for terminal in [mid_events.last().unwrap(), early_events.last().unwrap()] {
        let error = error_of(terminal);
        assert_eq!(error["code"], "internal", "{error}");
        assert_eq!(error["retryable"], true, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("database was unavailable"), "{message}");
        assert!(
            !message.contains("tasks") && !message.contains("sqlite"),
            "no driver text in the event: {message}"
        );
    }
    let mut given_up = Vec::new();
    for _ in 0..2 {
        let message = next_dlq(&mut dlq).await;
        let reason = message["reason"].as_str().unwrap().to_owned();
        assert!(
            reason.starts_with(&format!("gave up after {DELIVERIES} deliveries (database)")),
            "{reason}"
        );
        let payload: Value = serde_json::from_str(message["payload"].as_str().unwrap()).unwrap();
        given_up.push(payload["request_id"].as_str().unwrap().to_owned());
    }
    given_up.sort();
    assert_eq!(given_up, ["outage-early", "outage-mid"]);

    // The database is back: each failure is written to its task row (in the
    // background, retried until the database takes it).
    rig.db
        .raw_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await;
    for (request_id, terminal) in [
        ("outage-mid", mid_events.last().unwrap()),
        ("outage-early", early_events.last().unwrap()),
    ] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let task = loop {
            if let Some(task) = rig.task_of(request_id).await
                && task.status.is_terminal()
            {
                break task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{request_id}: its failure never reached its task row"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(task.status, TaskStatus::Failed, "{request_id}");
        assert_eq!(task.error_code.as_deref(), Some("internal"));
        assert_eq!(
            task.terminal_event,
            Some(serde_json::to_value(terminal).unwrap()),
            "{request_id}: the row holds the event subscribers saw"
        );
    }
    // A later duplicate (a new message id) replays the failure to its reply_to and
    // runs nothing: no second terminal event.
    let inbox = format!("_INBOX.{}", unique_suffix());
    let mut replies = rig.bus.subscribe_core(&inbox).await.unwrap();
    let mut again = text_command("outage-early");
    again["reply_to"] = json!(inbox);
    rig.publish(&again, "outage-early-again").await;
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .unwrap()
        .unwrap();
    let replied: Event = serde_json::from_slice(&reply).unwrap();
    assert_eq!(&replied, early_events.last().unwrap());
    let mut all = rig.events("outage-early").await;
    let all = until_terminal(&mut all, Duration::from_millis(500)).await;
    assert_eq!(types_and_seqs(&all), [("failed".to_owned(), 1)]);
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_given_up_in_an_outage_ends_once_on_memory() {
    a_command_given_up_in_an_outage_ends_once_for_its_subscribers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_given_up_in_an_outage_ends_once_on_nats() {
    a_command_given_up_in_an_outage_ends_once_for_its_subscribers(true).await;
}

// ------------------------------------------------------- permanent errors

/// Values PostgreSQL refuses for good, in a command that passes validation: a
/// `route.model` or a `params` key longer than a btree index entry may be (~2.7 kB,
/// SQLSTATE 54000). Each fails at once with one `failed` event, `invalid_request`
/// naming the field; it is acked (never redelivered, so the DLQ stays empty), and its
/// task row stores the raw command with that failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_postgres_refuses_for_good_fails_the_command_at_once() {
    let rig = Rig::start(
        TestDb::postgres().await,
        false,
        json!({"name": "mock-a", "provider": "mock"}),
    )
    .await;
    let mut dlq = rig.dlq().await;
    let long = incompressible(6000);
    let mut model = text_command("refused-model");
    model["route"] = json!({"model": long});
    let mut params = text_command("refused-params");
    params["params"] = json!({ long.clone(): 1 });
    for (body, field) in [(model, "route.model"), (params, "params")] {
        let request_id = body["request_id"].as_str().unwrap().to_owned();
        let mut events = rig.events(&request_id).await;
        rig.publish(&body, &request_id).await;
        let events = until_terminal(&mut events, Duration::from_millis(300)).await;
        assert_eq!(
            types_and_seqs(&events),
            [("failed".to_owned(), 1)],
            "{request_id}"
        );
        let error = error_of(&events[0]);
        assert_eq!(error["code"], "invalid_request", "{error}");
        assert_eq!(error["retryable"], false, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
        assert!(!message.contains("_idx"), "no index names: {message}");
        let task = rig.task_of(&request_id).await.expect("a task row");
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(task.error_code.as_deref(), Some("invalid_request"));
        assert!(task.command.get().contains(&long), "the raw body is kept");
    }
    // Given up as transient, they would be in the DLQ after three deliveries (well
    // within this wait): acked at once, they never are.
    let late = tokio::time::timeout(Duration::from_secs(2), dlq.next()).await;
    assert!(late.is_err(), "the DLQ got {late:?}");
    rig.finish().await;
}

/// A provider's answer PostgreSQL refuses for good (a NUL in the text: a `text`
/// column and `jsonb` refuse it) ends the request with one `failed` event in place of
/// `completed`, `provider_error`, at the `seq` the `completed` had: the provider is
/// called once, not again at every redelivery, and what it was paid for is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_answer_postgres_refuses_fails_the_request_once() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1747000000, "model": "llama3",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hel\u{0}lo"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})))
        .mount(&server)
        .await;
    let rig = Rig::start(
        TestDb::postgres().await,
        false,
        json!({"name": "local", "provider": "openai_compatible", "model": "llama3",
               "base_url": format!("{}/v1", server.uri())}),
    )
    .await;
    let mut events = rig.events("nul-answer").await;
    rig.publish(&text_command("nul-answer"), "nul-answer").await;
    let events = until_terminal(&mut events, Duration::from_secs(2)).await;
    assert_eq!(
        types_and_seqs(&events),
        [
            ("accepted".to_owned(), 1),
            ("started".to_owned(), 2),
            ("failed".to_owned(), 3)
        ]
    );
    let error = error_of(&events[2]);
    assert_eq!(error["code"], "provider_error", "{error}");
    assert_eq!(error["provider"]["name"], "local", "{error}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "the provider is called once"
    );
    let task = rig.task_of("nul-answer").await.unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error_code.as_deref(), Some("provider_error"));
    // The provider answered and was paid: the answer counts as used.
    assert_eq!(
        rig.db.usage_requests("acme").await,
        1,
        "the paid answer is in the usage log"
    );
    rig.finish().await;
}

/// A duplicate of a running task stands by for the run that holds it instead of
/// spending its deliveries on "busy": a database error it meets after waiting longer
/// than its delivery limit would last does not give it up (which would end the
/// request with a `failed` while the other run goes on). One terminal event,
/// `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_stands_by_for_the_run_that_holds_its_task() {
    let rig = Rig::start(
        TestDb::sqlite().await,
        true,
        json!({"name": "mock-slow", "provider": "mock", "options": {"latency_ms": 2500}}),
    )
    .await;
    let mut events = rig.events("standby-1").await;
    // Two messages of one command (two message ids): the second finds the first's claim.
    rig.publish(&text_command("standby-1"), "standby-a").await;
    rig.publish(&text_command("standby-1"), "standby-b").await;
    // Longer than the duplicate's deliveries would last, nak'ed every half lease.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    rig.db
        .raw_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.db
        .raw_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await;
    let seen = until_terminal(&mut events, Duration::from_secs(4)).await;
    let terminal: Vec<_> = seen
        .iter()
        .filter(|e| e.is_terminal())
        .map(|e| e.event_type().as_str())
        .collect();
    assert_eq!(terminal, ["completed"], "{:#?}", types_and_seqs(&seen));
    rig.finish().await;
}

// ----------------------------------------------------- the classification

on_both_databases!(permanent_refusals_are_told_from_outages);

/// The store tells a permanent refusal from an error a retry may get past, on each
/// database: an index entry too large (PostgreSQL only: SQLite has no such limit), a
/// constraint, and a missing table (an outage, as far as the pipeline can tell).
async fn permanent_refusals_are_told_from_outages(db: &TestDb) {
    let postgres = db.schema.is_some();
    let command = |request_id: &str, user: &str, model: &str| {
        let command: switchyard_core::Command = serde_json::from_value(json!({
            "request_id": request_id, "tenant": "acme", "user": user, "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "hi"}]}, "route": {"model": model}}))
        .unwrap();
        NewTask::from_command(&command)
    };
    let long = db
        .store
        .create_task(&command("long-model", "u", &incompressible(6000)))
        .await;
    if postgres {
        let refusal = long.unwrap_err().refusal().expect("a permanent refusal");
        assert_eq!(refusal.kind, RefusalKind::TooLarge);
        assert_eq!(refusal.code, "54000");
        assert_eq!(NewTask::refused_field(&refusal), Some("route.model"));
    } else {
        assert!(long.is_ok(), "SQLite stores it");
    }

    if postgres {
        db.raw_execute(
            "ALTER TABLE tasks ADD CONSTRAINT no_refused CHECK (user_id IS DISTINCT FROM 'refused')",
        )
        .await;
    } else {
        db.raw_execute(
            "CREATE TRIGGER no_refused BEFORE INSERT ON tasks WHEN NEW.user_id = 'refused' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .await;
    }
    let refused = db
        .store
        .create_task(&command("checked", "refused", "m"))
        .await
        .unwrap_err();
    let refusal = refused.refusal().expect("a permanent refusal");
    assert_eq!(refusal.kind, RefusalKind::Constraint, "{refused}");

    db.raw_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await;
    let missing = db
        .store
        .create_task(&command("missing", "u", "m"))
        .await
        .unwrap_err();
    assert_eq!(missing.refusal(), None, "{missing}");
    db.raw_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await;
}
