//! The real provider adapters against local mock servers (wiremock) that answer as the
//! real APIs do (`reference/provider-apis.md`): success bodies, SSE sequences, error
//! envelopes, status codes and headers. Each test checks what the adapter sent (method,
//! path, auth header, JSON or multipart fields) and what came out (bytes, usage, cost,
//! error code); the engine-level ones also check stored artifacts and fallback.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use serde_json::{Value, json};
use switchyard_core::{
    Command, ConfigId, ErrorCode, Event, EventBody, ProviderConfig, ProviderConfigDraft,
};
use switchyard_runtime::{
    artifacts::ArtifactStore,
    engine::{Engine, EngineOptions, Submission},
    providers::{
        AdapterOutput, AdapterRequest, AdapterUpdate, AttemptError, InputImage, InputImages,
        ProviderAdapter, build_adapter,
    },
};
use tokio::sync::mpsc;
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{body_partial_json, header, method, path, query_param},
};

/// The 1×1 PNG of provider-apis.md §9.1.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap()
}

/// A second, different image (so artifacts can be told apart): a 2×1 PNG.
fn png_2x1() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 2, 1);
    encoder.set_color(png::ColorType::Rgba);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&[255, 0, 0, 255, 0, 255, 0, 255])
        .unwrap();
    drop(writer);
    out
}

/// One PNG input image, resolved.
fn one_input() -> InputImages {
    InputImages {
        images: vec![InputImage {
            bytes: png(),
            mime: "image/png".into(),
        }],
        mask: None,
    }
}

fn config(id: i64, json: Value) -> ProviderConfig {
    crate::support::provider_config(id, json)
}

fn adapter(json: Value) -> Arc<dyn ProviderAdapter> {
    build_adapter(&config(1, json)).unwrap()
}

fn command(json: Value) -> Arc<Command> {
    let mut json = json;
    json["request_id"] = json!("r-1");
    json["tenant"] = json!("acme");
    Arc::new(serde_json::from_value(json).unwrap())
}

fn image_command(input: Value) -> Arc<Command> {
    command(json!({"kind": "image.generate", "input": input}))
}

fn text_command(stream: bool) -> Arc<Command> {
    command(json!({"kind": "text.generate", "input": {
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 50, "stream": stream}}))
}

/// Runs one attempt; returns its result and the updates it sent.
async fn call(
    adapter: &Arc<dyn ProviderAdapter>,
    command: Arc<Command>,
    inputs: InputImages,
) -> (Result<AdapterOutput, AttemptError>, Vec<AdapterUpdate>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = adapter
        .generate(AdapterRequest {
            inputs: Arc::new(inputs),
            updates: Some(tx),
            ..AdapterRequest::new(command)
        })
        .await;
    let mut updates = Vec::new();
    while let Ok(update) = rx.try_recv() {
        updates.push(update);
    }
    (result, updates)
}

fn chunks(updates: &[AdapterUpdate]) -> Vec<String> {
    updates
        .iter()
        .filter_map(|u| match u {
            AdapterUpdate::Chunk(c) => Some(c.clone()),
            AdapterUpdate::Progress(_) => None,
        })
        .collect()
}

/// From now on every POST gets this answer.
async fn answer_all(server: &MockServer, answer: ResponseTemplate) {
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(server)
        .await;
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

async fn sent_json(server: &MockServer, index: usize) -> Value {
    serde_json::from_slice(&requests(server).await[index].body).unwrap()
}

/// The multipart body as text (binary parts lossily), for field assertions.
async fn sent_multipart(server: &MockServer, index: usize) -> String {
    let request = &requests(server).await[index];
    let content_type = request
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    String::from_utf8_lossy(&request.body).into_owned()
}

fn form_field(name: &str, value: &str) -> String {
    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
}

fn sse(events: &[&str]) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream; charset=utf-8")
        .insert_header("cache-control", "no-cache")
        .set_body_string(events.concat())
}

/// The error of one image request with this prompt.
async fn image_error(adapter: &Arc<dyn ProviderAdapter>, prompt: &str) -> AttemptError {
    err(call(
        adapter,
        image_command(json!({ "prompt": prompt })),
        InputImages::default(),
    )
    .await
    .0)
}

fn err(result: Result<AdapterOutput, AttemptError>) -> AttemptError {
    match result {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- OpenAI

#[tokio::test]
async fn openai_generates_dall_e_3_images_inline_and_keeps_the_revised_prompt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(header("authorization", "Bearer sk-test-1"))
        .and(body_partial_json(json!({"model": "dall-e-3", "prompt": "a lighthouse", "n": 1, "size": "1024x1792", "response_format": "b64_json", "style": "natural"})))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-request-id", "req_0123")
                .set_body_json(json!({"created": 1747000000, "data": [{"b64_json": PNG_B64, "revised_prompt": "A detailed lighthouse"}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-test-1", "model": "dall-e-3", "base_url": format!("{}/v1", server.uri())}),
    );
    let (result, _) = call(
        &adapter,
        image_command(
            json!({"prompt": "a lighthouse", "n": 1, "size": "1024x1792", "style": "natural"}),
        ),
        InputImages::default(),
    )
    .await;
    let out = result.unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(out.images[0].bytes, png());
    assert_eq!(
        out.images[0].revised_prompt.as_deref(),
        Some("A detailed lighthouse")
    );
    let raw = out.raw.unwrap();
    assert_eq!(raw["data"][0]["b64_json"], "<96 bytes omitted>", "{raw}");
}

/// `params` cannot override what the bill and the quota are computed from: the sent
/// body keeps the config's model and the input's image count, size and quality, while
/// a provider-specific setting still passes.
#[tokio::test]
async fn params_cannot_override_model_count_or_size() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/images/generations"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": PNG_B64}]})),
        )
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "model": "gpt-image-1", "base_url": server.uri()}),
    );
    let mut command = (*image_command(json!({"prompt": "p", "n": 1, "size": "1024x1024"}))).clone();
    command.params =
        json!({"model": "gpt-image-1-hd", "n": 10, "size": "4096x4096", "quality": "high",
                            "openai": {"n": 9, "background": "transparent"}})
        .as_object()
        .unwrap()
        .clone();
    let (result, _) = call(&adapter, Arc::new(command), InputImages::default()).await;
    result.unwrap();
    let body = sent_json(&server, 0).await;
    assert_eq!(body["model"], "gpt-image-1", "{body}");
    assert_eq!(body["n"], 1, "{body}");
    assert_eq!(body["size"], "1024x1024", "{body}");
    assert!(body.get("quality").is_none(), "{body}");
    assert_eq!(body["background"], "transparent", "{body}");
}

