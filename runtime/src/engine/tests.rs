#![allow(
    clippy::disallowed_methods,
    reason = "a test's helper tasks end with the test"
)]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use switchyard_core::{AttemptResult, ErrorCode, EventBody, ProviderConfigDraft, SkipReason};

use super::*;

fn config(id: i64, json: Value) -> ProviderConfig {
    let mut value = json!({"name": format!("mock-{id}"), "provider": "mock"});
    for (k, v) in json.as_object().unwrap() {
        value[k] = v.clone();
    }
    let draft: ProviderConfigDraft = serde_json::from_value(value).unwrap();
    ProviderConfig {
        id: ConfigId(id),
        spec: draft.validate().unwrap(),
        version: 1,
        created_at: Utc.timestamp_opt(0, 0).unwrap(),
        updated_at: Utc.timestamp_opt(0, 0).unwrap(),
    }
}

struct Harness {
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn harness_with(
    configs: Vec<ProviderConfig>,
    disabled: Vec<crate::actors::DisabledConfig>,
    policy: RestartPolicy,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
    let (engine, failures) = Engine::start(
        configs,
        disabled,
        EngineOptions {
            artifacts,
            artifact_urls: crate::artifact_urls::ArtifactUrls::new(
                b"a test key, a test key",
                std::time::Duration::from_secs(3600),
                "http://127.0.0.1:8080",
            ),
            restart_policy: policy,
            default_wait: Duration::from_secs(30),
            plugins: None,
            vault: None,
            outbound: crate::guard::Guard::default(),
        },
    )
    .await
    .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    Harness { engine, _dir: dir }
}

async fn harness(configs: Vec<ProviderConfig>) -> Harness {
    harness_with(configs, Vec::new(), RestartPolicy::default()).await
}

fn text_command(id: &str, route: Value) -> Arc<Command> {
    Arc::new(
        serde_json::from_value(json!({
            "request_id": id, "tenant": "acme", "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "hello"}]},
            "route": route,
        }))
        .unwrap(),
    )
}

async fn run(h: &Harness, command: Arc<Command>) -> Vec<Event> {
    let mut events = Vec::new();
    h.engine
        .execute(Submission::new(command, 1), &mut |e| events.push(e))
        .await;
    events
}

fn terminal(events: &[Event]) -> &EventBody {
    &events.last().unwrap().body
}

fn completed_by(events: &[Event]) -> i64 {
    match terminal(events) {
        EventBody::Completed { provider, .. } => provider.config_id.0,
        other => panic!("expected completed, got {other:?}"),
    }
}

fn failed_code(events: &[Event]) -> ErrorCode {
    match terminal(events) {
        EventBody::Failed { error, .. } => error.code,
        other => panic!("expected failed, got {other:?}"),
    }
}

fn seqs_are_gapless_with_one_terminal(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
    assert!(events.last().unwrap().is_terminal());
}

#[tokio::test]
async fn image_request_stores_a_real_png_and_reports_it() {
    let h = harness(vec![config(
        1,
        json!({"cost": {"per_image": {"64x64": 0.03, "default": 1.0}}}),
    )])
    .await;
    let command: Arc<Command> = Arc::new(
        serde_json::from_value(json!({
            "request_id": "img-1", "tenant": "acme", "kind": "image.generate",
            "input": {"prompt": "a lighthouse", "size": "64x64", "n": 2, "seed": 3},
        }))
        .unwrap(),
    );
    let events = run(&h, command).await;
    seqs_are_gapless_with_one_terminal(&events);
    let types: Vec<_> = events.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(types, ["accepted", "started", "completed"]);
    let EventBody::Completed {
        output,
        usage,
        provider,
        attempts,
        routing,
        ..
    } = terminal(&events)
    else {
        panic!()
    };
    assert_eq!(output.images.len(), 2);
    assert_eq!(usage.images, 2);
    assert!((usage.cost_usd - 0.06).abs() < 1e-9);
    assert_eq!(provider.name, "mock-1");
    assert_eq!(attempts.len(), 1);
    assert_eq!(routing.as_ref().unwrap().candidates, [ConfigId(1)]);
    let image = &output.images[0];
    assert_eq!(
        (image.width, image.height, image.mime.as_str()),
        (64, 64, "image/png")
    );
    // A signed link under the public URL (the signature is checked in artifact_urls).
    assert!(
        image.url.starts_with(&format!(
            "http://127.0.0.1:8080/v1/artifacts/{}?exp=",
            image.artifact_id
        )) && image.url.contains("&sig="),
        "{}",
        image.url
    );
    let (bytes, meta) = h
        .engine
        .inner
        .artifacts
        .get(&image.artifact_id)
        .await
        .unwrap();
    assert_eq!(meta.sha256, image.sha256);
    assert_eq!(bytes.len() as u64, image.bytes);
    let expected = crate::providers::mock::png_for_test("a lighthouse", 3, 0, 64, 64);
    assert_eq!(bytes, expected, "the stored bytes are the adapter's");
}

#[tokio::test]
async fn retryable_failure_falls_back_in_priority_order() {
    let h = harness(vec![
        config(1, json!({"priority": 100, "options": {"failure_rate": 1.0, "fail_with": "provider_unavailable"}})),
        config(2, json!({"priority": 50})),
        config(3, json!({"priority": 10})),
    ])
    .await;
    let events = run(&h, text_command("r1", json!({}))).await;
    seqs_are_gapless_with_one_terminal(&events);
    assert_eq!(completed_by(&events), 2);
    let EventBody::Completed {
        attempts, routing, ..
    } = terminal(&events)
    else {
        panic!()
    };
    let tried: Vec<_> = attempts
        .iter()
        .map(|a| (a.config_id.0, a.outcome, a.error_code))
        .collect();
    assert_eq!(
        tried,
        [
            (
                1,
                AttemptResult::Failed,
                Some(ErrorCode::ProviderUnavailable)
            ),
            (2, AttemptResult::Succeeded, None),
        ]
    );
    assert_eq!(
        routing.as_ref().unwrap().candidates,
        [ConfigId(1), ConfigId(2), ConfigId(3)]
    );
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Started { attempt, provider } => Some((*attempt, provider.config_id.0)),
            _ => None,
        })
        .collect();
    assert_eq!(started, [(1, 1), (2, 2)]);
}

