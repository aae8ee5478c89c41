//! The outbound-fetch guard against a real loopback "bait" server: no spelling of an
//! internal address reaches it, an operator allow-list lets a fetch through, and a
//! server that never answers or answers too much is cut off.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use switchyard_runtime::guard::{AllowEntry, Budget, FetchError, Guard, OutboundPolicy};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// How the bait answers each connection.
#[derive(Clone, Copy)]
pub(crate) enum Bait {
    /// A 200 with `n` bytes.
    Bytes(usize),
    /// Accept, then never answer.
    Silent,
}

/// A loopback server that counts the connections it accepts.
pub(crate) async fn bait(mode: Bait) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                match mode {
                    Bait::Bytes(n) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n"
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(&vec![7u8; n]).await;
                    }
                    Bait::Silent => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    (port, hits)
}

#[tokio::test]
async fn no_spelling_of_loopback_reaches_the_bait() {
    let (port, hits) = bait(Bait::Bytes(10)).await;
    let guard = Guard::default();
    let mut names = vec![
        format!("http://127.0.0.1:{port}/a.png"),
        format!("http://localhost:{port}/a.png"),
        format!("http://LocalHost:{port}/a.png"),
        format!("http://2130706433:{port}/a.png"),
        format!("http://0x7f000001:{port}/a.png"),
        format!("http://0177.0.0.1:{port}/a.png"),
        format!("http://127.1:{port}/a.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/a.png"),
        format!("http://[::ffff:7f00:1]:{port}/a.png"),
        format!("http://[::127.0.0.1]:{port}/a.png"),
        format!("http://[64:ff9b::7f00:1]:{port}/a.png"),
        format!("http://[2002:7f00:1::1]:{port}/a.png"),
        format!("http://[::1]:{port}/a.png"),
        format!("http://0.0.0.0:{port}/a.png"),
        format!("http://0:{port}/a.png"),
        format!("http://user:pw@127.0.0.1:{port}/a.png"),
    ];
    // A DNS name of the test machine that resolves to loopback (.ci/run adds it to
    // /etc/hosts).
    if tokio::net::lookup_host(("bait.switchyard.test", 80))
        .await
        .is_ok()
    {
        names.push(format!("http://bait.switchyard.test:{port}/a.png"));
    }
    for url in &names {
        let error = guard
            .get(url, &mut Budget::new(1 << 20))
            .await
            .expect_err(url);
        assert!(
            matches!(error, FetchError::Refused { .. }),
            "{url}: {error:?}"
        );
        assert!(!error.to_string().contains("/a.png"), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the bait was reached");
}

#[tokio::test]
async fn the_operator_allow_list_lets_a_fetch_through() {
    let (port, hits) = bait(Bait::Bytes(10)).await;
    for entry in ["127.0.0.0/8", "localhost"] {
        let guard = Guard::new(OutboundPolicy {
            allow: vec![entry.parse::<AllowEntry>().unwrap()],
            ..OutboundPolicy::default()
        });
        let mut budget = Budget::new(1 << 20);
        let fetched = guard
            .get(&format!("http://localhost:{port}/a.png"), &mut budget)
            .await
            .unwrap();
        assert_eq!(fetched.bytes.len(), 10);
        assert_eq!(fetched.content_type.as_deref(), Some("image/png"));
        assert_eq!(budget.remaining(), (1 << 20) - 10);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_silent_server_is_cut_off_at_the_timeout() {
    let (port, _) = bait(Bait::Silent).await;
    let guard = Guard::new(OutboundPolicy {
        allow: vec!["127.0.0.1".parse().unwrap()],
        timeout: Duration::from_millis(300),
        ..OutboundPolicy::default()
    });
    let started = std::time::Instant::now();
    let error = guard
        .get(&format!("http://127.0.0.1:{port}/"), &mut Budget::new(1024))
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Timeout { .. }), "{error:?}");
    // Bounded, not hanging (a generous bound: the machine is shared).
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn bodies_larger_than_the_fetch_cap_or_the_budget_are_refused() {
    let (port, _) = bait(Bait::Bytes(5000)).await;
    let guard = Guard::new(OutboundPolicy {
        allow: vec!["127.0.0.1".parse().unwrap()],
        max_fetch_bytes: 4096,
        ..OutboundPolicy::default()
    });
    let url = format!("http://127.0.0.1:{port}/");
    let error = guard
        .get(&url, &mut Budget::new(1 << 20))
        .await
        .unwrap_err();
    assert_eq!(error, FetchError::TooLarge { limit: 4096 });
    let guard = Guard::new(OutboundPolicy {
        allow: vec!["127.0.0.1".parse().unwrap()],
        ..OutboundPolicy::default()
    });
    let mut budget = Budget::new(6000);
    guard.get(&url, &mut budget).await.unwrap();
    // What is left of the command's budget no longer holds a second body.
    let error = guard.get(&url, &mut budget).await.unwrap_err();
    assert_eq!(error, FetchError::TooLarge { limit: 1000 });
}

#[tokio::test]
async fn only_http_and_https_are_fetched() {
    let guard = Guard::default();
    for url in ["file:///etc/passwd", "ftp://example.com/a", "gopher://x/"] {
        assert_eq!(
            guard.get(url, &mut Budget::new(10)).await,
            Err(FetchError::Scheme),
            "{url}"
        );
    }
}

/// A tenant's `image.edit` through a real `serve` (`POST /v1/jobs` with a tenant key):
/// every loopback spelling fails the job with `invalid_request` naming the host, and
/// the bait is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_make_serve_fetch_from_loopback() {
    use crate::{
        reload::{http, start_node},
        support::TestDb,
    };
    use serde_json::json;

    let (port, hits) = bait(Bait::Bytes(10)).await;
    let db = TestDb::sqlite().await;
    let node = start_node(&db, json!([{"name": "mock-a", "provider": "mock"}])).await;
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("2130706433:{port}"),
        format!("0x7f000001:{port}"),
        format!("127.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("0.0.0.0:{port}"),
    ] {
        let job = json!({"kind": "image.edit", "input": {"prompt": "x",
                         "images": [{"url": format!("http://{host}/a.png")}]}});
        let (status, posted) = http(node.port, "POST", "/v1/jobs", Some(&key), Some(&job));
        assert_eq!(status, 202, "{posted}");
        let ended = node.job_end(posted["id"].as_i64().unwrap()).await;
        assert_eq!(ended["status"], "failed", "{host}: {ended}");
        assert_eq!(ended["error"]["code"], "invalid_request", "{host}: {ended}");
        let message = ended["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("input.images[0]") && message.contains("refused to fetch"),
            "{host}: {message}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the bait was reached");
    node.stop().await;
}