#[tokio::test]
async fn openai_gpt_image_reports_token_usage_and_url_results_are_downloaded_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1747000000, "size": "1024x1024", "quality": "high", "output_format": "png",
            "data": [{"b64_json": PNG_B64}, {"url": format!("{}/files/img-2.png?st=1&sig=abc", server.uri())}],
            "usage": {"input_tokens": 18, "input_tokens_details": {"text_tokens": 18, "image_tokens": 0}, "output_tokens": 4160, "total_tokens": 4178}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/img-2.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png_2x1()))
        .expect(1)
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "model": "gpt-image-1", "base_url": server.uri()}),
    );
    let (result, _) = call(
        &adapter,
        image_command(json!({"prompt": "p", "n": 2, "output_format": "png"})),
        InputImages::default(),
    )
    .await;
    let out = result.unwrap();
    assert_eq!(out.images[0].bytes, png());
    assert_eq!(out.images[1].bytes, png_2x1());
    assert_eq!((out.input_tokens, out.output_tokens), (18, 4160));
    let body = sent_json(&server, 0).await;
    assert_eq!(body["model"], "gpt-image-1");
    assert_eq!(body["output_format"], "png");
    assert!(body.get("response_format").is_none(), "{body}");
}

#[tokio::test]
async fn an_expired_result_url_is_a_provider_error_without_the_signature() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"url": format!("{}/files/gone.png?se=2025&sig=SECRETSIG", server.uri())}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/gone.png"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("content-type", "application/xml")
                .set_body_string("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"),
        )
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "base_url": server.uri()}),
    );
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::ProviderError);
    assert!(error.message.contains("HTTP 403"), "{}", error.message);
    assert!(!error.message.contains("SECRETSIG"), "{}", error.message);
}

/// A result URL off the configured endpoint's host is the provider's say-so: it goes
/// through the outbound guard, so a compromised provider cannot point the gateway at
/// a loopback service (here on another port of the same address).
#[tokio::test]
async fn a_result_url_pointing_inside_is_refused() {
    let (port, hits) = crate::guard::bait(crate::guard::Bait::Bytes(10)).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"url": format!("http://127.0.0.1:{port}/x.png?sig=SECRETSIG")}]})))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "base_url": server.uri()}),
    );
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::ProviderError);
    assert!(
        error.message.contains("refused to fetch"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("SECRETSIG"), "{}", error.message);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn openai_edits_send_the_input_images_and_mask_as_multipart() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/edits"))
        .and(header("authorization", "Bearer sk-e"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": PNG_B64}]})),
        )
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-e", "model": "gpt-image-1", "base_url": format!("{}/v1", server.uri())}),
    );
    let edit = command(
        json!({"kind": "image.edit", "input": {"prompt": "make it blue", "size": "1024x1024", "images": [{"b64": PNG_B64}, {"b64": PNG_B64}], "mask": {"b64": PNG_B64}}}),
    );
    let image = InputImage {
        bytes: png(),
        mime: "image/png".into(),
    };
    let inputs = InputImages {
        images: vec![image.clone(), image.clone()],
        mask: Some(image),
    };
    let (result, _) = call(&adapter, edit, inputs).await;
    assert_eq!(result.unwrap().images[0].bytes, png());
    let body = sent_multipart(&server, 0).await;
    assert!(body.contains(&form_field("model", "gpt-image-1")), "{body}");
    assert!(
        body.contains(&form_field("prompt", "make it blue")),
        "{body}"
    );
    assert!(body.contains(&form_field("size", "1024x1024")), "{body}");
    assert_eq!(
        body.matches("name=\"image[]\"; filename=\"image").count(),
        2,
        "{body}"
    );
    assert!(
        body.contains("name=\"mask\"; filename=\"mask.png\""),
        "{body}"
    );
    assert!(body.contains("Content-Type: image/png"), "{body}");
}

#[tokio::test]
async fn openai_variations_post_the_first_input_image_to_dall_e_2() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/images/variations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"created": 1, "data": [{"b64_json": PNG_B64}, {"b64_json": PNG_B64}]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-v", "base_url": server.uri()}),
    );
    let variation = command(
        json!({"kind": "image.edit", "params": {"openai": {"variation": true}},
        "input": {"prompt": "unused", "n": 2, "size": "512x512", "images": [{"b64": PNG_B64}]}}),
    );
    let out = call(&adapter, variation, one_input()).await.0.unwrap();
    assert_eq!(out.images.len(), 2);
    let body = sent_multipart(&server, 0).await;
    assert!(body.contains(&form_field("model", "dall-e-2")), "{body}");
    assert!(body.contains(&form_field("n", "2")), "{body}");
    assert!(body.contains(&form_field("size", "512x512")), "{body}");
    assert!(
        body.contains("name=\"image\"; filename=\"image.png\""),
        "{body}"
    );
    assert!(
        !body.contains("unused"),
        "variations take no prompt: {body}"
    );
}

