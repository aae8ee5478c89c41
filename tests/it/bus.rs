//! The bus conformance suite: the same delivery guarantees on `memory://` and on a real
//! nats-server (JetStream), each test with its own server / prefix.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::{ErrorCode, Event, EventBody, ProviderConfig, RequestId, Tenant};
use switchyard_runtime::{
    Engine,
    artifacts::ArtifactStore,
    bus::{Bus, EventFilter, NatsOptions},
    pipeline::{Pipeline, Readiness, run_intake},
    quota::Quotas,
    store::TaskStatus,
};
use tokio::sync::watch;

use crate::support::{NatsServer, TestDb, unique_suffix};

struct Rig {
    bus: Bus,
    db: TestDb,
    stop: watch::Sender<bool>,
    ingress: tokio::task::JoinHandle<()>,
    engine: Engine,
    _nats: Option<NatsServer>,
}

fn mock(id: i64, extra: Value) -> ProviderConfig {
    let mut value = json!({"name": format!("mock-{id}"), "provider": "mock", "priority": 100 - id,
                           "rate_limit": {"rpm": 100000, "burst": 1000, "max_concurrency": 1000}});
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    crate::support::provider_config(id, value)
}

impl Rig {
    async fn start(nats: bool) -> Self {
        Self::start_with(
            nats,
            vec![
                mock(1, json!({})),
                mock(2, json!({"options": {"latency_ms": 5}})),
            ],
            64,
        )
        .await
    }

    async fn start_with(nats: bool, configs: Vec<ProviderConfig>, concurrency: usize) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let server = nats.then(NatsServer::start);
        let prefix = format!("sy{}", unique_suffix().replace('_', ""));
        let url = server
            .as_ref()
            .map_or_else(|| "memory://".to_owned(), NatsServer::url);
        let bus = Bus::connect(&url, &prefix, NatsOptions::default())
            .await
            .unwrap();
        let db = TestDb::sqlite().await;
        let artifacts = ArtifactStore::open(&format!(
            "file://{}/artifacts",
            db.options
                .url
                .trim_start_matches("sqlite://")
                .trim_end_matches("/test.db")
        ))
        .unwrap();
        let (engine, failures) = Engine::start(
            configs,
            Vec::new(),
            crate::support::engine_options(artifacts),
        )
        .await
        .unwrap();
        assert!(failures.is_empty());
        let (stop, stop_rx) = watch::channel(false);
        let handler = Pipeline::new(
            db.store.clone(),
            engine.clone(),
            bus.clone(),
            Quotas::new(db.store.clone()),
        );
        let ingress = tokio::spawn(async move {
            run_intake(handler, concurrency, Readiness::default(), stop_rx)
                .await
                .unwrap();
        });
        Self {
            bus,
            db,
            stop,
            ingress,
            engine,
            _nats: server,
        }
    }

    async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.ingress.await;
        self.engine.shutdown();
        self.db.cleanup().await;
    }

    /// Every event of a request, until its terminal one and then `linger` more, to
    /// catch a second terminal event.
    async fn events_of(&self, tenant: &str, request_id: &str, linger: Duration) -> Vec<Event> {
        let mut stream = self
            .bus
            .events(EventFilter::Request(
                Tenant::new(tenant).unwrap(),
                RequestId::new(request_id).unwrap(),
            ))
            .await
            .unwrap();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !events.iter().any(Event::is_terminal) {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(event)) => events.push(event),
                _ => panic!("no terminal event for {request_id}: {events:#?}"),
            }
        }
        while let Ok(Some(event)) = tokio::time::timeout(linger, stream.next()).await {
            events.push(event);
        }
        events
    }
}

fn command(request_id: &str, kind: &str, input: Value) -> Value {
    json!({"request_id": request_id, "tenant": "acme", "kind": kind, "input": input})
}

async fn publish(rig: &Rig, kind: &str, body: &Value, msg_id: Option<&str>) -> bool {
    let subject = format!("{}.cmd.{kind}", rig.bus.subjects().prefix());
    rig.bus
        .publish_command_raw(
            &subject,
            Bytes::from(serde_json::to_vec(body).unwrap()),
            msg_id,
        )
        .await
        .unwrap()
}

fn terminals(events: &[Event]) -> usize {
    events.iter().filter(|e| e.is_terminal()).count()
}

fn assert_gapless(events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{events:#?}"
    );
}

macro_rules! on_both_buses {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let rig = super::Rig::start(false).await;
                    super::$name(&rig).await;
                    rig.finish().await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let rig = super::Rig::start(true).await;
                    super::$name(&rig).await;
                    rig.finish().await;
                }
            )*
        }
    };
}

