//! HTTP connections are bounded (#14): a head that is not finished in time, and a
//! keep-alive connection left idle, are closed; connections past the limits in all and
//! per client are refused at once while the admitted ones are served; an event stream
//! is not idle; a shutdown lets the request in flight finish. Each bound is a
//! correctness bound (generous), not a speed assertion.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use switchyard_runtime::Settings;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::{
    reload::{Node, TOKEN, start_node_with},
    support::TestDb,
};

/// How long a closing the server owes may take at most (a correctness bound).
const WITHIN: Duration = Duration::from_secs(5);

async fn node_with(db: &TestDb, seeds: Value, configure: impl FnOnce(&mut Settings)) -> Node {
    start_node_with(db, seeds, "memory://", "switchyard", configure).await
}

/// A connection to the node from `client` (any address of 127.0.0.0/8 is this host).
async fn connect_from(client: Ipv4Addr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(client), 0)).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Whether the server closes `stream` (end of file or a reset) within `bound`; what it
/// sends before is read and dropped.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, closed).await.is_ok()
}

/// One `GET path` on a kept-alive connection: its status, or `None` if the server
/// closed the connection instead of answering.
async fn get(stream: &mut TcpStream, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&response).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return head.split_whitespace().nth(1)?.parse().ok();
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WITHIN, read).await.ok()?
}

/// A connection from `client` the server admitted (it answers a request), retried for
/// a while: a connection that just closed may still hold its slot for a moment.
async fn admitted(client: Ipv4Addr, port: u16) -> TcpStream {
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut stream = connect_from(client, port).await;
        if get(&mut stream, "/healthz").await == Some(200) {
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "no connection from {client} admitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the counter line `name{labels}` in the node's `/metrics`, 0 if absent
/// (asked from a client of its own, retried while the limits still refuse it).
async fn metric(node: &Node, line_start: &str) -> f64 {
    let client = Ipv4Addr::new(127, 0, 0, 3);
    let deadline = Instant::now() + WITHIN;
    let text = loop {
        let mut stream = connect_from(client, node.port).await;
        let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let mut raw = Vec::new();
        let asked = stream.write_all(request.as_bytes()).await.is_ok();
        let read = tokio::time::timeout(WITHIN, stream.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        if asked && matches!(read, Ok(Ok(_))) && text.starts_with("HTTP/1.1 200") {
            break text;
        }
        assert!(Instant::now() < deadline, "no /metrics: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The finding: 1,000 connections that stall in their head (nothing sent, half
/// a request line, half the headers), and one whose headers trickle in a byte at a
/// time, are all closed after the header-read timeout; a whole request is still
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_heads_are_closed_after_the_header_read_timeout() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, json!([]), |s| {
        s.http.header_read_timeout_ms = 300;
        s.http.max_connections_per_ip = 2_000;
    })
    .await;
    let partials = [
        "",
        "GET /heal",
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
    ];
    let mut stalled = Vec::new();
    for n in 0..1_000 {
        let mut stream = connect_from(FIRST, node.port).await;
        stream
            .write_all(partials[n % partials.len()].as_bytes())
            .await
            .unwrap();
        stalled.push(stream);
    }
    // A trickle of bytes does not extend the head's time.
    let mut trickler = connect_from(FIRST, node.port).await;
    trickler
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..100 {
            if trickler.write_all(b"x").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };

    let closed = futures_util::future::join_all(
        stalled
            .iter_mut()
            .map(|stream| closed_within(stream, WITHIN)),
    );
    let (closed, trickler_cut) = tokio::join!(closed, trickle);
    let open = closed.iter().filter(|closed| !**closed).count();
    assert_eq!(
        open,
        0,
        "{open} of {} stalled connections still open",
        closed.len()
    );
    assert!(trickler_cut, "a trickled head was never cut");

    let mut fresh = connect_from(FIRST, node.port).await;
    assert_eq!(get(&mut fresh, "/healthz").await, Some(200));
    drop(fresh);
    assert!(
        metric(
            &node,
            "switchyard_http_connections_timed_out_total{timeout=\"header_read\"}"
        )
        .await
            >= 1_001.0
    );
    node.stop().await;
}

/// With `max_connections_per_ip = 3` the fourth connection from one client is closed
/// at once, unread, while its first three and another client's are served; closing
/// one of the three makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_connection_limit_is_refused_and_its_others_are_served() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, json!([]), |s| s.http.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(admitted(FIRST, node.port).await);
    }
    let mut fourth = connect_from(FIRST, node.port).await;
    assert!(
        closed_within(&mut fourth, WITHIN).await,
        "the fourth was served"
    );
    // Another client has its own allowance.
    let mut other = connect_from(SECOND, node.port).await;
    assert_eq!(get(&mut other, "/healthz").await, Some(200));
    // The three admitted ones are still usable.
    for stream in &mut held {
        assert_eq!(get(stream, "/healthz").await, Some(200));
    }
    drop(held.pop());
    held.push(admitted(FIRST, node.port).await);
    drop((held, other));
    assert!(
        metric(
            &node,
            "switchyard_http_connections_refused_total{reason=\"max_connections_per_ip\"}"
        )
        .await
            >= 1.0
    );
    node.stop().await;
}

/// With `max_connections = 3` a fourth connection is refused whichever client opens
/// it, the three are served, and closing one makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_total_limit_are_refused_from_every_client() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, json!([]), |s| s.http.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(admitted(FIRST, node.port).await);
    }
    for client in [FIRST, SECOND] {
        let mut extra = connect_from(client, node.port).await;
        assert!(
            closed_within(&mut extra, WITHIN).await,
            "a fourth connection from {client} was served"
        );
    }
    for stream in &mut held {
        assert_eq!(get(stream, "/healthz").await, Some(200));
    }
    drop(held.pop());
    held.push(admitted(SECOND, node.port).await);
    drop(held);
    assert!(
        metric(
            &node,
            "switchyard_http_connections_refused_total{reason=\"max_connections\"}"
        )
        .await
            >= 2.0
    );
    node.stop().await;
}