#[tokio::test]
async fn openai_errors_map_onto_the_taxonomy_and_never_carry_the_key() {
    let server = MockServer::start().await;
    let cases = [
        (
            400,
            json!({"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}),
            ErrorCode::ContentFiltered,
        ),
        (
            400,
            json!({"error": {"message": "Your request was rejected by the safety system.", "type": "image_generation_user_error", "param": null, "code": "moderation_blocked", "moderation_details": {"moderation_stage": "input", "categories": ["harassment"]}}}),
            ErrorCode::ContentFiltered,
        ),
        (
            400,
            json!({"error": {"message": "Invalid size", "type": "invalid_request_error", "param": "size", "code": null}}),
            ErrorCode::InvalidRequest,
        ),
        (
            401,
            json!({"error": {"message": "Incorrect API key provided: sk-leaky-key-42. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            ErrorCode::Unauthorized,
        ),
        (
            429,
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            ErrorCode::Unauthorized,
        ),
        (
            500,
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
            ErrorCode::ProviderUnavailable,
        ),
    ];
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-leaky-key-42", "base_url": server.uri()}),
    );
    for (status, body, want) in cases {
        answer_all(
            &server,
            ResponseTemplate::new(status).set_body_json(body.clone()),
        )
        .await;
        let error = image_error(&adapter, "p").await;
        assert_eq!(error.code, want, "{status} {body}: {}", error.message);
        let expected = body["error"]["message"].as_str().unwrap();
        assert!(
            error.message.contains(&expected[..expected.len().min(20)]),
            "the provider's message is kept: {}",
            error.message
        );
        assert!(
            !error.message.contains("sk-leaky-key-42"),
            "{}",
            error.message
        );
    }
    // A 429 that is a rate limit carries the back-off.
    answer_all(&server,
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "Rate limit reached for dall-e-3 in organization org-1 on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 7s.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        ).await;
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert_eq!(error.retry_after_ms, Some(7000));
}

#[tokio::test]
async fn malformed_and_html_answers_are_clear_errors() {
    let server = MockServer::start().await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "base_url": server.uri()}),
    );
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_string("{\"data\": [{\"b64_json\": "),
        )
        .mount(&server)
        .await;
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::ProviderError);
    assert!(
        error.message.contains("malformed answer"),
        "{}",
        error.message
    );

    answer_all(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "%%% not base64"}]})),
    )
    .await;
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::ProviderError);

    answer_all(
        &server,
        ResponseTemplate::new(502)
            .insert_header("content-type", "text/html")
            .set_body_string(
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            ),
    )
    .await;
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
    assert!(
        error.message.contains("502: Bad Gateway"),
        "{}",
        error.message
    );
}

const OPENAI_STREAM: [&str; 5] = [
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"obfuscation\":\"xx\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    ": keep-alive\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
    "data: [DONE]\n\n",
];

#[tokio::test]
async fn openai_chat_streams_chunks_and_a_cut_stream_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(body_partial_json(json!({"stream": true, "stream_options": {"include_usage": true}, "model": "gpt-4o-mini", "max_completion_tokens": 50})))
        .respond_with(sse(&OPENAI_STREAM))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "model": "gpt-4o-mini", "base_url": server.uri()}),
    );
    let (result, updates) = call(&adapter, text_command(true), InputImages::default()).await;
    let out = result.unwrap();
    assert_eq!(out.text.as_deref(), Some("Hello!"));
    assert_eq!(chunks(&updates), ["Hel", "lo!"]);
    assert_eq!((out.input_tokens, out.output_tokens), (9, 3));
    let body = sent_json(&server, 0).await;
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
    );

    // The same stream without its terminator: cut off.
    Mock::given(method("POST"))
        .respond_with(sse(&OPENAI_STREAM[..3]))
        .mount(&server)
        .await;
    let (result, updates) = call(&adapter, text_command(true), InputImages::default()).await;
    let error = err(result);
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
    assert!(error.message.contains("cut off"), "{}", error.message);
    assert_eq!(chunks(&updates).len(), 2);
}

#[tokio::test]
async fn openai_compatible_servers_need_no_key_and_get_max_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "llama3", "max_tokens": 50})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-9", "object": "chat.completion", "created": 1747000000, "model": "llama3",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello!"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "local", "provider": "openai_compatible", "model": "llama3", "base_url": format!("{}/v1", server.uri())}),
    );
    let out = call(&adapter, text_command(false), InputImages::default())
        .await
        .0
        .unwrap();
    assert_eq!(out.text.as_deref(), Some("Hello!"));
    assert!(
        requests(&server).await[0]
            .headers
            .get("authorization")
            .is_none()
    );
    let missing = ProviderConfigDraft::new("x", "openai_compatible");
    let config = ProviderConfig {
        id: ConfigId(9),
        spec: missing.validate().unwrap(),
        version: 1,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let error = build_adapter(&config).unwrap_err();
    assert!(error.reason.contains("base_url"), "{error}");
}

#[tokio::test]
async fn health_checks_make_an_authenticated_read() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/models"))
        .and(header("authorization", "Bearer sk-good"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/models"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})))
        .mount(&server)
        .await;
    let good = adapter(
        json!({"name": "a", "provider": "openai", "api_key": "sk-good", "base_url": server.uri()}),
    );
    good.health_check().await.unwrap();
    let bad = adapter(
        json!({"name": "b", "provider": "openai", "api_key": "sk-bad", "base_url": server.uri()}),
    );
    assert_eq!(
        bad.health_check().await.unwrap_err().code,
        ErrorCode::Unauthorized
    );
}

// ---------------------------------------------------------------- Anthropic

const ANTHROPIC_STREAM: [&str; 9] = [
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"! How can I help?\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    "",
];

#[tokio::test]
async fn anthropic_messages_stream_with_cumulative_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-1"))
        .and(header("anthropic-version", "2023-06-01"))
        .and(body_partial_json(json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 50, "system": "Be brief.", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]})))
        .respond_with(sse(&ANTHROPIC_STREAM))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "claude", "provider": "anthropic", "api_key": "sk-ant-1", "base_url": server.uri()}),
    );
    let (result, updates) = call(&adapter, text_command(true), InputImages::default()).await;
    let out = result.unwrap();
    assert_eq!(out.text.as_deref(), Some("Hello! How can I help?"));
    assert_eq!(chunks(&updates), ["Hello", "! How can I help?"]);
    assert_eq!((out.input_tokens, out.output_tokens), (12, 9));
}

#[tokio::test]
async fn anthropic_non_stream_overload_and_mid_stream_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(sse(&[
            ANTHROPIC_STREAM[0],
            ANTHROPIC_STREAM[3],
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ]))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello! How can I help?"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}})))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "claude", "provider": "anthropic", "api_key": "sk-ant-1", "base_url": server.uri()}),
    );
    let out = call(&adapter, text_command(false), InputImages::default())
        .await
        .0
        .unwrap();
    assert_eq!(out.text.as_deref(), Some("Hello! How can I help?"));
    assert_eq!(out.output_tokens, 9);
    let (result, updates) = call(&adapter, text_command(true), InputImages::default()).await;
    let error = err(result);
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
    assert!(error.message.contains("Overloaded"), "{}", error.message);
    assert_eq!(chunks(&updates), ["Hello"]);

    answer_all(&server,
            ResponseTemplate::new(529)
                .insert_header("retry-after", "3")
                .set_body_json(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_011"})),
        ).await;
    let error = err(call(&adapter, text_command(false), InputImages::default())
        .await
        .0);
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
}