on_both_buses!(
    full_lifecycle,
    duplicate_publish_runs_once,
    republished_finished_command_answers_reply_to_only,
    unparseable_commands_go_to_the_dlq_and_block_nothing,
    invalid_commands_get_one_failed_event,
    streamed_text_emits_chunks,
    reply_to_gets_the_terminal_event,
    many_commands_each_get_exactly_one_terminal_event,
);

async fn full_lifecycle(rig: &Rig) {
    let body = command(
        "life-1",
        "image.generate",
        json!({"prompt": "a lighthouse", "size": "32x32", "n": 2}),
    );
    assert!(!publish(rig, "image.generate", &body, Some("life-1")).await);
    let events = rig
        .events_of("acme", "life-1", Duration::from_millis(100))
        .await;
    let types: Vec<_> = events.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(types, ["accepted", "started", "completed"]);
    assert_gapless(&events);
    let EventBody::Completed { output, .. } = &events[2].body else {
        panic!()
    };
    assert_eq!(output.images.len(), 2);
    // The task row is durable and completed, with its results.
    let task = rig
        .db
        .store
        .find_task(
            &Tenant::new("acme").unwrap(),
            &RequestId::new("life-1").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(rig.db.store.task_results(task.id).await.unwrap().len(), 2);
    let EventBody::Accepted { task_id, .. } = &events[0].body else {
        panic!()
    };
    assert_eq!(*task_id, task.id);
}

async fn duplicate_publish_runs_once(rig: &Rig) {
    let body = command(
        "dup-1",
        "text.generate",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!(!publish(rig, "text.generate", &body, Some("dup-1")).await);
    assert!(
        publish(rig, "text.generate", &body, Some("dup-1")).await,
        "same Nats-Msg-Id is dropped"
    );
    let events = rig
        .events_of("acme", "dup-1", Duration::from_millis(300))
        .await;
    assert_eq!(terminals(&events), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type().as_str() == "started")
            .count(),
        1
    );
}

async fn republished_finished_command_answers_reply_to_only(rig: &Rig) {
    let body = command(
        "again-1",
        "text.generate",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    publish(rig, "text.generate", &body, Some("again-1")).await;
    let first = rig
        .events_of("acme", "again-1", Duration::from_millis(50))
        .await;
    let terminal = first.last().unwrap().clone();
    // After the duplicate window (another message id), with a reply subject.
    let reply_subject = format!("_INBOX.{}", unique_suffix());
    let mut replies = rig.bus.subscribe_core(&reply_subject).await.unwrap();
    let mut again = body.clone();
    again["reply_to"] = json!(reply_subject);
    assert!(!publish(rig, "text.generate", &again, Some("again-1-retry")).await);
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .unwrap()
        .unwrap();
    let replied: Event = serde_json::from_slice(&reply).unwrap();
    assert_eq!(
        replied, terminal,
        "the stored terminal event is sent to reply_to"
    );
    let all = rig
        .events_of("acme", "again-1", Duration::from_millis(300))
        .await;
    assert_eq!(
        terminals(&all),
        1,
        "no second terminal event on the event subjects"
    );
    assert_eq!(all.len(), first.len(), "nothing ran again");
}

async fn unparseable_commands_go_to_the_dlq_and_block_nothing(rig: &Rig) {
    let dlq = rig.bus.subjects().dlq();
    let mut dlq_messages = match &rig.bus {
        Bus::Nats(_) => {
            // The DLQ is kept in the event stream: read it from there.
            let client = rig.bus.nats_client().unwrap().clone();
            let js = async_nats::jetstream::new(client);
            let stream = js
                .get_stream(rig.bus.subjects().event_stream())
                .await
                .unwrap();
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: dlq.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let messages = consumer.messages().await.unwrap();
            messages
                .filter_map(|m| async move { m.ok().map(|m| m.payload.clone()) })
                .boxed()
        }
        Bus::Memory(_) => rig.bus.subscribe_core(&dlq).await.unwrap(),
    };
    let subject = format!("{}.cmd.image.generate", rig.bus.subjects().prefix());
    for (payload, reason) in [
        (&b"not json at all"[..], "body is not valid JSON"),
        (
            &br#"{"tenant":"acme","kind":"image.generate","input":{}}"#[..],
            "missing request_id",
        ),
        (
            &br#"{"request_id":"r-x","kind":"image.generate","input":{}}"#[..],
            "missing tenant",
        ),
        (
            &br#"{"request_id":"bad.id","tenant":"acme"}"#[..],
            "request_id is invalid",
        ),
    ] {
        rig.bus
            .publish_command_raw(&subject, Bytes::from_static(payload), None)
            .await
            .unwrap();
        let message = tokio::time::timeout(Duration::from_secs(10), dlq_messages.next())
            .await
            .unwrap()
            .unwrap();
        let message: Value = serde_json::from_slice(&message).unwrap();
        assert!(
            message["reason"].as_str().unwrap().starts_with(reason),
            "{message}"
        );
        assert_eq!(message["subject"], subject);
        assert_eq!(
            message["payload"],
            String::from_utf8_lossy(payload).as_ref()
        );
    }
    // The consumer is not blocked.
    let body = command(
        "after-dlq",
        "text.generate",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    publish(rig, "text.generate", &body, None).await;
    let events = rig.events_of("acme", "after-dlq", Duration::ZERO).await;
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::Completed { .. }
    ));
}

async fn invalid_commands_get_one_failed_event(rig: &Rig) {
    let cases = [
        (
            "inv-kind",
            "text.generate",
            command("inv-kind", "image.generate", json!({"prompt": "x"})),
            "came on the 'text.generate' subject",
        ),
        (
            "inv-empty",
            "image.generate",
            command("inv-empty", "image.generate", json!({"prompt": " "})),
            "input.prompt must not be empty",
        ),
        (
            "inv-n",
            "image.generate",
            command("inv-n", "image.generate", json!({"prompt": "x", "n": 11})),
            "input.n must be 1–10",
        ),
        (
            "inv-unknown-kind",
            "video.generate",
            command("inv-unknown-kind", "video.generate", json!({})),
            "unknown kind",
        ),
        (
            "inv-shape",
            "image.generate",
            json!({"request_id": "inv-shape", "tenant": "acme", "kind": "image.generate", "input": "nope"}),
            "does not parse",
        ),
    ];
    for (id, subject_kind, body, _) in &cases {
        publish(rig, subject_kind, body, Some(id)).await;
    }
    let mut unknown_config = command("inv-config", "image.generate", json!({"prompt": "x"}));
    unknown_config["route"] = json!({"config_id": 4242});
    publish(rig, "image.generate", &unknown_config, None).await;
    for (id, _, _, expected) in cases.iter().map(|(a, b, c, d)| (*a, *b, c, *d)).chain([(
        "inv-config",
        "",
        &json!(null),
        "route.config_id 4242 names no provider config",
    )]) {
        let events = rig.events_of("acme", id, Duration::from_millis(100)).await;
        assert_eq!(terminals(&events), 1, "{id}");
        let EventBody::Failed { error, .. } = &events.last().unwrap().body else {
            panic!("{id}: {events:?}")
        };
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{id}");
        assert!(!error.retryable);
        assert!(error.message.contains(expected), "{id}: {}", error.message);
    }
}

async fn streamed_text_emits_chunks(rig: &Rig) {
    let body = command(
        "stream-1",
        "text.generate",
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    publish(rig, "text.generate", &body, None).await;
    let events = rig.events_of("acme", "stream-1", Duration::ZERO).await;
    assert_gapless(&events);
    let chunks: String = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Chunk { delta, .. } => Some(delta.clone()),
            _ => None,
        })
        .collect();
    let EventBody::Completed { output, .. } = &events.last().unwrap().body else {
        panic!()
    };
    assert_eq!(output.text.as_deref(), Some(chunks.as_str()));
    assert!(
        events
            .iter()
            .filter(|e| e.event_type().as_str() == "chunk")
            .count()
            >= 3
    );
}