/// A keep-alive connection serves several requests, then is closed once it has been
/// idle for `idle_timeout_ms` (the header-read timeout, 10 s, is not what closes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, json!([]), |s| s.http.idle_timeout_ms = 300).await;
    let mut stream = connect_from(FIRST, node.port).await;
    for _ in 0..3 {
        assert_eq!(get(&mut stream, "/healthz").await, Some(200));
    }
    assert!(
        closed_within(&mut stream, WITHIN).await,
        "an idle connection was kept open"
    );
    assert!(
        metric(
            &node,
            "switchyard_http_connections_timed_out_total{timeout=\"idle\"}"
        )
        .await
            >= 1.0
    );
    node.stop().await;
}

fn slow_mock() -> Value {
    json!([{"name": "mock-slow", "provider": "mock", "options": {"latency_ms": 1500}}])
}

/// A request body that stops coming is closed after the stall timeout (it held the
/// connection, its handler and a permit for as long as the client liked before); a
/// request whose handler itself takes longer than that is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_closed_after_the_stall_timeout() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, slow_mock(), |s| s.http.stall_timeout_ms = 300).await;
    let mut stream = connect_from(FIRST, node.port).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"tenant\": \"acme\","
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut stream, WITHIN).await,
        "a body that stopped held its connection"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the stall timeout"
    );
    assert!(
        metric(
            &node,
            "switchyard_http_connections_timed_out_total{timeout=\"stall\"}"
        )
        .await
            >= 1.0
    );
    // A synchronous call to the slow mock takes longer than the stall timeout: the
    // handler's wait, not the client's.
    let (_, made) = node.call("POST", "/v1/tenants/acme/keys", None);
    let key = made["key"].as_str().unwrap().to_owned();
    let ask = json!({"messages": [{"role": "user", "content": "hello"}]});
    let port = node.port;
    let (status, answer) = tokio::task::spawn_blocking(move || {
        crate::reload::http(port, "POST", "/v1/chat/completions", Some(&key), Some(&ask))
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    node.stop().await;
}

/// Posts a slow job and opens its event stream (kept alive); answers the stream.
async fn open_event_stream(node: &Node) -> TcpStream {
    let command = json!({"tenant": "acme", "kind": "image.generate",
                         "input": {"prompt": "a lighthouse", "size": "64x64"}});
    let (status, posted) = node.call("POST", "/v1/jobs", Some(command));
    assert_eq!(status, 202, "{posted}");
    let id = posted["id"].as_i64().unwrap();
    let mut stream = connect_from(FIRST, node.port).await;
    let request = format!(
        "GET /v1/jobs/{id}/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads `stream` until its text holds `needle`: the text so far, and whether it does
/// (`false`: the connection ended first, or 20 s passed).
async fn read_until(stream: &mut TcpStream, text: &mut String, needle: &str) -> bool {
    let mut buf = [0u8; 4096];
    let read = async {
        while !text.contains(needle) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or(false)
}

/// An event stream that stays quiet for longer than both timeouts while its job runs
/// is not cut: it delivers the terminal event, and only then is the connection idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_is_not_cut_by_the_idle_timeout() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, slow_mock(), |s| {
        s.http.idle_timeout_ms = 300;
        s.http.header_read_timeout_ms = 300;
        // Waiting for the job's events is the handler's wait, not the client's.
        s.http.stall_timeout_ms = 300;
    })
    .await;
    let mut stream = open_event_stream(&node).await;
    let mut text = String::new();
    assert!(
        read_until(&mut stream, &mut text, "event: started").await,
        "{text}"
    );
    assert!(
        read_until(&mut stream, &mut text, "event: completed").await,
        "the stream was cut while the job ran: {text}"
    );
    assert!(
        closed_within(&mut stream, WITHIN).await,
        "idle after its end"
    );
    node.stop().await;
}

/// A shutdown while an event stream is open lets its job finish and the stream deliver
/// the terminal event before the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, slow_mock(), |_| {}).await;
    let mut stream = open_event_stream(&node).await;
    let mut text = String::new();
    assert!(
        read_until(&mut stream, &mut text, "event: started").await,
        "{text}"
    );
    let stopping = tokio::spawn(node.stop());
    assert!(
        read_until(&mut stream, &mut text, "event: completed").await,
        "the stream was cut at shutdown: {text}"
    );
    assert!(
        closed_within(&mut stream, WITHIN).await,
        "kept open after the drain"
    );
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the node stopped")
        .unwrap();
}