// ---------------------------------------------------------------- Gemini

#[tokio::test]
async fn gemini_images_come_back_as_inline_data_and_edits_send_theirs() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-image:generateContent"))
        .and(header("x-goog-api-key", "AIza-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "draft", "thought": true},
                {"text": "Here is the watercolor version."},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 290, "candidatesTokenCount": 1300, "totalTokenCount": 1590},
            "modelVersion": "gemini-2.5-flash-image", "responseId": "mJ2k"})))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "gem", "provider": "gemini", "api_key": "AIza-test", "base_url": format!("{}/v1beta", server.uri())}),
    );
    let edit = command(
        json!({"kind": "image.edit", "input": {"prompt": "watercolor", "aspect_ratio": "16:9", "size": "2K", "images": [{"b64": PNG_B64}]}}),
    );
    let inputs = one_input();
    let out = call(&adapter, edit, inputs).await.0.unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(out.images[0].bytes, png());
    assert_eq!((out.input_tokens, out.output_tokens), (290, 1300));
    let body = sent_json(&server, 0).await;
    assert_eq!(body["contents"][0]["parts"][0]["text"], "watercolor");
    assert_eq!(
        body["contents"][0]["parts"][1]["inlineData"],
        json!({"mimeType": "image/png", "data": PNG_B64})
    );
    assert_eq!(
        body["generationConfig"],
        json!({"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}})
    );
}

#[tokio::test]
async fn gemini_safety_outcomes_bad_keys_and_quota_read_right() {
    let server = MockServer::start().await;
    let adapter = adapter(
        json!({"name": "gem", "provider": "gemini", "api_key": "AIza-test", "base_url": server.uri()}),
    );
    let cases = [
        (
            200,
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}),
            ErrorCode::ContentFiltered,
        ),
        (
            200,
            json!({"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}], "usageMetadata": {"promptTokenCount": 8}}),
            ErrorCode::ContentFiltered,
        ),
        (
            200,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "I can only describe it."}]}, "finishReason": "STOP"}]}),
            ErrorCode::ProviderError,
        ),
        (
            400,
            json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}),
            ErrorCode::Unauthorized,
        ),
        (
            503,
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
            ErrorCode::ProviderUnavailable,
        ),
    ];
    for (status, body, want) in cases {
        answer_all(
            &server,
            ResponseTemplate::new(status).set_body_json(body.clone()),
        )
        .await;
        let error = image_error(&adapter, "p").await;
        assert_eq!(error.code, want, "{body}: {}", error.message);
    }
    answer_all(&server, ResponseTemplate::new(429).set_body_json(json!([{"error": {"code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}]}}]))).await;
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert_eq!(error.retry_after_ms, Some(26_000));
    assert!(
        error.message.contains("exceeded your current quota"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn gemini_text_streams_until_the_finish_reason_and_imagen_predicts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/models/gemini-2.5-flash:streamGenerateContent"))
        .and(query_param("alt", "sse"))
        .respond_with(sse(&[
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 5,\"totalTokenCount\": 5}}\r\n\r\n",
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 5,\"candidatesTokenCount\": 2,\"totalTokenCount\": 7}}\r\n\r\n",
        ]))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/models/imagen-4.0-generate-001:predict"))
        .and(body_partial_json(
            json!({"instances": [{"prompt": "p"}], "parameters": {"sampleCount": 2}}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"predictions": [
            {"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"},
            {"raiFilteredReason": "Unable to show generated images. Support codes: 56562880"}]})),
        )
        .mount(&server)
        .await;
    let text = adapter(
        json!({"name": "gem", "provider": "gemini", "api_key": "k", "model": "gemini-2.5-flash", "base_url": server.uri()}),
    );
    let (result, updates) = call(&text, text_command(true), InputImages::default()).await;
    let out = result.unwrap();
    assert_eq!(out.text.as_deref(), Some("Hello"));
    assert_eq!(chunks(&updates), ["Hel", "lo"]);
    assert_eq!((out.input_tokens, out.output_tokens), (5, 2));
    let body = sent_json(&server, 0).await;
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(body["generationConfig"]["maxOutputTokens"], 50);

    let imagen = adapter(
        json!({"name": "img", "provider": "gemini", "api_key": "k", "model": "imagen-4.0-generate-001", "base_url": server.uri()}),
    );
    let out = call(
        &imagen,
        image_command(json!({"prompt": "p", "n": 2})),
        InputImages::default(),
    )
    .await
    .0
    .unwrap();
    assert_eq!(out.images.len(), 1, "the filtered prediction is dropped");
}

// ---------------------------------------------------------------- Stability

#[tokio::test]
async fn stability_v2beta_core_is_multipart_and_filtered_images_are_content_filtered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2beta/stable-image/generate/core"))
        .and(header("authorization", "Bearer sk-stab"))
        .and(header("accept", "application/json"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json; type=image/png")
                .set_body_json(
                    json!({"image": PNG_B64, "finish_reason": "SUCCESS", "seed": 343940597}),
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"image": PNG_B64, "finish_reason": "CONTENT_FILTERED", "seed": 1}),
        ))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "stab", "provider": "stability", "api_key": "sk-stab", "base_url": server.uri()}),
    );
    let out = call(
        &adapter,
        image_command(json!({"prompt": "a fox", "negative_prompt": "blur", "aspect_ratio": "16:9", "seed": 5, "style": "anime", "output_format": "png"})),
        InputImages::default(),
    )
    .await
    .0
    .unwrap();
    assert_eq!(out.images[0].bytes, png());
    assert_eq!(out.images[0].seed, Some(343940597));
    let body = sent_multipart(&server, 0).await;
    for (name, value) in [
        ("prompt", "a fox"),
        ("negative_prompt", "blur"),
        ("aspect_ratio", "16:9"),
        ("seed", "5"),
        ("style_preset", "anime"),
        ("output_format", "png"),
    ] {
        assert!(body.contains(&form_field(name, value)), "{name}: {body}");
    }
    let error = err(call(
        &adapter,
        image_command(json!({"prompt": "a fox"})),
        InputImages::default(),
    )
    .await
    .0);
    assert_eq!(error.code, ErrorCode::ContentFiltered);

    answer_all(&server, ResponseTemplate::new(403).set_body_json(json!({"id": "ab12", "name": "content_moderation", "errors": ["Your request was flagged by our content moderation system, as a result your request was denied and you were not charged."]}))).await;
    let error = image_error(&adapter, "x").await;
    assert_eq!(error.code, ErrorCode::ContentFiltered);
    assert!(error.message.contains("flagged"), "{}", error.message);
}

#[tokio::test]
async fn stability_v1_engines_take_json_and_return_artifacts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"))
        .and(body_partial_json(json!({"text_prompts": [{"text": "a fox", "weight": 1}], "samples": 2, "width": 1024, "height": 1024})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"artifacts": [
            {"base64": PNG_B64, "seed": 1050625087, "finishReason": "SUCCESS"},
            {"base64": PNG_B64, "seed": 1229191277, "finishReason": "CONTENT_FILTERED"}]})))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "sdxl", "provider": "stability", "api_key": "sk", "model": "stable-diffusion-xl-1024-v1-0", "base_url": server.uri()}),
    );
    let out = call(
        &adapter,
        image_command(json!({"prompt": "a fox", "n": 2, "size": "1024x1024"})),
        InputImages::default(),
    )
    .await
    .0
    .unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(out.images[0].seed, Some(1050625087));
}

