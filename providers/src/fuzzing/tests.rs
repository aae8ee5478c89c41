//! The stable-toolchain smoke of the answer fuzz targets (issue #14): the same entry
//! points as `fuzz/`, fed by proptest with arbitrary bytes and with real answers that
//! have arbitrary JSON spliced in anywhere (or a field taken out). 1,000 cases per
//! property in the suite; a long run:
//! `SWITCHYARD_FUZZ_CASES=200000 cargo test --release -p switchyard-providers --lib fuzzing`.

use proptest::{prelude::*, sample::Index};
use serde_json::{Value, json};

use super::*;

/// A 1×1 PNG, as the providers send it.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn cases() -> u32 {
    std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A real answer of each reader (`reference/provider-apis.md`, as tests/it/providers.rs
/// serves them).
fn answer_template(reader: AnswerReader) -> Value {
    match reader {
        AnswerReader::OpenAiImages => json!({"created": 1747000000, "data": [
            {"b64_json": PNG_B64, "revised_prompt": "A lighthouse"},
            {"url": "https://cdn.example/out.png?sig=1"}],
            "usage": {"input_tokens": 10, "output_tokens": 4160}}),
        AnswerReader::OpenAiChat => json!({"id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": null},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}),
        AnswerReader::AnthropicMessage => json!({"id": "msg_01", "type": "message",
            "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 9}}),
        AnswerReader::GeminiText | AnswerReader::GeminiImages => json!({"candidates": [
            {"content": {"parts": [{"text": "Here"}, {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
            {"text": "thinking", "thought": true}], "role": "model"}, "finishReason": "STOP"}],
            "promptFeedback": {}, "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}}),
        AnswerReader::GeminiPredict => json!({"predictions": [
            {"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"},
            {"raiFilteredReason": "Unable to show generated images."}]}),
        AnswerReader::StabilityV1 => json!({"artifacts": [
            {"base64": PNG_B64, "seed": 7, "finishReason": "SUCCESS"},
            {"base64": PNG_B64, "seed": 8, "finishReason": "CONTENT_FILTERED"}]}),
        AnswerReader::StabilityV2 => {
            json!({"image": PNG_B64, "finish_reason": "SUCCESS", "seed": 1})
        }
        AnswerReader::Ideogram => json!({"created": "2025-01-01T00:00:00Z", "data": [
            {"url": "https://ideogram.example/a.png", "is_image_safe": true, "seed": 3, "prompt": "p", "resolution": "1024x1024"},
            {"url": null, "is_image_safe": false}]}),
        AnswerReader::Seedream => {
            json!({"model": "doubao-seedream-4-0-250828", "created": 1757323224,
            "data": [{"url": "https://tos.example/a.jpeg", "size": "1024x1024"},
            {"b64_json": PNG_B64}, {"error": {"code": "OutputImageSensitiveContentDetected", "message": "m"}}],
            "usage": {"generated_images": 2, "output_tokens": 16384}})
        }
        AnswerReader::AliyunSubmit => json!({"request_id": "e5d70b02",
            "output": {"task_id": "t-1", "task_status": "PENDING"}}),
        AnswerReader::AliyunTask => json!({"request_id": "e5d70b02", "output": {
            "task_id": "t-1", "task_status": "RUNNING",
            "results": [{"url": "https://dashscope.example/a.png", "actual_prompt": "p"},
                        {"code": "DataInspectionFailed", "message": "m"}],
            "task_metrics": {"TOTAL": 4, "SUCCEEDED": 1, "FAILED": 1}}}),
    }
}

/// A real error body of each provider type.
fn error_template(provider: ProviderType) -> Value {
    match provider {
        ProviderType::Anthropic => {
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        }
        ProviderType::Gemini => json!([{"error": {"code": 429, "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}]}}]),
        ProviderType::Stability => {
            json!({"id": "ab12", "name": "content_moderation", "errors": ["flagged"], "message": "m"})
        }
        ProviderType::Ideogram => json!({"error": "failed the safety checks", "detail": "d"}),
        ProviderType::Seedream => json!({"error": {"code": "InputTextSensitiveContentDetected",
            "message": "sensitive", "param": "", "type": "BadRequest"}}),
        ProviderType::Aliyun => {
            json!({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "0141"})
        }
        _ => {
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
            "param": null, "code": "content_policy_violation"}})
        }
    }
}

/// The events of a real stream of each reader, and its event names.
fn stream_template(reader: StreamReader) -> Vec<(Option<&'static str>, Value)> {
    match reader {
        StreamReader::OpenAiChat => vec![
            (
                None,
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            ),
            (
                None,
                json!({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}),
            ),
            (
                None,
                json!({"choices": [{"index": 0, "delta": {"content": "lo!", "refusal": null}, "finish_reason": "stop"}]}),
            ),
            (
                None,
                json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}),
            ),
            (None, json!("[DONE]")),
        ],
        StreamReader::AnthropicMessages => vec![
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}}),
            ),
            (Some("ping"), json!({"type": "ping"})),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "! Hi"}}),
            ),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        StreamReader::GeminiText => vec![
            (
                None,
                json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 5}}),
            ),
            (
                None,
                json!({"candidates": [{"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}}),
            ),
        ],
    }
}

/// Hostile JSON: the edges of number types, the account's key, base64 and none of it.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(u64::MAX),
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1),
            0..4u64
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
        prop_oneof![
            Just(FUZZ_KEY.to_owned()),
            Just(format!("Incorrect API key provided: {FUZZ_KEY}")),
            Just(PNG_B64.to_owned()),
            Just("SUCCEEDED".to_owned()),
            Just("CONTENT_FILTERED".to_owned()),
            Just("[DONE]".to_owned()),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `value`, itself first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `value` with the node at a picked pointer replaced (or removed from its object).
fn splice(mut value: Value, pick: &Index, with: Value, remove: bool) -> Value {
    let mut all = Vec::new();
    pointers(&value, String::new(), &mut all);
    let pointer = pick.get(&all).clone();
    if remove && let Some((parent, key)) = pointer.rsplit_once('/') {
        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
            map.remove(&key.replace("~1", "/").replace("~0", "~"));
        }
        return value;
    }
    match value.pointer_mut(&pointer) {
        Some(node) => *node = with,
        None => value = with,
    }
    value
}