/// A request still busy when the drain's grace ends (here the event stream of a job
/// that runs for 6 s more) is cut: one client cannot hold the HTTP drain up. (The
/// node itself stops once the command consumer has finished that job.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_what_is_still_busy_after_the_drain_grace() {
    let db = TestDb::sqlite().await;
    let long = json!([{"name": "mock-long", "provider": "mock", "options": {"latency_ms": 6000}}]);
    let node = node_with(&db, long, |s| s.http.drain_grace_ms = 300).await;
    let mut stream = open_event_stream(&node).await;
    let mut text = String::new();
    assert!(
        read_until(&mut stream, &mut text, "event: started").await,
        "{text}"
    );
    let stopping = tokio::spawn(node.stop());
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "the stream outlived the drain's grace"
    );
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the node stopped")
        .unwrap();
}

/// A body that trickles in, each gap shorter than the stall timeout, is closed once it
/// falls below the minimum average rate after its grace (the stall timeout): one byte
/// every 100 ms never stalls for 300 ms, but averages 10 bytes a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_request_body_is_closed_below_the_minimum_rate() {
    let db = TestDb::sqlite().await;
    let node = node_with(&db, slow_mock(), |s| {
        s.http.stall_timeout_ms = 300;
        s.http.min_body_rate = 1024;
    })
    .await;
    let mut stream = connect_from(FIRST, node.port).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        if stream.write_all(b" ").await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !closed {
        closed = closed_within(&mut stream, WITHIN).await;
    }
    assert!(closed, "a trickling body held its connection for 10 s");
    assert!(
        metric(
            &node,
            "switchyard_http_connections_timed_out_total{timeout=\"slow_body\"}"
        )
        .await
            >= 1.0
    );
    node.stop().await;
}