// ---------------------------------------------------------------- Ideogram

#[tokio::test]
async fn ideogram_v3_posts_multipart_with_api_key_and_downloads_results() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/ideogram-v3/generate"))
        .and(header("api-key", "ideo-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": "2025-08-27T10:23:28.806107+00:00",
            "data": [
                {"prompt": "A poster, bold title \"NORTH\"", "resolution": "1024x1024", "is_image_safe": true, "seed": 511526458, "style_type": "DESIGN",
                 "url": format!("{}/api/images/ephemeral/a.png?exp=1756290208&sig=s", server.uri())},
                {"prompt": "x", "resolution": "1024x1024", "is_image_safe": false, "seed": 1, "url": null}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/images/ephemeral/a.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png()))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "ideo", "provider": "ideogram", "api_key": "ideo-key", "base_url": server.uri()}),
    );
    let out = call(
        &adapter,
        image_command(json!({"prompt": "A poster", "n": 2, "aspect_ratio": "16:9"})),
        InputImages::default(),
    )
    .await
    .0
    .unwrap();
    assert_eq!(out.images.len(), 1, "the unsafe item is dropped");
    assert_eq!(out.images[0].seed, Some(511526458));
    assert_eq!(
        out.images[0].revised_prompt.as_deref(),
        Some("A poster, bold title \"NORTH\"")
    );
    let body = sent_multipart(&server, 0).await;
    assert!(body.contains(&form_field("aspect_ratio", "16x9")), "{body}");
    assert!(body.contains(&form_field("num_images", "2")), "{body}");

    answer_all(
        &server,
        ResponseTemplate::new(422)
            .set_body_json(json!({"error": "Prompt or provided image failed the safety checks"})),
    )
    .await;
    let error = image_error(&adapter, "x").await;
    assert_eq!(error.code, ErrorCode::ContentFiltered);
}

// ---------------------------------------------------------------- Seedream

#[tokio::test]
async fn seedream_sends_input_images_in_the_json_body_and_downloads_the_result() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v3/images/generations"))
        .and(header("authorization", "Bearer ark-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-request-id", "0217")
                .set_body_json(json!({"model": "doubao-seedream-4-0-250828", "created": 1757323224,
                    "data": [{"url": format!("{}/doubao-seedream-4-0/0217_0.jpeg?X-Tos-Expires=86400&X-Tos-Signature=s", server.uri()), "size": "2048x2048"}],
                    "usage": {"generated_images": 1, "output_tokens": 16384, "total_tokens": 16384}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/doubao-seedream-4-0/0217_0.jpeg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png_2x1()))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "ark", "provider": "seedream", "api_key": "ark-key", "base_url": format!("{}/api/v3", server.uri()), "options": {"watermark": false}}),
    );
    let edit = command(
        json!({"kind": "image.edit", "input": {"prompt": "same scene at night", "size": "2K", "images": [{"b64": PNG_B64}]}}),
    );
    let inputs = one_input();
    let out = call(&adapter, edit, inputs).await.0.unwrap();
    assert_eq!(out.images[0].bytes, png_2x1());
    assert_eq!(out.output_tokens, 16384);
    let body = sent_json(&server, 0).await;
    assert_eq!(
        body,
        json!({"model": "doubao-seedream-4-0-250828", "prompt": "same scene at night", "size": "2K",
               "image": format!("data:image/png;base64,{PNG_B64}"), "response_format": "url", "watermark": false})
    );

    answer_all(&server, ResponseTemplate::new(400).set_body_json(json!({"error": {"code": "InputTextSensitiveContentDetected", "message": "The request failed because the input text may contain sensitive information. Request id: 0217", "param": "", "type": "BadRequest"}}))).await;
    let error = image_error(&adapter, "x").await;
    assert_eq!(error.code, ErrorCode::ContentFiltered);
    assert!(
        error.message.contains("sensitive information"),
        "{}",
        error.message
    );
}

// ---------------------------------------------------------------- DashScope

fn dashscope_task(status: &str, extra: Value) -> ResponseTemplate {
    let mut output = json!({"task_id": "0385dc79", "task_status": status, "submit_time": "2025-01-08 16:03:59.840"});
    if let (Some(out), Value::Object(extra)) = (output.as_object_mut(), extra) {
        out.extend(extra);
    }
    ResponseTemplate::new(200).set_body_json(json!({"request_id": "e5d70b02", "output": output}))
}

