//! OAuth2 refresh tokens that the token endpoint rotates (issue 16 §7), kept in the
//! database's token vault: a restarted gateway refreshes with the newest token, not
//! the one configured (which the server has invalidated), and replicas refresh one at
//! a time, each from the newest. The endpoint here behaves like a server that detects
//! reuse: any refresh token but the newest is `invalid_grant`. Also: the client
//! authenticates in the form body with `client_auth = "post"`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use switchyard_core::{Command, OAuth2};
use switchyard_runtime::{
    oauth_vault::StoreVault,
    providers::{
        AdapterRequest, BuildContext, ProviderAdapter, build_adapter_with,
        oauth::{TokenSource, TokenVault},
    },
};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

use crate::support::{TestDb, on_both_databases};

const SECRET: &str = "client-secret-0123456789";

/// A token endpoint that rotates refresh tokens and refuses every one but the newest.
#[derive(Clone)]
struct Rotating {
    state: Arc<Mutex<RotatingState>>,
}

struct RotatingState {
    newest: String,
    issued: u32,
    refused: u32,
}

impl Rotating {
    fn new(first: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(RotatingState {
                newest: first.to_owned(),
                issued: 0,
                refused: 0,
            })),
        }
    }

    fn refused(&self) -> u32 {
        self.state.lock().unwrap().refused
    }

    fn issued(&self) -> u32 {
        self.state.lock().unwrap().issued
    }
}

fn form_value(request: &Request, name: &str) -> Option<String> {
    url::form_urlencoded::parse(&request.body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Respond for Rotating {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let sent = form_value(request, "refresh_token");
        if sent.as_deref() != Some(state.newest.as_str()) {
            state.refused += 1;
            return ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_grant", "error_description": "refresh token reused"}),
            );
        }
        state.issued += 1;
        state.newest = format!("refresh-{}", state.issued);
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("tok-{}", state.issued), "token_type": "Bearer",
            "expires_in": 1, "refresh_token": state.newest}))
    }
}

async fn rotating_endpoint(server: &MockServer, first: &str) -> Rotating {
    let rotating = Rotating::new(first);
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(rotating.clone())
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1747000000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})))
        .mount(server)
        .await;
    rotating
}

fn auth(server: &MockServer, first: &str) -> Value {
    json!({"type": "oauth2", "token_url": format!("{}/oauth/token", server.uri()),
           "client_id": "gateway", "client_secret": SECRET, "grant": "refresh_token",
           "refresh_token": first})
}

fn adapter(
    server: &MockServer,
    first: &str,
    vault: &Arc<dyn TokenVault>,
) -> Arc<dyn ProviderAdapter> {
    let config = crate::support::provider_config(
        1,
        json!({"name": "oa", "provider": "openai", "model": "gpt-4o-mini",
               "base_url": format!("{}/v1", server.uri()), "auth": auth(server, first)}),
    );
    build_adapter_with(
        &config,
        &BuildContext {
            vault: Some(vault),
            ..BuildContext::default()
        },
    )
    .unwrap()
}

async fn chat(adapter: &Arc<dyn ProviderAdapter>) -> Result<(), String> {
    let command: Command = serde_json::from_value(json!({"request_id": "r-1", "tenant": "acme",
        "kind": "text.generate", "input": {"messages": [{"role": "user", "content": "hi"}]}}))
    .unwrap();
    adapter
        .generate(AdapterRequest::new(Arc::new(command)))
        .await
        .map(|_| ())
        .map_err(|e| e.message)
}

/// A gateway that refreshed (rotating the token) and then restarted refreshes with
/// the rotated token from the database, not the configured one.
async fn a_restarted_gateway_refreshes_with_the_newest_stored_token(db: &TestDb) {
    let server = MockServer::start().await;
    let first = "first-refresh".to_owned();
    let rotating = rotating_endpoint(&server, &first).await;
    let vault = StoreVault::shared(db.store.clone());
    let before = adapter(&server, &first, &vault);
    chat(&before).await.unwrap();
    assert_eq!(rotating.issued(), 1);
    // The process goes away (its token source with it) and a new one starts on the
    // same database, with the same configured (now invalidated) refresh token.
    drop(before);
    let vault = StoreVault::shared(db.store.clone());
    let after = adapter(&server, &first, &vault);
    chat(&after).await.unwrap();
    assert_eq!(
        rotating.refused(),
        0,
        "the restarted gateway reused an invalidated token"
    );
    assert_eq!(rotating.issued(), 2);
    // What is stored is the newest token, and encrypted.
    let stored = db
        .store
        .oauth_refresh_token(&switchyard_runtime::providers::oauth::client_key(
            &serde_json::from_value::<OAuth2>({
                let mut a = auth(&server, &first);
                a.as_object_mut().unwrap().remove("type");
                a
            })
            .unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("refresh-2"));
}

/// Two replicas (two token sources on one database) refreshing again and again, at
/// the same moments: each refresh starts from the newest token, none is refused.
async fn replicas_refresh_one_at_a_time_from_the_newest_token(db: &TestDb) {
    let server = MockServer::start().await;
    let first = "first-refresh".to_owned();
    let rotating = rotating_endpoint(&server, &first).await;
    let mut settings = auth(&server, &first);
    settings.as_object_mut().unwrap().remove("type");
    let settings: OAuth2 = serde_json::from_value(settings).unwrap();
    let replicas: Vec<Arc<TokenSource>> = (0..2)
        .map(|_| {
            Arc::new(TokenSource::new(
                settings.clone(),
                switchyard_runtime::providers::wire::client(),
                Some(StoreVault::shared(db.store.clone())),
            ))
        })
        .collect();
    for _ in 0..3 {
        let fetches = replicas.iter().map(|replica| replica.fresh());
        for result in futures_util::future::join_all(fetches).await {
            result.unwrap();
        }
        // Each token lives 1 s: the next round refreshes again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(
        rotating.refused(),
        0,
        "a replica refreshed with an invalidated token"
    );
    assert_eq!(rotating.issued(), 6);
}

on_both_databases!(
    a_restarted_gateway_refreshes_with_the_newest_stored_token,
    replicas_refresh_one_at_a_time_from_the_newest_token,
);

#[tokio::test]
async fn client_auth_post_sends_the_client_in_the_form_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}),
        ))
        .mount(&server)
        .await;
    let mut settings = auth(&server, "unused");
    let settings = settings.as_object_mut().unwrap();
    settings.remove("type");
    settings.remove("refresh_token");
    settings.insert("grant".into(), json!("client_credentials"));
    settings.insert("client_auth".into(), json!("post"));
    let settings: OAuth2 = serde_json::from_value(Value::Object(settings.clone())).unwrap();
    let source = TokenSource::new(
        settings,
        switchyard_runtime::providers::wire::client(),
        None,
    );
    source.fresh().await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let token = requests
        .iter()
        .find(|r| r.url.path() == "/oauth/token")
        .unwrap();
    assert!(
        token.headers.get("authorization").is_none(),
        "Basic auth was sent too"
    );
    assert_eq!(form_value(token, "client_id").as_deref(), Some("gateway"));
    assert_eq!(form_value(token, "client_secret").as_deref(), Some(SECRET));
    assert_eq!(
        form_value(token, "grant_type").as_deref(),
        Some("client_credentials")
    );
}
