//! OAuth2 provider auth (issue 16 §7) against a local token endpoint (wiremock): the
//! client-credentials and refresh-token grants, one token shared by concurrent calls,
//! renewal before expiry, one retry with a new token after a 401, and a failed
//! refresh that is a clear error without any secret in it.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use switchyard_core::{Command, ErrorCode};
use switchyard_runtime::providers::{AdapterRequest, ProviderAdapter, build_adapter};
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{body_string_contains, header, method, path},
};

const SECRET: &str = "client-secret-0123456789";

fn chat_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1747000000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello!"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}))
}

/// Every chat call is answered.
async fn chat_answers(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(chat_answer())
        .mount(server)
        .await;
}

/// OpenAI's answer to a token it does not take.
fn refused() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(
        json!({"error": {"message": "Invalid token", "type": "invalid_request_error", "code": "invalid_api_key"}}),
    )
}

fn token(access: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in}),
    )
}

/// The token endpoint answers `first` once, then `then` every time.
async fn tokens_in_turn(server: &MockServer, first: ResponseTemplate, then: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(first)
        .up_to_n_times(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(then)
        .mount(server)
        .await;
}

fn adapter(server: &MockServer, auth: Value) -> Arc<dyn ProviderAdapter> {
    let mut auth = auth;
    auth["type"] = json!("oauth2");
    auth["token_url"] = json!(format!("{}/oauth/token", server.uri()));
    auth["client_id"] = json!("gateway");
    let config = crate::support::provider_config(
        1,
        json!({"name": "oa", "provider": "openai", "model": "gpt-4o-mini",
               "base_url": format!("{}/v1", server.uri()), "auth": auth}),
    );
    build_adapter(&config).unwrap()
}

fn chat() -> Arc<Command> {
    Arc::new(
        serde_json::from_value(
            json!({"request_id": "r-1", "tenant": "acme", "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "hi"}]}}),
        )
        .unwrap(),
    )
}

async fn run(
    adapter: &Arc<dyn ProviderAdapter>,
) -> Result<String, switchyard_runtime::providers::AttemptError> {
    adapter
        .generate(AdapterRequest::new(chat()))
        .await
        .map(|out| out.text.unwrap_or_default())
}

async fn received(server: &MockServer, at: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

fn bearer(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn client_credentials_fetch_one_token_for_concurrent_calls_and_send_it_as_bearer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=ai.generate+ai.read"))
        .respond_with(token("tok-1", 3600).set_delay(Duration::from_millis(100)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(chat_answer())
        .mount(&server)
        .await;
    let adapter = adapter(
        &server,
        json!({"client_secret": SECRET, "scopes": ["ai.generate", "ai.read"]}),
    );
    let calls: Vec<_> = (0..8).map(|_| run(&adapter)).collect();
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap(), "Hello!");
    }
    let fetches = received(&server, "/oauth/token").await;
    assert_eq!(fetches.len(), 1, "one fetch for eight concurrent calls");
    // The client authenticates with HTTP Basic (RFC 6749 §2.3.1).
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("gateway:{SECRET}"));
    assert_eq!(bearer(&fetches[0]), format!("Basic {basic}"));
    assert_eq!(received(&server, "/v1/chat/completions").await.len(), 8);
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    let server = MockServer::start().await;
    tokens_in_turn(&server, token("tok-1", 2), token("tok-2", 3600)).await;
    chat_answers(&server).await;
    let adapter = adapter(&server, json!({"client_secret": SECRET}));
    run(&adapter).await.unwrap();
    run(&adapter).await.unwrap();
    // A two-second token is renewed a tenth of its life before it ends: at 1.8 s.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    run(&adapter).await.unwrap();
    let sent: Vec<String> = received(&server, "/v1/chat/completions")
        .await
        .iter()
        .map(bearer)
        .collect();
    assert_eq!(sent, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(received(&server, "/oauth/token").await.len(), 2);
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_call_retried_once() {
    let server = MockServer::start().await;
    tokens_in_turn(&server, token("revoked", 3600), token("tok-2", 3600)).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer revoked"))
        .respond_with(refused())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(chat_answer())
        .mount(&server)
        .await;
    let adapter = adapter(&server, json!({"client_secret": SECRET}));
    assert_eq!(run(&adapter).await.unwrap(), "Hello!");
    assert_eq!(received(&server, "/v1/chat/completions").await.len(), 2);

    // A 401 for every token: one retry, then the error (no loop).
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token("tok-3", 3600))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(refused())
        .mount(&server)
        .await;
    let adapter = build_adapter(&crate::support::provider_config(
        2,
        json!({"name": "ob", "provider": "openai", "model": "gpt-4o-mini",
               "base_url": format!("{}/v1", server.uri()),
               "auth": {"type": "oauth2", "token_url": format!("{}/oauth/token", server.uri()),
                        "client_id": "other", "client_secret": SECRET}}),
    ))
    .unwrap();
    let error = run(&adapter).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert_eq!(received(&server, "/v1/chat/completions").await.len(), 2);
}

#[tokio::test]
async fn a_failed_refresh_is_a_clear_error_without_secrets_and_is_not_hammered() {
    let server = MockServer::start().await;
    let refresh = "refresh-token-abcdefghijkl";
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={refresh}")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": format!("refresh token {refresh} expired")})))
        .mount(&server)
        .await;
    let adapter = adapter(
        &server,
        json!({"client_secret": SECRET, "grant": "refresh_token", "refresh_token": refresh}),
    );
    let error = run(&adapter).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert!(error.message.contains("invalid_grant"), "{}", error.message);
    assert!(!error.message.contains(refresh), "{}", error.message);
    assert!(!error.message.contains(SECRET), "{}", error.message);
    // Within the next second the failure is answered from memory.
    let again = run(&adapter).await.unwrap_err();
    assert_eq!(again, error);
    assert_eq!(received(&server, "/oauth/token").await.len(), 1);
    assert!(received(&server, "/v1/chat/completions").await.is_empty());

    // An unreachable endpoint is `provider_unavailable`, so routing moves on.
    let gone = crate::support::free_port();
    let config = crate::support::provider_config(
        3,
        json!({"name": "oc", "provider": "openai", "model": "gpt-4o-mini",
               "base_url": format!("{}/v1", server.uri()),
               "auth": {"type": "oauth2", "token_url": format!("http://127.0.0.1:{gone}/token"),
                        "client_id": "c", "client_secret": SECRET}}),
    );
    let error = run(&build_adapter(&config).unwrap()).await.unwrap_err();
    assert_eq!(
        error.code,
        ErrorCode::ProviderUnavailable,
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_is_used_for_the_next_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("refresh_token=first-refresh-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-1", "token_type": "bearer", "expires_in": "1",
            "refresh_token": "second-refresh-token"})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("refresh_token=second-refresh-token"))
        .respond_with(token("tok-2", 3600))
        .mount(&server)
        .await;
    chat_answers(&server).await;
    let adapter = adapter(
        &server,
        json!({"client_secret": SECRET, "grant": "refresh_token", "refresh_token": "first-refresh-token"}),
    );
    run(&adapter).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    run(&adapter).await.unwrap();
    let sent: Vec<String> = received(&server, "/v1/chat/completions")
        .await
        .iter()
        .map(bearer)
        .collect();
    assert_eq!(sent, ["Bearer tok-1", "Bearer tok-2"]);
}

#[tokio::test]
async fn a_failed_renewal_keeps_serving_the_token_until_it_expires() {
    let server = MockServer::start().await;
    tokens_in_turn(
        &server,
        token("tok-1", 4),
        ResponseTemplate::new(503).set_body_string("down for maintenance"),
    )
    .await;
    chat_answers(&server).await;
    let adapter = adapter(&server, json!({"client_secret": SECRET}));
    run(&adapter).await.unwrap();
    // Due for renewal at 3.6 s; the endpoint is down, the token good until 4 s.
    tokio::time::sleep(Duration::from_millis(3700)).await;
    assert_eq!(run(&adapter).await.unwrap(), "Hello!");
    let sent: Vec<String> = received(&server, "/v1/chat/completions")
        .await
        .iter()
        .map(bearer)
        .collect();
    assert_eq!(sent, ["Bearer tok-1", "Bearer tok-1"]);
    assert_eq!(received(&server, "/oauth/token").await.len(), 2);
    // Once expired, the failure is the answer.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let error = run(&adapter).await.unwrap_err();
    assert_eq!(
        error.code,
        ErrorCode::ProviderUnavailable,
        "{}",
        error.message
    );
}