#[tokio::test]
async fn dashscope_submits_then_polls_with_progress_until_done() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/services/aigc/text2image/image-synthesis"))
        .and(header("x-dashscope-async", "enable"))
        .and(header("authorization", "Bearer sk-ds"))
        .and(body_partial_json(json!({"model": "wan2.2-t2i-flash", "input": {"prompt": "花店"}, "parameters": {"size": "1024*1024", "n": 1}})))
        .respond_with(dashscope_task("PENDING", json!({})))
        .mount(&server)
        .await;
    for status in ["PENDING", "RUNNING"] {
        Mock::given(method("GET"))
            .and(path("/api/v1/tasks/0385dc79"))
            .respond_with(dashscope_task(
                status,
                json!({"task_metrics": {"TOTAL": 1, "SUCCEEDED": 0, "FAILED": 0}}),
            ))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api/v1/tasks/0385dc79"))
        .respond_with(dashscope_task("SUCCEEDED", json!({
            "end_time": "2025-01-08 16:04:10.660",
            "results": [{"orig_prompt": "花店", "actual_prompt": "一间花店（扩写后）", "url": format!("{}/1d/ab/xxxx.png?Expires=1736409850&Signature=s", server.uri())}],
            "task_metrics": {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/1d/ab/xxxx.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png()))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "wan", "provider": "aliyun", "api_key": "sk-ds", "base_url": format!("{}/api/v1", server.uri()), "options": {"poll_interval_ms": 5, "max_poll_interval_ms": 20}}),
    );
    let (result, updates) = call(
        &adapter,
        image_command(json!({"prompt": "花店", "size": "1024x1024"})),
        InputImages::default(),
    )
    .await;
    let out = result.unwrap();
    assert_eq!(out.images[0].bytes, png());
    assert_eq!(
        out.images[0].revised_prompt.as_deref(),
        Some("一间花店（扩写后）")
    );
    assert_eq!(
        updates,
        [AdapterUpdate::Progress(0.0), AdapterUpdate::Progress(0.5)]
    );
    let polls = requests(&server)
        .await
        .iter()
        .filter(|r| r.url.path() == "/api/v1/tasks/0385dc79")
        .count();
    assert_eq!(polls, 3);
}

#[tokio::test]
async fn a_dashscope_task_that_fails_after_two_polls_is_content_filtered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(dashscope_task("PENDING", json!({})))
        .mount(&server)
        .await;
    for _ in 0..2 {
        Mock::given(method("GET"))
            .respond_with(dashscope_task("RUNNING", json!({})))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .respond_with(dashscope_task("FAILED", json!({"code": "DataInspectionFailed", "message": "Output data may contain inappropriate content.", "task_metrics": {"TOTAL": 1, "SUCCEEDED": 0, "FAILED": 1}})))
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "wan", "provider": "aliyun", "api_key": "sk-ds", "base_url": server.uri(), "options": {"poll_interval_ms": 5, "max_poll_interval_ms": 20}}),
    );
    let (result, updates) = call(
        &adapter,
        image_command(json!({"prompt": "p"})),
        InputImages::default(),
    )
    .await;
    let error = err(result);
    assert_eq!(error.code, ErrorCode::ContentFiltered);
    assert!(
        error.message.contains("inappropriate content"),
        "{}",
        error.message
    );
    assert!(
        updates.contains(&AdapterUpdate::Progress(0.5)),
        "{updates:?}"
    );
    // An unknown submit error: the flat envelope.
    answer_all(&server, ResponseTemplate::new(401).set_body_json(json!({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "0141"}))).await;
    let error = image_error(&adapter, "p").await;
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert!(
        error.message.contains("Invalid API-key"),
        "{}",
        error.message
    );
}

// ---------------------------------------------------------------- through the engine

struct Harness {
    engine: Engine,
    artifacts: ArtifactStore,
    _dir: tempfile::TempDir,
}

async fn harness(configs: Vec<ProviderConfig>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(&format!(
        "file://{}",
        dir.path().join("artifacts").display()
    ))
    .unwrap();
    let (engine, failures) = Engine::start(
        configs,
        Vec::new(),
        EngineOptions {
            default_wait: Duration::from_secs(5),
            outbound: switchyard_runtime::guard::Guard::new(
                switchyard_runtime::guard::OutboundPolicy {
                    // The input images of these tests are served by a local mock.
                    allow: vec!["127.0.0.1".parse().unwrap()],
                    ..Default::default()
                },
            ),
            ..crate::support::engine_options(artifacts.clone())
        },
    )
    .await
    .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    Harness {
        engine,
        artifacts,
        _dir: dir,
    }
}

async fn execute(h: &Harness, command: Arc<Command>) -> (Vec<Event>, Option<Value>) {
    let mut events = Vec::new();
    let outcome = h
        .engine
        .execute(Submission::new(command, 1), &mut |e| events.push(e))
        .await;
    (events, outcome.raw_response)
}

#[tokio::test]
async fn a_429_with_retry_after_falls_back_to_another_account_and_the_image_is_stored() {
    let limited = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({"error": {"message": "Rate limit reached for images per minute.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        )
        .expect(1)
        .mount(&limited)
        .await;
    let healthy = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/images/generations"))
        .and(header("authorization", "Bearer sk-b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"created": 1, "data": [{"b64_json": PNG_B64, "revised_prompt": "rp"}]}),
        ))
        .expect(2)
        .mount(&healthy)
        .await;
    let h = harness(vec![
        config(1, json!({"name": "oa-a", "provider": "openai", "api_key": "sk-a", "model": "dall-e-3", "priority": 10, "base_url": limited.uri()})),
        config(2, json!({"name": "oa-b", "provider": "openai", "api_key": "sk-b", "model": "dall-e-3", "priority": 1, "base_url": healthy.uri()})),
    ])
    .await;
    let (events, raw) = execute(
        &h,
        image_command(json!({"prompt": "p", "size": "1024x1024"})),
    )
    .await;
    let EventBody::Completed {
        output,
        usage,
        provider,
        attempts,
        ..
    } = &events.last().unwrap().body
    else {
        panic!("{events:?}")
    };
    assert_eq!(provider.name, "oa-b");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].error_code, Some(ErrorCode::RateLimited));
    assert_eq!(
        usage.cost_usd, 0.04,
        "dall-e-3 1024x1024 from the default table"
    );
    let image = &output.images[0];
    assert_eq!(
        (image.mime.as_str(), image.width, image.height, image.bytes),
        ("image/png", 1, 1, png().len() as u64)
    );
    let (stored, meta) = h.artifacts.get(&image.artifact_id).await.unwrap();
    assert_eq!(stored, png());
    assert_eq!(meta.sha256, image.sha256);
    assert_eq!(image.revised_prompt.as_deref(), Some("rp"));
    let raw = raw.unwrap();
    assert!(
        !raw.to_string().contains(PNG_B64),
        "raw answers lose image data: {raw}"
    );

    // The limited account cools down: the next request goes straight to the other one.
    let (events, _) = execute(&h, image_command(json!({"prompt": "q"}))).await;
    let EventBody::Completed {
        attempts, routing, ..
    } = &events.last().unwrap().body
    else {
        panic!("{events:?}")
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].config_id, ConfigId(2));
    let skipped = &routing.as_ref().unwrap().skipped;
    assert!(
        skipped.iter().any(|s| s.config_id == ConfigId(1)),
        "{skipped:?}"
    );
    h.engine.shutdown();
}