async fn reply_to_gets_the_terminal_event(rig: &Rig) {
    let reply_subject = format!("_INBOX.{}", unique_suffix());
    let mut replies = rig.bus.subscribe_core(&reply_subject).await.unwrap();
    let mut body = command(
        "reply-1",
        "text.generate",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    body["reply_to"] = json!(reply_subject);
    publish(rig, "text.generate", &body, None).await;
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .unwrap()
        .unwrap();
    let event: Event = serde_json::from_slice(&reply).unwrap();
    assert!(event.is_terminal());
    assert_eq!(event.request_id.as_str(), "reply-1");
}

async fn many_commands_each_get_exactly_one_terminal_event(rig: &Rig) {
    let n = 60;
    for i in 0..n {
        let body = command(
            &format!("many-{i}"),
            "text.generate",
            json!({"messages": [{"role": "user", "content": format!("m{i}")}]}),
        );
        publish(rig, "text.generate", &body, Some(&format!("many-{i}"))).await;
    }
    for i in 0..n {
        let events = rig
            .events_of(
                "acme",
                &format!("many-{i}"),
                Duration::from_millis(if i == n - 1 { 300 } else { 0 }),
            )
            .await;
        assert_eq!(terminals(&events), 1);
        assert_gapless(&events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_user_password_authentication_connect() {
    use switchyard_runtime::settings::{BusSettings, Secret};
    async fn publishes_through(server: &NatsServer, settings: &BusSettings) {
        let bus = Bus::connect(&server.url(), "auth", settings.nats_options())
            .await
            .unwrap();
        let duplicate = bus
            .publish_command_raw("auth.cmd.text.generate", Bytes::from_static(b"{}"), None)
            .await
            .unwrap();
        assert!(!duplicate);
    }
    let with_token = NatsServer::start_with(&["--auth", "s3cret-token"]);
    let token = BusSettings {
        token: Some(Secret::new("s3cret-token")),
        ..BusSettings::default()
    };
    publishes_through(&with_token, &token).await;
    let with_user = NatsServer::start_with(&["--user", "switchyard", "--pass", "s3cret-pass"]);
    let user = BusSettings {
        user: Some("switchyard".into()),
        password: Some(Secret::new("s3cret-pass")),
        ..BusSettings::default()
    };
    publishes_through(&with_user, &user).await;
    // The secrets never show in the settings' debug output.
    assert!(!format!("{token:?}{user:?}").contains("s3cret"));
}

/// TLS with a private CA (and a client certificate the server verifies), and nkey
/// authentication, against real nats-servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_nkey_authentication_connect() {
    use switchyard_runtime::settings::{BusSettings, Secret};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    // Both v3 certificates (rustls refuses v1 ones, which `x509 -req` makes without
    // extensions).
    std::fs::write(d.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
        ]);
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{name}.pem"),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        sign.extend(["-extfile".to_owned(), format!("{name}.ext")]);
        openssl(&sign.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let p = |f: &str| d.join(f).display().to_string();
    let server = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        &p("server.pem"),
        "--tlskey",
        &p("server-key.pem"),
        "--tlscacert",
        &p("ca.pem"),
    ]);
    let url = format!("tls://127.0.0.1:{}", server.port);
    let settings = BusSettings {
        tls_ca_file: Some(d.join("ca.pem")),
        tls_client_cert: Some(d.join("client.pem")),
        tls_client_key: Some(d.join("client-key.pem")),
        ..BusSettings::default()
    };
    let bus = Bus::connect(&url, "tls", settings.nats_options())
        .await
        .unwrap();
    assert!(
        !bus.publish_command_raw("tls.cmd.text.generate", Bytes::from_static(b"{}"), None)
            .await
            .unwrap()
    );
    // Without the private CA the server's certificate is refused: a clear error.
    let no_ca = BusSettings {
        tls: true,
        ..BusSettings::default()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(3),
        Bus::connect(&url, "tls", no_ca.nats_options()),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a server signed by an unknown CA is refused"
    );

    // nkey: the server knows the public key; the client signs with the seed.
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    std::fs::write(
        d.join("nkey.conf"),
        format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let with_nkey = NatsServer::start_with(&["-c", &p("nkey.conf")]);
    let nkey = BusSettings {
        nkey: Some(Secret::new(seed.clone())),
        ..BusSettings::default()
    };
    let bus = Bus::connect(&with_nkey.url(), "nk", nkey.nats_options())
        .await
        .unwrap();
    assert!(
        !bus.publish_command_raw("nk.cmd.text.generate", Bytes::from_static(b"{}"), None)
            .await
            .unwrap()
    );
    assert!(!format!("{nkey:?}").contains(&seed), "the seed never shows");
}

/// A graceful shutdown hands back what it pulled but had not started, so the next
/// consumer takes it at once (not after the ack wait of 30 s), and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_unstarted_commands_and_loses_nothing() {
    for nats in [false, true] {
        let slow = vec![mock(
            1,
            json!({"options": {"latency_ms": 300}, "rate_limit": {"rpm": 100000, "burst": 1000, "max_concurrency": 1000}}),
        )];
        let rig = Rig::start_with(nats, slow.clone(), 4).await;
        let mut ids = Vec::new();
        for i in 0..24 {
            let id = format!("shut-{i}");
            let body = command(
                &id,
                "text.generate",
                json!({"messages": [{"role": "user", "content": "x"}]}),
            );
            publish(&rig, "text.generate", &body, Some(&id)).await;
            ids.push(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Shut the consumer down while most commands wait, then start a new one.
        let _ = rig.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while !rig.ingress.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            rig.ingress.is_finished(),
            "shutdown waits for running commands only"
        );
        let (stop, stop_rx) = watch::channel(false);
        let handler = Pipeline::new(
            rig.db.store.clone(),
            rig.engine.clone(),
            rig.bus.clone(),
            Quotas::new(rig.db.store.clone()),
        );
        let next = tokio::spawn(async move {
            run_intake(handler, 64, Readiness::default(), stop_rx)
                .await
                .unwrap();
        });
        for id in &ids {
            let events = rig.events_of("acme", id, Duration::ZERO).await;
            assert_eq!(
                terminals(&events),
                1,
                "{id} ({})",
                if nats { "nats" } else { "memory" }
            );
        }
        let _ = stop.send(true);
        let _ = next.await;
        rig.finish().await;
    }
}
