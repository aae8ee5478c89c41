//! PROTOCOL.md round-trips: every JSON example parses, and events carry exactly the
//! fields the protocol lists.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use switchyard_core::{
    Attempt, AttemptResult, Command, ConfigId, ErrorCode, ErrorInfo, Event, EventBody, Kind,
    Output, OutputImage, ProviderConfigDraft, ProviderRef, ProviderType, RequestId, Routing,
    SkipReason, Skipped, Strategy, Tenant, Usage,
};

const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");

fn json_examples() -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = PROTOCOL;
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed code block");
        out.push(serde_json::from_str(&body[..end]).expect("example is valid JSON"));
        rest = &body[end..];
    }
    out
}

#[test]
fn protocol_copy_matches_the_shared_contract() {
    let shared =
        std::path::Path::new(&crate::support::manifest_dir()).join("../shared/PROTOCOL.md");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text, PROTOCOL,
            "docs/PROTOCOL.md is out of date: copy ../shared/PROTOCOL.md"
        );
    }
}

#[test]
fn every_json_example_parses() {
    let examples = json_examples();
    assert_eq!(
        examples.len(),
        2,
        "PROTOCOL.md has a command and a provider config example"
    );

    let command: Command = serde_json::from_value(examples[0].clone()).unwrap();
    command.validate(Some(Kind::ImageGenerate)).unwrap();
    assert_eq!(command.request_id.as_str(), "01JD3Q7W9M2ZB8T4X6K0C5N1RA");
    assert_eq!(command.input.seed, Some(7));
    assert_eq!(command.route.strategy, Strategy::Priority);
    assert_eq!(command.route.max_attempts, 3);
    assert_eq!(command.reply_to.as_deref(), Some("_INBOX.abc.1"));
    // Serializing and parsing again gives the same command.
    let again: Command = serde_json::from_value(serde_json::to_value(&command).unwrap()).unwrap();
    assert_eq!(again, command);

    let draft: ProviderConfigDraft = serde_json::from_value(examples[1].clone()).unwrap();
    assert_eq!(draft.name.as_deref(), Some("stability-main"));
    // The example's key is written masked ("sk-…"), which is exactly what the API must
    // never accept as a key; every other field validates.
    let errors = draft.validate().unwrap_err().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "api_key");
    let mut with_key = draft.clone();
    with_key.api_key = Some(switchyard_core::ApiKey::new("sk-a-real-looking-key-1234"));
    let spec = with_key.validate().unwrap();
    assert_eq!(spec.provider, ProviderType::Stability);
    assert_eq!(spec.priority, 100);
    assert_eq!(spec.rate_limit.rpm, 150);
    assert_eq!(spec.breaker.open_ms, 30_000);
    assert_eq!(spec.cost.image_price(Some("1024x1024")), 0.04);
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().expect("object").keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn provider() -> ProviderRef {
    ProviderRef {
        config_id: ConfigId(7),
        name: "stability-main".into(),
        provider_type: ProviderType::Stability,
        model: Some("sdxl".into()),
    }
}

fn event(seq: u64, body: EventBody) -> Event {
    Event {
        v: 1,
        request_id: RequestId::new("r1").unwrap(),
        tenant: Tenant::new("acme").unwrap(),
        seq,
        time: Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap(),
        body,
    }
}