#[tokio::test]
async fn max_attempts_and_fallback_false_are_respected() {
    let failing = json!({"options": {"failure_rate": 1.0, "fail_with": "provider_error"}});
    let h = harness(vec![
        config(1, failing.clone()),
        config(2, failing.clone()),
        config(3, failing),
    ])
    .await;
    let events = run(&h, text_command("r1", json!({"max_attempts": 2}))).await;
    assert_eq!(failed_code(&events), ErrorCode::ProviderError);
    let EventBody::Failed {
        attempts, error, ..
    } = terminal(&events)
    else {
        panic!()
    };
    assert_eq!(attempts.len(), 2);
    assert!(error.retryable);
    assert!(error.provider.is_some());
    let events = run(&h, text_command("r2", json!({"fallback": false}))).await;
    let EventBody::Failed { attempts, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(attempts.len(), 1);
}

#[tokio::test]
async fn content_filtered_is_not_retried() {
    let h = harness(vec![
        config(1, json!({"priority": 100, "options": {"failure_rate": 1.0, "fail_with": "content_filtered"}})),
        config(2, json!({})),
    ])
    .await;
    let events = run(&h, text_command("r1", json!({}))).await;
    assert_eq!(failed_code(&events), ErrorCode::ContentFiltered);
}

#[tokio::test]
async fn unauthorized_falls_back_to_the_next_account() {
    let h = harness(vec![
        config(
            1,
            json!({"priority": 100, "options": {"failure_rate": 1.0, "fail_with": "unauthorized"}}),
        ),
        config(2, json!({"priority": 90})),
    ])
    .await;
    assert_eq!(
        completed_by(&run(&h, text_command("r1", json!({}))).await),
        2
    );
}

#[tokio::test]
async fn each_strategy_orders_its_candidates() {
    let h = harness(vec![
        config(1, json!({"priority": 10, "cost": {"per_1k_input_tokens": 0.5, "per_1k_output_tokens": 0.5}})),
        config(2, json!({"priority": 30, "cost": {"per_1k_input_tokens": 9.0, "per_1k_output_tokens": 9.0}})),
        config(3, json!({"priority": 20, "cost": {"per_1k_input_tokens": 0.1, "per_1k_output_tokens": 0.1}})),
    ])
    .await;
    let first = |events: Vec<Event>| completed_by(&events);
    assert_eq!(
        first(run(&h, text_command("p", json!({"strategy": "priority"}))).await),
        2
    );
    assert_eq!(
        first(run(&h, text_command("c", json!({"strategy": "cost"}))).await),
        3
    );
    let mut rr = Vec::new();
    for i in 0..3 {
        rr.push(first(
            run(
                &h,
                text_command(&format!("rr{i}"), json!({"strategy": "round_robin"})),
            )
            .await,
        ));
    }
    rr.sort_unstable();
    assert_eq!(rr, [1, 2, 3], "round robin visits every instance");
    // Every instance has a latency now; the latency strategy picks one of them.
    assert!((1..=3).contains(&first(
        run(&h, text_command("l", json!({"strategy": "latency"}))).await
    )));
    assert!((1..=3).contains(&first(
        run(&h, text_command("b", json!({"strategy": "least_busy"}))).await
    )));
    assert!((1..=3).contains(&first(
        run(&h, text_command("w", json!({"strategy": "weighted"}))).await
    )));
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_half_opens_and_closes() {
    let h = harness(vec![
        config(1, json!({"priority": 100, "breaker": {"consecutive_failures": 2, "open_ms": 10000, "half_open_calls": 1},
                         "options": {"fail_first": 2, "fail_with": "provider_unavailable"}})),
        config(2, json!({"priority": 1})),
    ])
    .await;
    for i in 0..2 {
        assert_eq!(
            completed_by(&run(&h, text_command(&format!("f{i}"), json!({}))).await),
            2
        );
    }
    // Two failures in a row: the breaker is open and routing says so.
    let events = run(&h, text_command("open", json!({}))).await;
    assert_eq!(completed_by(&events), 2);
    let EventBody::Completed {
        routing, attempts, ..
    } = terminal(&events)
    else {
        panic!()
    };
    assert_eq!(attempts.len(), 1, "the open instance was not called");
    let skipped = &routing.as_ref().unwrap().skipped;
    assert_eq!(skipped[0].config_id, ConfigId(1));
    assert_eq!(skipped[0].reason, SkipReason::BreakerOpen);
    assert!(skipped[0].until.is_some());
    assert_eq!(h.engine.status()[0].breaker, "open");
    // After open_ms the breaker lets a probe through; it succeeds and closes.
    tokio::time::advance(Duration::from_millis(10_001)).await;
    assert_eq!(
        completed_by(&run(&h, text_command("probe", json!({}))).await),
        1
    );
    assert_eq!(h.engine.status()[0].breaker, "closed");
    assert_eq!(
        completed_by(&run(&h, text_command("after", json!({}))).await),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_cools_the_instance_down_without_tripping_the_breaker() {
    let h = harness(vec![
        config(
            1,
            json!({"priority": 100, "breaker": {"consecutive_failures": 1},
                         "options": {"fail_first": 1, "fail_with": "rate_limited"}}),
        ),
        config(2, json!({"priority": 1})),
    ])
    .await;
    let events = run(&h, text_command("a", json!({}))).await;
    assert_eq!(
        completed_by(&events),
        2,
        "the 429 falls back to the next account"
    );
    let events = run(&h, text_command("b", json!({}))).await;
    assert_eq!(completed_by(&events), 2);
    let EventBody::Completed { routing, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(
        routing.as_ref().unwrap().skipped[0].reason,
        SkipReason::CoolingDown
    );
    let status = &h.engine.status()[0];
    assert_eq!(status.breaker, "closed", "a 429 is not a breaker failure");
    assert!(status.cooling_until_ms.is_some());
    tokio::time::advance(Duration::from_millis(1_001)).await;
    assert_eq!(
        completed_by(&run(&h, text_command("c", json!({}))).await),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn limiter_holds_the_configured_rpm() {
    // 60 rpm with a burst of 2: two calls at once, then one per second.
    let h = harness(vec![config(
        1,
        json!({"rate_limit": {"rpm": 60, "burst": 2, "max_concurrency": 100}}),
    )])
    .await;
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for i in 0..6 {
        let engine = h.engine.clone();
        handles.push(tokio::spawn(async move {
            let mut rx = engine.submit(Submission::new(
                text_command(&format!("r{i}"), json!({})),
                i,
            ));
            let mut last = None;
            while let Some(e) = rx.recv().await {
                last = Some(e);
            }
            (last.unwrap(), start.elapsed())
        }));
    }
    let mut finished: Vec<Duration> = Vec::new();
    for handle in handles {
        let (event, at) = handle.await.unwrap();
        assert!(
            matches!(event.body, EventBody::Completed { .. }),
            "{event:?}"
        );
        finished.push(at);
    }
    finished.sort();
    let seconds: Vec<u64> = finished.iter().map(|d| d.as_secs()).collect();
    assert_eq!(
        seconds,
        [0, 0, 1, 2, 3, 4],
        "virtual seconds at which calls were admitted"
    );
    assert_eq!(h.engine.status()[0].limiter_waits, 4);
}

#[tokio::test(start_paused = true)]
async fn tpm_reserves_the_estimate_and_settles_what_a_call_used() {
    // 600 tokens a minute; each call is estimated at 258 ("hello" and the default 256
    // tokens of answer) and uses 13. Two fit at once; the third starts as soon as the
    // first settles (its unused 245 tokens come back), not after the 17 s the budget
    // would need to refill the estimate.
    let h = harness(vec![config(
        1,
        json!({"rate_limit": {"rpm": 6000, "burst": 100, "max_concurrency": 100, "tpm": 600},
               "options": {"latency_ms": 100, "jitter_ms": 0}}),
    )])
    .await;
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for i in 0..3 {
        let engine = h.engine.clone();
        handles.push(tokio::spawn(async move {
            let mut rx = engine.submit(Submission::new(
                text_command(&format!("t{i}"), json!({})),
                i,
            ));
            let mut last = None;
            while let Some(e) = rx.recv().await {
                last = Some(e);
            }
            (last.unwrap(), start.elapsed())
        }));
    }
    let mut finished = Vec::new();
    for handle in handles {
        let (event, at) = handle.await.unwrap();
        assert!(
            matches!(event.body, EventBody::Completed { .. }),
            "{event:?}"
        );
        finished.push(at.as_millis());
    }
    finished.sort_unstable();
    assert_eq!(finished[..2], [100, 100], "two fit in the budget at once");
    assert!(
        (200..1_000).contains(&finished[2]),
        "the third waited for the first to settle, not for a refill: {finished:?}"
    );
    assert_eq!(h.engine.status()[0].limiter_waits, 1);
}

#[tokio::test(start_paused = true)]
async fn limiter_wait_is_bounded_by_the_deadline() {
    let h = harness(vec![config(
        1,
        json!({"rate_limit": {"rpm": 1, "burst": 1}}),
    )])
    .await;
    assert_eq!(
        completed_by(&run(&h, text_command("a", json!({}))).await),
        1
    );
    let mut command = (*text_command("b", json!({}))).clone();
    command.deadline_ms = Some(500);
    let events = run(&h, Arc::new(command)).await;
    assert_eq!(failed_code(&events), ErrorCode::Timeout);
}

#[tokio::test]
async fn a_panicking_adapter_is_restarted_and_its_request_completes_elsewhere() {
    let policy = RestartPolicy {
        initial_backoff: Duration::from_millis(10),
        ..RestartPolicy::default()
    };
    let h = harness_with(
        vec![
            config(1, json!({"priority": 100, "options": {"panic_first": 1}})),
            config(2, json!({"priority": 1})),
        ],
        Vec::new(),
        policy,
    )
    .await;
    let events = run(&h, text_command("boom", json!({}))).await;
    assert_eq!(completed_by(&events), 2);
    let EventBody::Completed { attempts, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(attempts[0].error_code, Some(ErrorCode::ProviderUnavailable));
    // The supervisor restarts the actor; it serves again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = h.engine.supervisor_status().await.unwrap();
        if status[0].actor == "running" && status[0].restarts == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        completed_by(&run(&h, text_command("again", json!({}))).await),
        1
    );
}

#[tokio::test]
async fn an_actor_that_keeps_crashing_is_marked_failed_not_restarted_forever() {
    let policy = RestartPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        max_restarts: 2,
        window: Duration::from_secs(60),
    };
    let h = harness_with(
        vec![
            config(
                1,
                json!({"priority": 100, "options": {"panic_first": 1000}}),
            ),
            config(2, json!({"priority": 1})),
        ],
        Vec::new(),
        policy,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        i += 1;
        let events = run(&h, text_command(&format!("c{i}"), json!({}))).await;
        assert_eq!(
            completed_by(&events),
            2,
            "every request completes elsewhere"
        );
        let status = h.engine.supervisor_status().await.unwrap();
        if status[0].actor == "failed" {
            assert_eq!(status[0].restarts, 3);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events = run(&h, text_command("after", json!({}))).await;
    let EventBody::Completed { routing, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(
        routing.as_ref().unwrap().skipped[0].reason,
        SkipReason::Failed
    );
}

#[tokio::test]
async fn config_id_for_disabled_or_unknown_instances_is_a_clear_error() {
    let h = harness_with(
        vec![config(1, json!({}))],
        vec![(ConfigId(2), "old-account".into(), None)],
        RestartPolicy::default(),
    )
    .await;
    let events = run(&h, text_command("d", json!({"config_id": 2}))).await;
    let EventBody::Failed { error, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(error.code, ErrorCode::NoProvider);
    assert_eq!(error.message, "provider config 2 'old-account' is disabled");
    let events = run(&h, text_command("u", json!({"config_id": "ghost"}))).await;
    let EventBody::Failed { error, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert_eq!(
        error.message,
        "route.config_id 'ghost' names no provider config"
    );
    assert_eq!(
        completed_by(&run(&h, text_command("n", json!({"config_id": "mock-1"}))).await),
        1
    );
}

/// A 1×1 PNG (provider-apis.md §9.1).
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[tokio::test]
async fn image_edit_never_falls_back_to_an_instance_that_only_generates() {
    let h = harness(vec![
        config(1, json!({"priority": 100, "kinds": ["image.generate"]})),
        config(2, json!({"priority": 1, "kinds": ["image.generate", "image.edit"], "options": {"failure_rate": 1.0, "fail_with": "provider_unavailable"}})),
    ])
    .await;
    let command: Arc<Command> = Arc::new(
        serde_json::from_value(json!({
            "request_id": "e", "tenant": "acme", "kind": "image.edit",
            "input": {"prompt": "blue", "size": "8x8", "images": [{"b64": TINY_PNG}]},
        }))
        .unwrap(),
    );
    let events = run(&h, command).await;
    let EventBody::Failed {
        attempts, routing, ..
    } = terminal(&events)
    else {
        panic!()
    };
    assert_eq!(
        attempts.iter().map(|a| a.config_id.0).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(
        routing.as_ref().unwrap().skipped[0].reason,
        SkipReason::KindMismatch
    );
}

#[tokio::test]
async fn streamed_text_arrives_as_chunks_before_completion() {
    let h = harness(vec![config(1, json!({}))]).await;
    let mut command = (*text_command("s", json!({}))).clone();
    command.input.stream = Some(true);
    let events = run(&h, Arc::new(command)).await;
    seqs_are_gapless_with_one_terminal(&events);
    let mut text = String::new();
    let mut indexes = Vec::new();
    for e in &events {
        if let EventBody::Chunk { index, delta } = &e.body {
            indexes.push(*index);
            text.push_str(delta);
        }
    }
    assert!(indexes.len() >= 3);
    assert_eq!(indexes, (0..indexes.len() as u32).collect::<Vec<_>>());
    let EventBody::Completed { output, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(output.text.as_deref(), Some(text.as_str()));
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_a_slow_request_with_timeout() {
    let h = harness(vec![config(1, json!({"options": {"latency_ms": 5000}}))]).await;
    let mut command = (*text_command("slow", json!({}))).clone();
    command.deadline_ms = Some(100);
    let events = run(&h, Arc::new(command)).await;
    seqs_are_gapless_with_one_terminal(&events);
    assert_eq!(failed_code(&events), ErrorCode::Timeout);
}

#[tokio::test]
async fn no_provider_says_why() {
    let h = harness(vec![config(1, json!({"kinds": ["text.generate"]}))]).await;
    let command: Arc<Command> = Arc::new(
        serde_json::from_value(json!({
            "request_id": "np", "tenant": "acme", "kind": "image.generate", "input": {"prompt": "x"},
        }))
        .unwrap(),
    );
    let events = run(&h, command).await;
    let EventBody::Failed { error, routing, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(error.code, ErrorCode::NoProvider);
    assert_eq!(error.message, "no enabled instance serves image.generate");
    assert_eq!(
        routing.as_ref().unwrap().skipped[0].reason,
        SkipReason::KindMismatch
    );
}

#[tokio::test]
async fn a_thousand_instances_start_and_route_correctly() {
    let configs: Vec<_> = (1..=1000)
        .map(|i| config(i, json!({"priority": i % 97})))
        .collect();
    let h = harness(configs).await;
    assert_eq!(h.engine.table().instances.len(), 1000);
    assert_eq!(
        completed_by(&run(&h, text_command("x", json!({"config_id": 777}))).await),
        777
    );
    // Highest priority is 96; the lowest id with it wins the weight/id tie-break.
    assert_eq!(
        completed_by(&run(&h, text_command("y", json!({}))).await),
        96
    );
    assert_eq!(
        h.engine
            .status()
            .iter()
            .filter(|s| s.actor == "running")
            .count(),
        1000
    );
    h.engine.shutdown();
}

#[tokio::test(start_paused = true)]
async fn waiting_requests_get_free_slots_in_priority_order() {
    let h = harness(vec![config(
        1,
        json!({"rate_limit": {"rpm": 60, "burst": 1, "max_concurrency": 10}}),
    )])
    .await;
    // Use up the only token, then queue three requests of different priorities.
    assert_eq!(
        completed_by(&run(&h, text_command("first", json!({}))).await),
        1
    );
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (name, priority) in [("background", 10), ("urgent", 1), ("normal", 5)] {
        let mut command = (*text_command(name, json!({}))).clone();
        command.priority = priority;
        let engine = h.engine.clone();
        let order = order.clone();
        handles.push(tokio::spawn(async move {
            let mut rx = engine.submit(Submission::new(Arc::new(command), 0));
            while let Some(event) = rx.recv().await {
                if let EventBody::Started { .. } = event.body {
                    order.lock().unwrap().push(name);
                }
            }
        }));
        // Let each request reach the instance's queue before the next is sent.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["urgent", "normal", "background"]);
}

fn state_ptr(h: &Harness, id: i64) -> *const crate::actors::InstanceState {
    let table = h.engine.table();
    let instance = table
        .instances
        .iter()
        .find(|i| i.config.id.0 == id)
        .unwrap();
    Arc::as_ptr(&instance.state)
}

#[tokio::test]
async fn reload_touches_only_what_changed() {
    let h = harness(vec![
        config(1, json!({"priority": 10})),
        config(2, json!({"priority": 20})),
        config(3, json!({})),
    ])
    .await;
    let (one, two) = (state_ptr(&h, 1), state_ptr(&h, 2));
    let old_three = h.engine.table().instances[2].actor.clone().unwrap();
    let mut one_bumped = config(1, json!({"priority": 10}));
    one_bumped.version = 2; // a no-op write: same settings, new version
    let report = h
        .engine
        .apply(
            vec![
                one_bumped,
                config(2, json!({"priority": 99})),
                config(4, json!({})),
            ],
            vec![(ConfigId(3), "mock-3".into(), None)],
        )
        .await
        .unwrap();
    assert_eq!(report.added, [ConfigId(4)]);
    assert_eq!(report.replaced, [ConfigId(2)]);
    assert_eq!(report.removed, [ConfigId(3)]);
    assert_eq!(report.versions[&ConfigId(1)], 2);
    assert_eq!(
        state_ptr(&h, 1),
        one,
        "unchanged config keeps its actor, limiter and breaker"
    );
    assert_ne!(state_ptr(&h, 2), two, "changed config gets a new actor");
    // The router follows at once: 2 now has the highest priority.
    assert_eq!(
        completed_by(&run(&h, text_command("after", json!({}))).await),
        2
    );
    // The removed instance drains and stops; asking for it by id says it is disabled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while old_three.get_status() != ractor::ActorStatus::Stopped {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old actor never stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = run(&h, text_command("gone", json!({"config_id": 3}))).await;
    let EventBody::Failed { error, .. } = terminal(&events) else {
        panic!()
    };
    assert_eq!(error.message, "provider config 3 'mock-3' is disabled");
}

#[tokio::test]
async fn a_config_whose_adapter_cannot_start_keeps_the_previous_actor() {
    let h = harness(vec![config(1, json!({}))]).await;
    let before = state_ptr(&h, 1);
    let mut broken = config(1, json!({"priority": 5}));
    broken.spec.options = serde_json::from_value(json!({"failure_rate": 7})).unwrap();
    let report = h.engine.apply(vec![broken], Vec::new()).await.unwrap();
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].reason.contains("failure_rate"),
        "{:?}",
        report.failures
    );
    assert_eq!(state_ptr(&h, 1), before);
    assert_eq!(
        completed_by(&run(&h, text_command("still", json!({}))).await),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_or_is_lost_while_configs_change_under_load() {
    let base = |priority: i64, extra: Value| {
        let mut v = json!({"priority": priority, "options": {"latency_ms": 2},
                            "rate_limit": {"rpm": 600000, "burst": 1000, "max_concurrency": 64}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let h = harness(vec![
        config(1, base(10, json!({}))),
        config(2, base(20, json!({}))),
        config(3, base(30, json!({}))),
    ])
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let engine = h.engine.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let outcome = engine
                    .execute(
                        Submission::new(text_command(&format!("c{c}-{i}"), json!({})), i),
                        &mut |_| {},
                    )
                    .await;
                outcomes.push(outcome.terminal);
            }
            outcomes
        }));
    }
    for round in 0..100i64 {
        let mut configs = vec![
            config(1, base(round % 7, json!({}))),
            config(
                2,
                base(
                    50 - round % 5,
                    json!({"rate_limit": {"rpm": 600000 - round, "burst": 1000, "max_concurrency": 64}}),
                ),
            ),
        ];
        if round % 3 != 0 {
            configs.push(config(3, base(30, json!({}))));
        }
        if round % 4 == 0 {
            configs.push(config(10 + round, base(1, json!({}))));
        }
        h.engine.apply(configs, Vec::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        for terminal in client.await.unwrap() {
            total += 1;
            assert!(
                matches!(terminal.body, EventBody::Completed { .. }),
                "{terminal:?}"
            );
        }
    }
    assert!(total > 100, "only {total} requests ran");
}

fn streamed(id: &str) -> Arc<Command> {
    let mut command = (*text_command(id, json!({}))).clone();
    command.input.stream = Some(true);
    Arc::new(command)
}

#[tokio::test]
async fn a_stream_cut_after_its_first_chunk_fails_saying_how_many_were_delivered() {
    let h = harness(vec![
        config(1, json!({"priority": 100, "options": {"fail_after_chunks": 2, "fail_with": "provider_unavailable"}})),
        config(2, json!({"priority": 1})),
    ])
    .await;
    let events = run(&h, streamed("cut")).await;
    seqs_are_gapless_with_one_terminal(&events);
    let chunks = events
        .iter()
        .filter(|e| e.event_type().as_str() == "chunk")
        .count();
    assert_eq!(chunks, 2);
    let EventBody::Failed {
        error,
        attempts,
        chunks_delivered,
        ..
    } = terminal(&events)
    else {
        panic!("a cut stream must never end as completed: {events:?}")
    };
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
    assert_eq!(*chunks_delivered, Some(2));
    assert_eq!(
        attempts.len(),
        1,
        "text already delivered cannot be replayed elsewhere"
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_chunk_falls_back() {
    let h = harness(vec![
        config(1, json!({"priority": 100, "options": {"fail_after_chunks": 0, "fail_with": "provider_unavailable"}})),
        config(2, json!({"priority": 1})),
    ])
    .await;
    let events = run(&h, streamed("early")).await;
    seqs_are_gapless_with_one_terminal(&events);
    assert_eq!(completed_by(&events), 2);
    let EventBody::Completed {
        attempts, output, ..
    } = terminal(&events)
    else {
        panic!()
    };
    assert_eq!(attempts.len(), 2);
    let streamed: String = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Chunk { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(output.text.as_deref(), Some(streamed.as_str()));
}

#[tokio::test]
async fn an_edited_config_keeps_its_live_numbers() {
    let h = harness(vec![config(1, json!({"priority": 10}))]).await;
    assert_eq!(
        completed_by(&run(&h, text_command("before", json!({}))).await),
        1
    );
    let before = state_ptr(&h, 1);
    let requests = |h: &Harness| {
        h.engine
            .status()
            .iter()
            .find(|s| s.config_id == ConfigId(1))
            .map(|s| s.requests)
    };
    assert_eq!(requests(&h), Some(1));
    let report = h
        .engine
        .apply(vec![config(1, json!({"priority": 20}))], Vec::new())
        .await
        .unwrap();
    assert_eq!(report.replaced, [ConfigId(1)]);
    assert_ne!(state_ptr(&h, 1), before, "a new actor");
    assert_eq!(requests(&h), Some(1), "its count goes on across the edit");
    run(&h, text_command("after", json!({}))).await;
    assert_eq!(requests(&h), Some(2));
}