#[tokio::test]
async fn edit_inputs_resolve_from_urls_artifacts_and_base64_and_bad_ones_call_nobody() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/in/photo.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png_2x1()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/in/missing.png"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/images/generations"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [{"url": format!("{}/out.png", server.uri())}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png()))
        .mount(&server)
        .await;
    let h = harness(vec![config(
        1,
        json!({"name": "ark", "provider": "seedream", "api_key": "k", "base_url": server.uri()}),
    )])
    .await;
    let stored = h.artifacts.put(&png()).await.unwrap();
    let edit = |images: Value| {
        command(json!({"kind": "image.edit", "input": {"prompt": "night", "images": images}}))
    };
    let (events, _) = execute(
        &h,
        edit(json!([{"url": format!("{}/in/photo.png", server.uri())}, {"artifact_id": stored.id}, {"b64": format!("data:image/png;base64,{PNG_B64}")}])),
    )
    .await;
    assert!(
        matches!(events.last().unwrap().body, EventBody::Completed { .. }),
        "{events:?}"
    );
    let sent = requests(&server)
        .await
        .into_iter()
        .find(|r| r.url.path() == "/images/generations")
        .unwrap();
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    let images = body["image"].as_array().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        images[0],
        format!("data:image/png;base64,{}", b64.encode(png_2x1()))
    );
    assert_eq!(images[1], format!("data:image/png;base64,{PNG_B64}"));
    assert_eq!(images[2], format!("data:image/png;base64,{PNG_B64}"));

    for (bad, needle) in [
        (
            json!([{"url": format!("{}/in/missing.png", server.uri())}]),
            "HTTP 404",
        ),
        (json!([{"artifact_id": "0".repeat(64)}]), "no artifact"),
        (json!([{"b64": "not base64!"}]), "not base64"),
        (
            json!([{"b64": b64.encode(b"plain text, not an image")}]),
            "not a recognisable image",
        ),
        (
            json!([{"url": "file:///etc/passwd"}]),
            "only http and https",
        ),
    ] {
        let before = requests(&server).await.len();
        let (events, _) = execute(&h, edit(bad.clone())).await;
        let EventBody::Failed {
            error, attempts, ..
        } = &events.last().unwrap().body
        else {
            panic!("{bad}: {events:?}")
        };
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{bad}");
        assert!(error.message.contains(needle), "{bad}: {}", error.message);
        assert!(attempts.is_empty());
        let provider_calls = requests(&server).await[before..]
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count();
        assert_eq!(provider_calls, 0, "no provider is called for {bad}");
    }
    h.engine.shutdown();
}

#[tokio::test]
async fn a_stream_cut_after_its_first_chunk_fails_with_the_chunk_count_and_no_fallback() {
    let cut = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(&OPENAI_STREAM[..3]))
        .mount(&cut)
        .await;
    let spare = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(&OPENAI_STREAM))
        .expect(0)
        .mount(&spare)
        .await;
    let h = harness(vec![
        config(1, json!({"name": "a", "provider": "openai", "api_key": "k", "model": "gpt-4o-mini", "priority": 10, "base_url": cut.uri()})),
        config(2, json!({"name": "b", "provider": "openai", "api_key": "k", "model": "gpt-4o-mini", "base_url": spare.uri()})),
    ])
    .await;
    let (events, _) = execute(&h, text_command(true)).await;
    let chunk_events = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Chunk { .. }))
        .count();
    assert_eq!(chunk_events, 2);
    let EventBody::Failed {
        error,
        chunks_delivered,
        ..
    } = &events.last().unwrap().body
    else {
        panic!("{events:?}")
    };
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
    assert_eq!(*chunks_delivered, Some(2));
    h.engine.shutdown();
}