#[test]
fn events_carry_exactly_the_protocol_fields() {
    let common = ["v", "request_id", "tenant", "type", "seq", "time"];
    let attempts = vec![
        Attempt {
            config_id: ConfigId(3),
            outcome: AttemptResult::Failed,
            error_code: Some(ErrorCode::RateLimited),
            latency_ms: 12,
        },
        Attempt {
            config_id: ConfigId(7),
            outcome: AttemptResult::Succeeded,
            error_code: None,
            latency_ms: 840,
        },
    ];
    let routing = Routing {
        strategy: Strategy::Priority,
        candidates: vec![ConfigId(3), ConfigId(7)],
        skipped: vec![Skipped {
            config_id: ConfigId(9),
            reason: SkipReason::BreakerOpen,
            until: None,
        }],
    };
    let cases: Vec<(EventBody, &[&str])> = vec![
        (
            EventBody::Accepted {
                task_id: 1,
                kind: Kind::ImageGenerate,
            },
            &["task_id", "kind"],
        ),
        (
            EventBody::Started {
                attempt: 1,
                provider: provider(),
            },
            &["attempt", "provider"],
        ),
        (
            EventBody::Progress {
                progress: 0.5,
                provider: provider(),
            },
            &["progress", "provider"],
        ),
        (
            EventBody::Chunk {
                index: 0,
                delta: "Hel".into(),
            },
            &["index", "delta"],
        ),
        (
            EventBody::Completed {
                output: Output {
                    images: vec![OutputImage {
                        artifact_id: "a1".into(),
                        url: "http://127.0.0.1:8080/v1/artifacts/a1".into(),
                        mime: "image/png".into(),
                        bytes: 1234,
                        sha256: "ab".repeat(32),
                        width: 1024,
                        height: 1024,
                        seed: Some(7),
                        revised_prompt: None,
                    }],
                    text: None,
                },
                usage: Usage {
                    images: 1,
                    input_tokens: 0,
                    output_tokens: 0,
                    cost_usd: 0.04,
                },
                provider: provider(),
                attempts: attempts.clone(),
                routing: Some(routing.clone()),
                latency_ms: 900,
                cached: false,
                stale: false,
            },
            &[
                "output",
                "usage",
                "provider",
                "attempts",
                "routing",
                "latency_ms",
                "cached",
            ],
        ),
        (
            EventBody::Failed {
                error: ErrorInfo::new(ErrorCode::NoProvider, "all breakers open"),
                attempts: attempts.clone(),
                routing: Some(routing.clone()),
                latency_ms: 3,
                chunks_delivered: None,
            },
            &["error", "attempts", "routing", "latency_ms"],
        ),
    ];
    for (seq, (body, extra)) in cases.into_iter().enumerate() {
        let event = event(seq as u64 + 1, body);
        let value = serde_json::to_value(&event).unwrap();
        let mut expected = set(&common);
        expected.extend(set(extra));
        assert_eq!(keys(&value), expected, "{value}");
        assert_eq!(value["type"], event.event_type().as_str());
        assert_eq!(value["time"], "2026-11-22T08:00:00Z");
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);

        if let EventBody::Completed { .. } = &event.body {
            let v = serde_json::to_value(&event).unwrap();
            assert_eq!(
                keys(&v["output"]["images"][0]),
                set(&[
                    "artifact_id",
                    "url",
                    "mime",
                    "bytes",
                    "sha256",
                    "width",
                    "height",
                    "seed",
                    "revised_prompt"
                ])
            );
            assert_eq!(
                keys(&v["usage"]),
                set(&["images", "input_tokens", "output_tokens", "cost_usd"])
            );
            assert_eq!(
                keys(&v["provider"]),
                set(&["config_id", "name", "type", "model"])
            );
            assert_eq!(
                keys(&v["attempts"][0]),
                set(&["config_id", "outcome", "error_code", "latency_ms"])
            );
            assert_eq!(
                keys(&v["routing"]),
                set(&["strategy", "candidates", "skipped"])
            );
            assert_eq!(
                v["routing"]["skipped"][0],
                json!({"config_id": 9, "reason": "breaker_open"})
            );
            assert_eq!(v["attempts"][0]["error_code"], "rate_limited");
        }
        if let EventBody::Failed { .. } = &event.body {
            let v = serde_json::to_value(&event).unwrap();
            assert_eq!(
                keys(&v["error"]),
                set(&["code", "message", "retryable", "provider"])
            );
            assert_eq!(v["error"]["code"], "no_provider");
            assert_eq!(v["error"]["retryable"], false);
        }
    }
}

#[test]
fn commands_from_other_clients_with_extra_fields_still_parse() {
    // Extend, never break: fields this version does not know are ignored.
    let body = br#"{"v":1,"request_id":"r9","tenant":"acme","kind":"text.generate",
        "input":{"messages":[{"role":"user","content":"hi"}],"stream":true,"future_field":1},
        "future_top_level":{"x":1}}"#;
    let command = Command::parse_and_validate(body, Some(Kind::TextGenerate)).unwrap();
    assert_eq!(command.input.stream, Some(true));
}
