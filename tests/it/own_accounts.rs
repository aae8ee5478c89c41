//! A tenant's own provider accounts (bring your own key, issue 16 §6) on a real `serve`
//! runtime: managed with the tenant's key, tested with the provider before they are
//! stored, used only for that tenant (first, only or never, as its setting says),
//! recorded in usage but not charged to its quota, and invisible to other tenants.

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::{
    reload::{Node, http, start_node_with},
    support::TestDb,
};

const GOOD: &str = "sk-tenant-good-0123456789";

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {GOOD}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {GOOD}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1747000000, "model": "gpt-own",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "from the own account"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})))
        .mount(&server)
        .await;
    // Any other key: refused as OpenAI refuses it.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": "Incorrect API key provided", "type": "invalid_request_error",
            "code": "invalid_api_key"}})))
        .mount(&server)
        .await;
    server
}

async fn upstream_calls(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .count()
}

fn key_of(node: &Node, tenant: &str) -> String {
    let (status, made) = node.call(
        "POST",
        &format!("/v1/tenants/{tenant}/keys"),
        Some(json!({"name": "k"})),
    );
    assert_eq!(status, 201, "{made}");
    made["key"].as_str().unwrap().to_owned()
}

fn chat(node: &Node, key: &str) -> (u16, Value) {
    http(
        node.port,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    )
}