#[tokio::test]
async fn dashscope_progress_reaches_the_event_stream() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(dashscope_task("PENDING", json!({})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/0385dc79"))
        .respond_with(dashscope_task("RUNNING", json!({})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/0385dc79"))
        .respond_with(dashscope_task(
            "SUCCEEDED",
            json!({"results": [{"url": format!("{}/r.png", server.uri())}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/r.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png()))
        .mount(&server)
        .await;
    let h = harness(vec![config(
        1,
        json!({"name": "wan", "provider": "aliyun", "api_key": "k", "base_url": server.uri(), "options": {"poll_interval_ms": 5, "max_poll_interval_ms": 5}}),
    )])
    .await;
    let (events, _) = execute(&h, image_command(json!({"prompt": "p"}))).await;
    let progress: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Progress { progress, provider } => {
                assert_eq!(provider.name, "wan");
                Some(*progress)
            }
            _ => None,
        })
        .collect();
    assert_eq!(progress, [0.0, 0.5]);
    let EventBody::Completed { usage, .. } = &events.last().unwrap().body else {
        panic!("{events:?}")
    };
    assert_eq!(usage.cost_usd, 0.02, "wan2.2-t2i-flash default price");
    h.engine.shutdown();
}

#[tokio::test]
async fn a_provider_slower_than_timeout_ms_is_a_timeout_and_the_next_account_serves() {
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(5))
                .set_body_json(json!({"data": [{"b64_json": PNG_B64}]})),
        )
        .mount(&slow)
        .await;
    let fast = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": PNG_B64}]})),
        )
        .mount(&fast)
        .await;
    let h = harness(vec![
        config(1, json!({"name": "slow", "provider": "stability", "api_key": "k", "model": "stable-diffusion-v1-6", "priority": 5, "timeout_ms": 100, "base_url": slow.uri()})),
        config(2, json!({"name": "fast", "provider": "openai", "api_key": "k", "base_url": fast.uri()})),
    ])
    .await;
    let (events, _) = execute(&h, image_command(json!({"prompt": "p"}))).await;
    let EventBody::Completed {
        attempts, provider, ..
    } = &events.last().unwrap().body
    else {
        panic!("{events:?}")
    };
    assert_eq!(attempts[0].error_code, Some(ErrorCode::Timeout));
    assert_eq!(provider.name, "fast");
    h.engine.shutdown();
}

#[test]
fn unknown_or_bad_options_refuse_to_start_the_instance() {
    for provider in [
        "openai",
        "openai_compatible",
        "anthropic",
        "gemini",
        "stability",
        "ideogram",
        "seedream",
        "aliyun",
    ] {
        let error = build_adapter(&config(
            1,
            json!({"name": "x", "provider": provider, "api_key": "k", "base_url": "http://127.0.0.1:9", "options": {"bogus": 1}}),
        ))
        .unwrap_err();
        assert!(error.to_string().contains("bogus"), "{provider}: {error}");
        // Without options every type starts.
        build_adapter(&config(
            1,
            json!({"name": "x", "provider": provider, "api_key": "k", "base_url": "http://127.0.0.1:9"}),
        ))
        .unwrap();
    }
    for (provider, options, needle) in [
        ("stability", json!({"strength": 2.0}), "strength"),
        (
            "seedream",
            json!({"response_format": "png"}),
            "response_format",
        ),
        ("aliyun", json!({"poll_interval_ms": 0}), "poll_interval_ms"),
    ] {
        let error = build_adapter(&config(
            1,
            json!({"name": "x", "provider": provider, "api_key": "k", "options": options}),
        ))
        .unwrap_err();
        assert!(error.to_string().contains(needle), "{provider}: {error}");
    }
}

#[tokio::test]
async fn stability_options_give_defaults_that_the_command_overrides() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"image": PNG_B64, "finish_reason": "SUCCESS", "seed": 1})),
        )
        .mount(&server)
        .await;
    let adapter = adapter(
        json!({"name": "s", "provider": "stability", "api_key": "k", "model": "ultra", "base_url": server.uri(), "options": {"style_preset": "photographic", "strength": 0.3}}),
    );
    call(
        &adapter,
        image_command(json!({"prompt": "p"})),
        InputImages::default(),
    )
    .await
    .0
    .unwrap();
    let edit = command(
        json!({"kind": "image.edit", "input": {"prompt": "p", "style": "anime", "images": [{"b64": PNG_B64}]}}),
    );
    let inputs = one_input();
    call(&adapter, edit, inputs).await.0.unwrap();
    let first = sent_multipart(&server, 0).await;
    assert!(
        first.contains(&form_field("style_preset", "photographic")),
        "{first}"
    );
    let second = sent_multipart(&server, 1).await;
    assert!(
        second.contains(&form_field("style_preset", "anime")),
        "{second}"
    );
    assert!(second.contains(&form_field("strength", "0.3")), "{second}");
    assert!(
        second.contains("name=\"image\"; filename=\"image.png\""),
        "{second}"
    );
    assert!(
        requests(&server).await[1]
            .url
            .path()
            .ends_with("/generate/ultra")
    );
}

// ---------------------------------------------------------------- Multimodal chat (#18 §4)

fn multimodal_command() -> Arc<Command> {
    command(json!({"kind": "text.generate", "input": {
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in it?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/kite.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AA=="}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
        ]}],
        "max_tokens": 50, "stream": true}}))
}

/// Each adapter sends a message's content parts in its provider's own format.
#[tokio::test]
async fn content_parts_go_out_in_each_providers_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(sse(&OPENAI_STREAM))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse(&ANTHROPIC_STREAM))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/models/gemini-2.5-flash:streamGenerateContent"))
        .respond_with(sse(&[
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"A kite\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 5,\"candidatesTokenCount\": 2,\"totalTokenCount\": 7}}\r\n\r\n",
        ]))
        .mount(&server)
        .await;

    let openai = adapter(
        json!({"name": "oa", "provider": "openai", "api_key": "sk-x", "model": "gpt-4o-mini", "base_url": server.uri()}),
    );
    call(&openai, multimodal_command(), InputImages::default())
        .await
        .0
        .unwrap();
    let sent = sent_json(&server, 0).await;
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is in it?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/kite.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AA=="}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
        ])
    );

    let anthropic = adapter(
        json!({"name": "claude", "provider": "anthropic", "api_key": "sk-ant-1", "base_url": server.uri()}),
    );
    call(&anthropic, multimodal_command(), InputImages::default())
        .await
        .0
        .unwrap();
    let sent = sent_json(&server, 1).await;
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is in it?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/kite.png"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AA=="}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
        ])
    );

    let gemini = adapter(
        json!({"name": "gem", "provider": "gemini", "api_key": "k", "model": "gemini-2.5-flash", "base_url": server.uri()}),
    );
    call(&gemini, multimodal_command(), InputImages::default())
        .await
        .0
        .unwrap();
    let sent = sent_json(&server, 2).await;
    assert_eq!(
        sent["contents"][0]["parts"],
        json!([
            {"text": "What is in it?"},
            {"file_data": {"mime_type": "image/png", "file_uri": "https://example.com/kite.png"}},
            {"inline_data": {"mime_type": "image/jpeg", "data": "/9j/AA=="}},
            {"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0="}}
        ])
    );

    // Anthropic takes no audio: a clear invalid request, nothing sent.
    let audio = command(
        json!({"kind": "text.generate", "input": {"messages": [{"role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]}}),
    );
    let error = call(&anthropic, audio, InputImages::default())
        .await
        .0
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidRequest, "{error}");
    assert_eq!(requests(&server).await.len(), 3);
}
