//! The OpenAI-compatible endpoints on a real `serve` runtime (memory bus, SQLite,
//! `mock`): tenant keys made and revoked through the admin API, and the answers in
//! OpenAI's shapes.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{
    reload::{http, start_node, start_node_on},
    support::{NatsServer, TestDb, raw_http},
};

/// A `multipart/form-data` body of text fields and files (name, file name, bytes).
fn multipart(texts: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "switchyard-test-boundary";
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, file, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST path` of a body with a tenant key: the status and the raw response.
fn post_raw(port: u16, path: &str, key: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    raw_http(
        port,
        "POST",
        path,
        &[
            format!("Authorization: Bearer {key}"),
            format!("Content-Type: {content_type}"),
        ],
        body,
    )
}

/// `ask` with `stream: true` to the chat endpoint: the status and the raw event stream.
async fn stream_chat(port: u16, key: String, ask: &Value) -> (u16, String) {
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    tokio::task::spawn_blocking(move || {
        post_raw(
            port,
            "/v1/chat/completions",
            &key,
            "application/json",
            streamed.to_string().as_bytes(),
        )
    })
    .await
    .unwrap()
}

/// [`post_raw`], with the JSON object of the answer.
fn post_form(port: u16, path: &str, key: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let (status, text) = post_raw(port, path, key, content_type, body);
    let json = text
        .find('{')
        .zip(text.rfind('}'))
        .and_then(|(start, end)| serde_json::from_str(&text[start..=end]).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_generate_images_and_chat_with_a_tenant_key() {
    let db = TestDb::sqlite().await;
    let node = start_node(
        &db,
        json!([
            {"name": "mock-a", "provider": "mock", "priority": 100, "model": "mock-large"},
            {"name": "mock-broken", "provider": "mock", "priority": 1,
             "options": {"failure_rate": 1.0, "fail_with": "content_filtered"}},
        ]),
    )
    .await;
    let port = node.port;
    // Keys: made by the admin, shown once, listed without the secret.
    let (status, made) = node.call(
        "POST",
        "/v1/tenants/acme/keys",
        Some(json!({"name": "web"})),
    );
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sy_") && key.len() == 43, "{key}");
    let (_, listed) = node.call("GET", "/v1/tenants/acme/keys", None);
    assert_eq!(listed["items"][0]["name"], "web");
    assert!(
        !listed.to_string().contains(&key),
        "the secret is never listed"
    );
    assert_eq!(
        db.raw_strings("SELECT key_hash FROM tenant_keys")
            .await
            .len(),
        1
    );
    assert!(
        !db.raw_strings("SELECT key_hash || prefix FROM tenant_keys")
            .await
            .concat()
            .contains(&key),
        "only a hash is stored"
    );

    // No key, a wrong key, or the admin token: 401 in OpenAI's shape.
    for token in [None, Some("sy_wrong"), Some(crate::reload::TOKEN)] {
        let (status, body) = http(port, "GET", "/v1/models", token, None);
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    let (status, models) = http(port, "GET", "/v1/models", Some(&key), None);
    assert_eq!(status, 200, "{models}");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock-a", "mock-large", "mock-broken"]);

    // Images, as URLs and as base64.
    let (status, images) = http(
        port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&json!({"prompt": "a red kite", "n": 2, "size": "64x64", "model": "mock-large"})),
    );
    assert_eq!(status, 200, "{images}");
    assert_eq!(images["data"].as_array().unwrap().len(), 2);
    let url = images["data"][0]["url"].as_str().unwrap();
    assert!(url.contains("/v1/artifacts/"), "{url}");
    let (status, b64) = http(
        port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&json!({"prompt": "a red kite", "size": "64x64", "response_format": "b64_json"})),
    );
    assert_eq!(status, 200, "{b64}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    // Edits: the uploaded image (and mask) become artifacts the command names.
    let (content_type, form) = multipart(
        &[("prompt", "make it blue"), ("n", "1"), ("size", "64x64")],
        &[("image", "kite.png", &png), ("mask", "mask.png", &png)],
    );
    let (status, edited) = tokio::task::spawn_blocking({
        let key = key.clone();
        move || post_form(port, "/v1/images/edits", &key, &content_type, &form)
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["data"].as_array().unwrap().len(), 1, "{edited}");
    for (texts, files, needle) in [
        (
            vec![("prompt", "x")],
            vec![("image", "a.txt", b"not an image".as_slice())],
            "not an image",
        ),
        (vec![("prompt", "x")], vec![], "at least one image"),
    ] {
        let (content_type, form) = multipart(&texts, &files);
        let key = key.clone();
        let (status, answer) = tokio::task::spawn_blocking(move || {
            post_form(port, "/v1/images/edits", &key, &content_type, &form)
        })
        .await
        .unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{answer}"
        );
    }
    // The requests ran as the key's tenant and are counted there (their records are
    // written behind the answers).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let usage = loop {
        let (_, usage) = node.call("GET", "/v1/usage?tenant=acme", None);
        if usage["total"]["requests"] == 3 || std::time::Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(usage["total"]["requests"], 3, "{usage}");
    assert!(
        usage["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["kind"] == "image.edit" && g["requests"] == 1),
        "{usage}"
    );

    // Failures in OpenAI's shape: a refused prompt on the broken instance, a bad body.
    let (status, refused) = http(
        port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&json!({"prompt": "x", "size": "64x64", "model": "mock-broken"})),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "content_filtered");
    let (status, bad) = http(
        port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&json!({"prompt": "", "size": "64x64"})),
    );
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["type"], "invalid_request_error");

    // Chat, whole and streamed.
    let ask = json!({"model": "auto", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]}]});
    let (status, chat) = http(port, "POST", "/v1/chat/completions", Some(&key), Some(&ask));
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["object"], "chat.completion");
    let text = chat["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!text.is_empty());
    assert_eq!(chat["choices"][0]["finish_reason"], "stop");
    assert!(
        chat["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{chat}"
    );

    let (status, raw) = stream_chat(port, key, &ask).await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("text/event-stream"), "{raw}");
    let data: Vec<&str> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{raw}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 3, "role, several deltas, finish: {raw}");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, text, "the same text, streamed");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // A stream that fails before its first chunk is an HTTP error, not an event stream.
    let (status, refused) = http(
        port,
        "POST",
        "/v1/chat/completions",
        made["key"].as_str(),
        Some(&json!({"model": "mock-broken", "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "content_filtered");

    // A revoked key stops working at once.
    let id = made["id"].as_i64().unwrap();
    assert_eq!(
        node.call("DELETE", &format!("/v1/tenants/acme/keys/{id}"), None)
            .0,
        204
    );
    let key = made["key"].as_str().unwrap();
    assert_eq!(http(port, "GET", "/v1/models", Some(key), None).0, 401);
    assert_eq!(
        node.call("DELETE", &format!("/v1/tenants/acme/keys/{id}"), None)
            .0,
        404
    );
    node.stop().await;
    db.cleanup().await;
}

/// Over a real nats-server: the terminal event comes back on the call's private
/// `reply_to`, and a streamed chat follows the request's events on the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_calls_work_over_nats() {
    let nats = NatsServer::start();
    let db = TestDb::sqlite().await;
    let node = start_node_on(
        &db,
        json!([{"name": "mock-a", "provider": "mock", "priority": 100}]),
        &nats.url(),
        &format!("oai{}", crate::support::unique_suffix()),
    )
    .await;
    let port = node.port;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let (status, images) = http(
        port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&json!({"prompt": "a kite", "size": "64x64"})),
    );
    assert_eq!(status, 200, "{images}");
    assert_eq!(images["data"].as_array().unwrap().len(), 1);
    let ask = json!({"messages": [{"role": "user", "content": "hello"}]});
    let (status, chat) = http(port, "POST", "/v1/chat/completions", Some(&key), Some(&ask));
    assert_eq!(status, 200, "{chat}");
    let text = chat["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, raw) = stream_chat(port, key, &ask).await;
    assert_eq!(status, 200, "{raw}");
    let joined: String = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(joined, text);
    node.stop().await;
    db.cleanup().await;
}

/// A tenant over its image quota is refused before its edit's uploads are stored:
/// 429 `quota_exceeded`, OpenAI's rate-limit shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_over_quota_is_refused_before_its_uploads_are_stored() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let port = node.port;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let quota = json!({"tenant": "acme", "period": "day", "max_images": 1});
    assert_eq!(node.call("PUT", "/v1/quotas", Some(quota)).0, 200);
    let (status, first) = http(
        port,
        "POST",
        "/v1/images/generations",
        Some(&key),
        Some(&json!({"prompt": "a kite", "size": "64x64", "response_format": "b64_json"})),
    );
    assert_eq!(status, 200, "{first}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(first["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    let (content_type, form) = multipart(&[("prompt", "again")], &[("image", "k.png", &png)]);
    let (status, refused) = tokio::task::spawn_blocking(move || {
        post_form(port, "/v1/images/edits", &key, &content_type, &form)
    })
    .await
    .unwrap();
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "quota_exceeded", "{refused}");
    // Nothing was stored for it (an upload would be recorded as the tenant's).
    let uploads = db
        .raw_strings("SELECT artifact_id FROM artifact_uploads")
        .await;
    assert!(uploads.is_empty(), "{uploads:?}");
    node.stop().await;
}
