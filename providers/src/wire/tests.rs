//! The wire helpers' tests.

use super::*;
use reqwest::header::HeaderValue;

#[test]
fn retry_after_reads_seconds_ms_and_dates() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("2"));
    assert_eq!(retry_after_ms(&headers), Some(2000));
    headers.insert("retry-after-ms", HeaderValue::from_static("120"));
    assert_eq!(retry_after_ms(&headers), Some(120));
    let mut dated = HeaderMap::new();
    let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
    dated.insert(
        "retry-after",
        HeaderValue::from_str(&later).unwrap_or(HeaderValue::from_static("0")),
    );
    let ms = retry_after_ms(&dated).unwrap_or(0);
    assert!((28_000..=30_000).contains(&ms), "{ms}");
    assert_eq!(retry_after_ms(&HeaderMap::new()), None);
}

#[test]
fn durations_parse() {
    assert_eq!(duration_ms("26s"), Some(26_000));
    assert_eq!(duration_ms("1.5s"), Some(1_500));
    assert_eq!(duration_ms("120ms"), Some(120));
    assert_eq!(duration_ms("soon"), None);
}

#[test]
fn statuses_map_onto_the_taxonomy() {
    let code = |s: u16| status_code(StatusCode::from_u16(s).unwrap_or(StatusCode::OK));
    assert_eq!(code(400), ErrorCode::InvalidRequest);
    assert_eq!(code(401), ErrorCode::Unauthorized);
    assert_eq!(code(403), ErrorCode::Unauthorized);
    assert_eq!(code(404), ErrorCode::ProviderError);
    assert_eq!(code(429), ErrorCode::RateLimited);
    assert_eq!(code(502), ErrorCode::ProviderUnavailable);
    assert_eq!(code(529), ErrorCode::ProviderUnavailable);
}

#[test]
fn errors_never_carry_the_key_and_html_bodies_read_as_the_status() {
    let api = Api::new(
        ProviderType::Openai,
        Some("http://127.0.0.1:1/"),
        "",
        Some(ApiKey::new("sk-secret-123456")),
        |_, v| Refined {
            message: str_at(v, "/error/message").map(str::to_owned),
            ..Refined::default()
        },
    );
    assert_eq!(api.url("/v1/x"), "http://127.0.0.1:1/v1/x");
    let body = br#"{"error":{"message":"Incorrect API key provided: sk-secret-123456."}}"#;
    let error = api.classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body);
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert!(
        !error.message.contains("sk-secret-123456"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("Incorrect API key"),
        "{}",
        error.message
    );
    let html = b"<html><body>502 Bad Gateway</body></html>";
    let error = api.classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), html);
    assert_eq!(error.code, ErrorCode::ProviderUnavailable);
    assert!(
        error.message.contains("502: Bad Gateway"),
        "{}",
        error.message
    );
}

/// Found by fuzzing (issue #14): serde quotes a value of the wrong type in its
/// error, so an answer that echoes the key in such a field put it in the message.
#[test]
fn a_malformed_answer_never_carries_the_key() {
    let api = Api::new(
        ProviderType::Openai,
        Some("http://127.0.0.1:1/"),
        "",
        Some(ApiKey::new("sk-secret-123456")),
        |_, _| Refined::default(),
    );
    let error = api
        .parse::<Vec<u64>>(br#"["sk-secret-123456"]"#)
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ProviderError);
    assert!(error.message.contains("invalid type"), "{}", error.message);
    assert!(
        !error.message.contains("sk-secret-123456"),
        "{}",
        error.message
    );
}

#[test]
fn raw_answers_lose_payloads_and_signatures() {
    let raw = serde_json::json!({"data": [{"b64_json": "A".repeat(2000), "url": "https://x/y.png?sig=abc"}], "n": 1});
    let scrubbed = scrub_raw(&raw);
    assert_eq!(scrubbed["data"][0]["b64_json"], "<2000 bytes omitted>");
    assert_eq!(scrubbed["data"][0]["url"], "https://x/y.png?…");
    assert_eq!(scrubbed["n"], 1);
}