/// The SSE text of events, with the line ending picked.
fn sse_text(events: &[(Option<&str>, Value)], end: &str) -> String {
    let mut text = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            text.push_str(&format!("event: {name}{end}"));
        }
        let data = match data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("data: {data}{end}{end}"));
    }
    text
}

fn chunked(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect()
}

fn run_stream(reader: StreamReader, chunks: Vec<Vec<u8>>) -> Result<bool, String> {
    stream_holds_now(reader, chunks)
}

#[test]
fn the_templates_are_accepted_whole() {
    for reader in AnswerReader::ALL {
        let body = serde_json::to_vec(&answer_template(reader)).unwrap();
        assert_eq!(answer_holds(reader, &body), Ok(true), "{reader:?}");
    }
    for reader in StreamReader::ALL {
        let text = sse_text(&stream_template(reader), "\n");
        assert_eq!(
            run_stream(reader, chunked(text.as_bytes(), 7)),
            Ok(true),
            "{reader:?}"
        );
    }
}

/// The files of `fuzz/seeds/<target>/`.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

#[test]
fn the_fuzz_seeds_are_read_as_the_providers_mean_them() {
    for (name, data) in seeds("provider_answer") {
        let (reader, body) = answer_input(&data).unwrap();
        let refused = name.contains("blocked") || name.contains("failed");
        assert_eq!(answer_holds(reader, body), Ok(!refused), "{name}");
    }
    for (name, data) in seeds("provider_error") {
        let (provider, status, _, body) = error_input(&data).unwrap();
        let error = account(provider).classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        );
        assert!(!error.message.is_empty(), "{name}");
        assert_eq!(error_bytes_hold(&data), Ok(()), "{name}");
    }
    for (name, data) in seeds("provider_stream") {
        let (reader, chunks) = stream_input(&data).unwrap();
        assert_eq!(
            run_stream(reader, chunks),
            Ok(!name.contains("error")),
            "{name}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_answers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let held = answer_bytes_hold(&data);
        prop_assert!(held.is_ok(), "{:?}", held);
        let held = error_bytes_hold(&data);
        prop_assert!(held.is_ok(), "{:?}", held);
    }

    #[test]
    fn answers_with_hostile_fields_hold(
        reader in 0..AnswerReader::ALL.len(),
        pick in any::<Index>(),
        with in any_json(),
        remove in any::<bool>(),
    ) {
        let reader = AnswerReader::ALL[reader];
        let body = serde_json::to_vec(&splice(answer_template(reader), &pick, with, remove))?;
        let held = answer_holds(reader, &body);
        prop_assert!(held.is_ok(), "{:?}", held);
    }

    #[test]
    fn error_answers_with_hostile_fields_hold(
        provider in 0..ERROR_PROVIDERS.len(),
        status in 100..1000u16,
        retry_after in proptest::option::of("[0-9a-zA-Z ,:.-]{0,32}"),
        pick in any::<Index>(),
        with in any_json(),
        remove in any::<bool>(),
    ) {
        let provider = ERROR_PROVIDERS[provider];
        let body = serde_json::to_vec(&splice(error_template(provider), &pick, with, remove))?;
        let held = classify_holds(provider, status, retry_after.as_deref(), &body);
        prop_assert!(held.is_ok(), "{:?}", held);
    }

    #[test]
    fn arbitrary_streams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let held = stream_bytes_hold(&data);
        prop_assert!(held.is_ok(), "{:?}", held);
    }

    #[test]
    fn streams_with_hostile_events_hold(
        reader in 0..StreamReader::ALL.len(),
        event in any::<Index>(),
        pick in any::<Index>(),
        with in any_json(),
        remove in any::<bool>(),
        end in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        size in 1..64usize,
    ) {
        let reader = StreamReader::ALL[reader];
        let mut events = stream_template(reader);
        let at = event.index(events.len());
        events[at].1 = splice(events[at].1.clone(), &pick, with, remove);
        let text = sse_text(&events, end);
        let held = run_stream(reader, chunked(text.as_bytes(), size));
        prop_assert!(held.is_ok(), "{:?}", held);
    }
}