fn answer(reply: &(u16, Value)) -> String {
    assert_eq!(reply.0, 200, "{}", reply.1);
    reply.1["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_accounts_serve_only_their_tenant_uncharged_and_tested_at_save() {
    let db = TestDb::sqlite().await;
    let server = upstream().await;
    let node = start_node_with(
        &db,
        json!([{"name": "shared", "provider": "mock", "kinds": ["text.generate"]}]),
        "memory://",
        "switchyard",
        // The test's upstream listens on loopback: allowed to tenants here, as an
        // operator would allow an internal host.
        |settings| settings.outbound.tenant_allow = vec!["127.0.0.1".to_owned()],
    )
    .await;
    let acme = key_of(&node, "acme");
    let globex = key_of(&node, "globex");
    let base_url = format!("{}/v1", server.uri());
    let account = |key: &str| {
        json!({"name": "own", "provider": "openai", "model": "gpt-own", "api_key": key,
               "base_url": base_url, "kinds": ["text.generate"]})
    };
    let accounts = "/v1/tenants/acme/providers";

    // A key the provider refuses is not stored.
    let (status, refused) = http(
        node.port,
        "POST",
        accounts,
        Some(&acme),
        Some(&account("sk-bad-key-0000000000")),
    );
    assert_eq!(status, 422, "{refused}");
    assert!(refused.to_string().contains("unauthorized"), "{refused}");
    assert!(
        !refused.to_string().contains("sk-bad-key-0000000000"),
        "{refused}"
    );
    let (_, listed) = http(node.port, "GET", accounts, Some(&acme), None);
    assert_eq!(listed["items"], json!([]));
    // Mock and plugin types are the operator's; another owner is refused.
    let (status, _) = http(
        node.port,
        "POST",
        accounts,
        Some(&acme),
        Some(&json!({"name": "m", "provider": "mock"})),
    );
    assert_eq!(status, 400);
    let mut theirs = account(GOOD);
    theirs["owner"] = json!("globex");
    assert_eq!(
        http(node.port, "POST", accounts, Some(&acme), Some(&theirs)).0,
        400
    );
    // A loopback endpoint named by an IP literal that is not allowed: 422, not fetched.
    let mut inside = account(GOOD);
    inside["base_url"] = json!("http://169.254.169.254/v1");
    let (status, answer_) = http(node.port, "POST", accounts, Some(&acme), Some(&inside));
    assert_eq!(status, 422, "{answer_}");

    // A good key: tested, stored under the tenant's prefix, the key masked.
    let (status, made) = http(
        node.port,
        "POST",
        accounts,
        Some(&acme),
        Some(&account(GOOD)),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["name"], "acme.own");
    assert_eq!(made["owner"], "acme");
    assert!(!made.to_string().contains(GOOD), "{made}");
    let id = made["id"].as_i64().unwrap();

    // Another tenant neither sees nor manages it.
    assert_eq!(http(node.port, "GET", accounts, Some(&globex), None).0, 403);
    let (status, theirs) = http(
        node.port,
        "GET",
        "/v1/tenants/globex/providers",
        Some(&globex),
        None,
    );
    assert_eq!((status, theirs["items"].clone()), (200, json!([])));
    for (verb, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"enabled": false}))),
        ("DELETE", None),
    ] {
        let (status, _) = http(
            node.port,
            verb,
            &format!("/v1/tenants/globex/providers/{id}"),
            Some(&globex),
            body.as_ref(),
        );
        assert_eq!(status, 404, "{verb}");
    }
    // Not even the operator moves it to another tenant; naming its own owner is fine.
    let (status, refused) = node.call(
        "PATCH",
        &format!("/v1/providers/{id}"),
        Some(json!({"owner": "globex"})),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("owner"), "{refused}");
    let (status, same) = node.call(
        "PATCH",
        &format!("/v1/providers/{id}"),
        Some(json!({"owner": "acme"})),
    );
    assert_eq!(status, 200, "{same}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The reload that starts the account's actor is asynchronous.
    while answer(&chat(&node, &acme)) != "from the own account" {
        assert!(
            std::time::Instant::now() < deadline,
            "the own account never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A quota of one request a day: the own account's calls are not charged to it,
    // and a tenant over its quota is still served by its own account.
    let quota = json!({"tenant": "acme", "period": "day", "max_requests": 1});
    assert_eq!(node.call("PUT", "/v1/quotas", Some(quota)).0, 200);
    for _ in 0..3 {
        assert_eq!(answer(&chat(&node, &acme)), "from the own account");
    }
    // Only acme's own model list names its account; asking globex's for it is 404.
    let (_, listed) = http(node.port, "GET", "/v1/models", Some(&acme), None);
    assert!(listed.to_string().contains("acme.own"), "{listed}");
    let (_, listed) = http(node.port, "GET", "/v1/models", Some(&globex), None);
    assert!(
        !listed.to_string().contains("acme.own") && !listed.to_string().contains("gpt-own"),
        "another tenant's account is listed: {listed}"
    );
    let (status, _) = http(
        node.port,
        "POST",
        "/v1/chat/completions",
        Some(&globex),
        Some(&json!({"model": "acme.own", "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(
        status, 404,
        "another tenant's account is no model for globex"
    );
    // globex gets the shared account, never acme's.
    let before = upstream_calls(&server).await;
    assert_ne!(answer(&chat(&node, &globex)), "from the own account");
    assert_eq!(upstream_calls(&server).await, before);
    // Recorded in usage, not charged: the quota still has its one request.
    let written = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // Recorded, marked as not charged (the quota's count leaves them out).
    let uncharged = || async {
        db.raw_strings("SELECT tenant FROM usage_log WHERE tenant = 'acme' AND NOT charged")
            .await
            .len()
    };
    while uncharged().await < 4 {
        assert!(std::time::Instant::now() < written, "usage never written");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, quotas) = node.call("GET", "/v1/quotas?tenant=acme", None);
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut quotas = quotas;
    while quotas["quotas"][0]["reserved"]["requests"] != 0 {
        assert!(std::time::Instant::now() < settled, "{quotas}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        quotas = node.call("GET", "/v1/quotas?tenant=acme", None).1;
    }
    assert_eq!(quotas["quotas"][0]["used"]["requests"], 0, "{quotas}");
    // The usage report tells what was charged from what the own account served.
    let (status, report) = node.call("GET", "/v1/usage/report?tenant=acme", None);
    assert_eq!(status, 200, "{report}");
    assert!(
        report["total"]["requests"].as_i64().unwrap() >= 4,
        "{report}"
    );
    assert_eq!(report["total"]["charged_requests"], 0, "{report}");

    // own_accounts = never: the shared account serves acme (and is charged).
    let (status, _) = node.call(
        "PUT",
        "/v1/tenants/acme/limits",
        Some(json!({"own_accounts": "never"})),
    );
    assert_eq!(status, 200);
    assert_ne!(answer(&chat(&node, &acme)), "from the own account");
    // only, with the own account disabled: no provider, and the quota is not touched.
    node.call(
        "PUT",
        "/v1/tenants/acme/limits",
        Some(json!({"own_accounts": "only"})),
    );
    let (status, patched) = http(
        node.port,
        "PATCH",
        &format!("{accounts}/{id}"),
        Some(&acme),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(status, 200, "{patched}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = chat(&node, &acme);
        if status != 200 {
            assert!(body.to_string().contains("own_accounts = only"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The tenant deletes its account.
    assert_eq!(
        http(
            node.port,
            "DELETE",
            &format!("{accounts}/{id}"),
            Some(&acme),
            None
        )
        .0,
        204
    );
    assert_eq!(
        http(
            node.port,
            "GET",
            &format!("{accounts}/{id}"),
            Some(&acme),
            None
        )
        .0,
        404
    );
    node.stop().await;
    db.cleanup().await;
}

/// Runs the CLI against the node with `token`, `stdin` on its standard input.
async fn accounts_cli(node: &Node, token: &str, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write as _;
    let server = format!("http://127.0.0.1:{}", node.port);
    let mut command = std::process::Command::new(crate::cli::BIN);
    command
        .args(["--server", &server, "--token", token, "accounts"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_cli_manages_a_tenants_own_accounts_through_the_server() {
    let db = TestDb::sqlite().await;
    let server = upstream().await;
    let node = start_node_with(&db, json!([]), "memory://", "switchyard", |settings| {
        settings.outbound.tenant_allow = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let acme = key_of(&node, "acme");
    let account = |key: &str| {
        json!({"name": "own", "provider": "openai", "model": "gpt-own", "api_key": key,
               "base_url": format!("{}/v1", server.uri()), "kinds": ["text.generate"]})
        .to_string()
    };
    // A refused key: the provider's answer, nothing stored.
    let (ok, out) = accounts_cli(
        &node,
        &acme,
        &["add", "--tenant", "acme", "--from-json", "-"],
        &account("sk-bad-key-0000000000"),
    )
    .await;
    assert!(!ok && out.contains("422"), "{out}");
    assert!(!out.contains("sk-bad-key-0000000000"), "{out}");
    // A good one, from standard input, with the tenant's key.
    let (ok, out) = accounts_cli(
        &node,
        &acme,
        &["add", "--tenant", "acme", "--from-json", "-"],
        &account(GOOD),
    )
    .await;
    assert!(ok && out.contains("'acme.own'"), "{out}");
    let (ok, out) = accounts_cli(&node, &acme, &["list", "--tenant", "acme", "--json"], "").await;
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["name"], "acme.own");
    assert!(!out.contains(GOOD), "the key is shown: {out}");
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    // Field errors exit 2, naming the field.
    let (ok, out) = accounts_cli(
        &node,
        &acme,
        &["update", "--tenant", "acme", &id, "--from-json", "-"],
        r#"{"base_url": "ftp://nowhere"}"#,
    )
    .await;
    assert!(!ok && out.contains("base_url"), "{out}");
    // Another tenant's accounts are not this key's.
    let (ok, out) = accounts_cli(&node, &acme, &["list", "--tenant", "globex"], "").await;
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = accounts_cli(&node, &acme, &["remove", "--tenant", "acme", &id], "").await;
    assert!(ok, "{out}");
    let (_, listed) = http(
        node.port,
        "GET",
        "/v1/tenants/acme/providers",
        Some(&acme),
        None,
    );
    assert_eq!(listed["items"], json!([]));
    // Without a server there is nothing to test the key with.
    let out = std::process::Command::new(crate::cli::BIN)
        .args(["accounts", "list", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--server"),
        "{out:?}"
    );
}
