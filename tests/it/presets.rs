//! Per-config presets (`defaults`, #18 §3) through the admin API and jobs, on both
//! databases: shown with the config and checked like the rest of it; an instance
//! fills in the fields a request leaves out (the request's own values win); and the
//! quota reserves what the presets will ask for, so a preset `n` cannot overshoot an
//! image quota.

use serde_json::{Value, json};

use crate::{
    jobs::run_job,
    reload::{Node, start_node},
    support::TestDb,
};

fn image(body: Value) -> Value {
    let mut job = json!({"tenant": "acme", "kind": "image.generate"});
    job["input"] = body;
    job
}

fn dimensions(job: &Value) -> Vec<(u64, u64)> {
    job["result"]["output"]["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images: {job}"))
        .iter()
        .map(|i| (i["width"].as_u64().unwrap(), i["height"].as_u64().unwrap()))
        .collect()
}

async fn presets_fill_what_a_request_leaves_out(db: &TestDb) {
    let node: Node = start_node(db, json!([])).await;
    // Checked like the rest of the config: each bad field named, nothing stored.
    let (status, refused) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "p", "provider": "mock",
                    "defaults": {"n": 11, "size": "huge one", "temperature": 9}})),
    );
    assert_eq!(status, 400, "{refused}");
    for field in ["defaults.n", "defaults.size", "defaults.temperature"] {
        assert!(refused.to_string().contains(field), "{field}: {refused}");
    }
    let (status, refused) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "p", "provider": "mock", "defaults": {"colour": "red"}})),
    );
    assert_eq!(status, 400, "{refused}");

    let (status, made) = node.call(
        "POST",
        "/v1/providers",
        Some(json!({"name": "preset-mock", "provider": "mock",
                    "defaults": {"size": "64x32", "n": 2, "max_tokens": 3,
                                 "system": "Answer briefly."}})),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        made["defaults"]["size"], "64x32",
        "shown with the config: {made}"
    );
    let id = made["id"].as_i64().unwrap();
    let (_, shown) = node.call("GET", &format!("/v1/providers/{id}"), None);
    assert_eq!(shown["defaults"]["n"], 2, "{shown}");

    // Left out: the presets fill in. Given: the request's own values win.
    let job = run_job(&node, image(json!({"prompt": "a kite"}))).await;
    assert_eq!(dimensions(&job), [(64, 32), (64, 32)], "{job}");
    let job = run_job(
        &node,
        image(json!({"prompt": "a kite", "size": "16x16", "n": 1})),
    )
    .await;
    assert_eq!(dimensions(&job), [(16, 16)], "{job}");
    // Text: the preset max_tokens (the mock answers that many words).
    let job = run_job(
        &node,
        json!({"tenant": "acme", "kind": "text.generate",
               "input": {"messages": [{"role": "user", "content": "hi"}]}}),
    )
    .await;
    let text = job["result"]["output"]["text"].as_str().unwrap_or_default();
    assert_eq!(text.split_whitespace().count(), 3, "{job}");

    // A patch that removes nothing keeps them; a patch sets new ones.
    let (status, patched) = node.call(
        "PATCH",
        &format!("/v1/providers/{id}"),
        Some(json!({"defaults": {"n": 3}})),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["defaults"], json!({"n": 3}));

    // The quota reserves the preset's 3 images for a request that gives no `n`: with
    // the 3 made above and 8 a day, the second such request is refused (it would make
    // 9; counted as one image, it would pass and overshoot).
    let quota = json!({"tenant": "acme", "period": "day", "max_images": 8});
    assert_eq!(node.call("PUT", "/v1/quotas", Some(quota)).0, 200);
    let first = run_job(&node, image(json!({"prompt": "a kite", "size": "8x8"}))).await;
    assert_eq!(first["status"], "done", "{first}");
    let second = run_job(&node, image(json!({"prompt": "a kite", "size": "8x8"}))).await;
    assert_eq!(second["status"], "failed", "{second}");
    assert_eq!(second["error"]["code"], "quota_exceeded", "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presets_fill_what_a_request_leaves_out_on_sqlite() {
    let db = TestDb::sqlite().await;
    presets_fill_what_a_request_leaves_out(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presets_fill_what_a_request_leaves_out_on_postgres() {
    let db = TestDb::postgres().await;
    presets_fill_what_a_request_leaves_out(&db).await;
    db.cleanup().await;
}
