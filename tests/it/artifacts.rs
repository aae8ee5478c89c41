//! Private artifacts (#14, PROTOCOL.md §3): the URL in an event is signed and expires;
//! without it an artifact needs the admin token or a key of an owning tenant; a
//! tampered link is 403; responses are `Cache-Control: private`; a tenant cannot name
//! another tenant's artifact as an input.

use serde_json::json;

use crate::{
    reload::{TOKEN, http, start_node},
    support::{TestDb, raw_http},
};

fn get(port: u16, path: &str, bearer: Option<&str>) -> (u16, String) {
    let headers: Vec<String> = bearer
        .map(|t| vec![format!("Authorization: Bearer {t}")])
        .unwrap_or_default();
    raw_http(port, "GET", path, &headers, b"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_served_only_by_signed_link_admin_or_owner() {
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let key = |tenant: &str| {
        let (_, made) = node.call("POST", &format!("/v1/tenants/{tenant}/keys"), None);
        made["key"].as_str().unwrap().to_owned()
    };
    let (acme, globex) = (key("acme"), key("globex"));
    let job = json!({"kind": "image.generate", "input": {"prompt": "a fox", "size": "64x64"}});
    let (status, posted) = http(node.port, "POST", "/v1/jobs", Some(&acme), Some(&job));
    assert_eq!(status, 202, "{posted}");
    let done = node.job_end(posted["id"].as_i64().unwrap()).await;
    let image = &done["result"]["output"]["images"][0];
    let url = image["url"].as_str().unwrap();
    let id = image["artifact_id"].as_str().unwrap();
    // No public_url configured: a relative, signed link.
    assert!(
        url.starts_with(&format!("/v1/artifacts/{id}?exp=")),
        "{url}"
    );

    // The signed link works without credentials, and is private to caches.
    let (status, raw) = get(node.port, url, None);
    assert_eq!(status, 200, "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("cache-control: private"),
        "{raw}"
    );

    // The bare path needs the admin token or an owning tenant's key.
    let bare = format!("/v1/artifacts/{id}");
    assert_eq!(get(node.port, &bare, None).0, 401);
    assert_eq!(get(node.port, &bare, Some(TOKEN)).0, 200);
    assert_eq!(get(node.port, &bare, Some(&acme)).0, 200);
    assert_eq!(get(node.port, &bare, Some(&globex)).0, 404);

    // Tampered, stretched or incomplete links are 403.
    let (base, query) = url.split_once('?').unwrap();
    let exp: u64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    let sig = query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    for link in [
        format!("{base}?exp={exp}&sig={flipped}{}", &sig[1..]),
        format!("{base}?exp={}&sig={sig}", exp + 86_400_000),
        format!("{base}?exp={exp}"),
        format!("/v1/artifacts/{}?exp={exp}&sig={sig}", "0".repeat(64)),
    ] {
        assert_eq!(get(node.port, &link, None).0, 403, "{link}");
    }

    // Another tenant cannot feed acme's artifact into its own edit.
    let steal = json!({"kind": "image.edit", "input": {"prompt": "x",
                       "images": [{"artifact_id": id}]}});
    let (status, posted) = http(node.port, "POST", "/v1/jobs", Some(&globex), Some(&steal));
    assert_eq!(status, 202, "{posted}");
    let failed = node.job_end(posted["id"].as_i64().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "invalid_request", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no artifact"),
        "{failed}"
    );
    // Its owner can.
    let (status, posted) = http(node.port, "POST", "/v1/jobs", Some(&acme), Some(&steal));
    assert_eq!(status, 202, "{posted}");
    assert_eq!(
        node.job_end(posted["id"].as_i64().unwrap()).await["status"],
        "done"
    );
    node.stop().await;
}
