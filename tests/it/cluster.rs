//! Real processes: `switchyard serve` on a real nats-server and the real PostgreSQL,
//! killed and restarted under load. Every request must end with exactly one terminal
//! event, none lost.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use switchyard_core::Event;
use switchyard_runtime::{MasterKey, bus::Bus, settings::BusSettings};

use crate::support::{NatsServer, Served, postgres_url, unique_suffix};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

struct Cluster {
    dir: tempfile::TempDir,
    prefix: String,
    schema: String,
    config: std::path::PathBuf,
}

impl Cluster {
    fn new(nats_url: &str, latency_ms: u64) -> Self {
        Self::with_limits(
            nats_url,
            latency_ms,
            "rpm = 1000000, burst = 10000, max_concurrency = 1000",
        )
    }

    fn with_limits(nats_url: &str, latency_ms: u64, limits: &str) -> Self {
        Self::with_providers(
            nats_url,
            &format!(
                "[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\noptions = {{ latency_ms = {latency_ms} }}\nrate_limit = {{ {limits} }}\n"
            ),
        )
    }

    fn with_providers(nats_url: &str, providers: &str) -> Self {
        Self::with_database(nats_url, providers, None)
    }

    /// `sqlite`: a shared SQLite file instead of PostgreSQL, with polling slowed to a
    /// minute, so that only NATS change notices can carry a change quickly.
    fn with_database(nats_url: &str, providers: &str, sqlite: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let suffix = unique_suffix();
        let prefix = format!("cl{}", suffix.replace('_', ""));
        let schema = format!("sy_cluster_{suffix}");
        let (_, key) = MasterKey::generate();
        let d = dir.path().display();
        let config = format!(
            r#"
{database}
[bus]
url = "{nats_url}"
prefix = "{prefix}"
ack_wait_ms = 2000
[http]
listen = "127.0.0.1:0"
[artifacts]
url = "file://{d}/artifacts"
[secrets]
master_key = "{key}"
[admin]
token = "cluster-test-admin-token"

{providers}"#,
            database = match sqlite {
                Some(file) =>
                    format!("[database]\nurl = \"sqlite://{d}/{file}\"\nchange_poll_ms = 60000"),
                None => format!(
                    "[database]\nurl = \"{}\"\nschema = \"{schema}\"\nmax_connections = 5",
                    postgres_url()
                ),
            },
        );
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, config).unwrap();
        Self {
            dir,
            prefix,
            schema,
            config: path,
        }
    }

    /// Starts `switchyard serve` and waits until `/readyz` says its consumer is live.
    fn serve(&self) -> Served {
        self.serve_on().0
    }

    /// [`Cluster::serve`], also returning the HTTP port.
    fn serve_on(&self) -> (Served, u16) {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("serve did not start");
            if let Some(rest) = line.split("listen=127.0.0.1:").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u16>()
                    .unwrap();
            }
        };
        assert_eq!(http_get(port, "/healthz").0, 200);
        while http_get(port, "/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        (Served(child), port)
    }

    async fn client(&self, nats_url: &str) -> Bus {
        let settings = BusSettings {
            url: nats_url.to_owned(),
            prefix: self.prefix.clone(),
            ..BusSettings::default()
        };
        Bus::connect(nats_url, &self.prefix, settings.nats_options())
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// Publishes `n` `text.generate` commands with ids `<prefix>-<i>` (and `extra` fields
/// merged into each), each with its request id as `Nats-Msg-Id`.
async fn publish_texts(bus: &Bus, prefix: &str, n: usize, extra: serde_json::Value) -> Vec<String> {
    let subject = format!("{}.cmd.text.generate", bus.subjects().prefix());
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let mut body = json!({"request_id": id, "tenant": "acme", "kind": "text.generate",
                              "input": {"messages": [{"role": "user", "content": format!("m{i}")}]}});
        for (key, value) in extra.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        bus.publish_command_raw(
            &subject,
            Bytes::from(serde_json::to_vec(&body).unwrap()),
            Some(&id),
        )
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

async fn publish_many(bus: &Bus, n: usize) -> Vec<String> {
    publish_texts(bus, "job", n, json!({})).await
}

/// Every message of the event stream, from its first.
async fn every_event(bus: &Bus) -> async_nats::jetstream::consumer::pull::Ordered {
    let client = bus.nats_client().unwrap().clone();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(bus.subjects().event_stream()).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: bus.subjects().all_events(),
            ..Default::default()
        })
        .await
        .unwrap();
    consumer.messages().await.unwrap()
}

/// Reads the whole event stream until every id has a terminal event (or the deadline),
/// then a little longer, and returns terminal counts per request. Also checks that no
/// request's `seq` stands for two different events (a resumed request continues the
/// sequence where the crashed process left it).
async fn terminal_counts(bus: &Bus, ids: &[String], within: Duration) -> BTreeMap<String, usize> {
    let mut messages = every_event(bus).await;
    let mut counts: BTreeMap<String, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
    let mut seqs: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut clashes = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut done_at: Option<tokio::time::Instant> = None;
    loop {
        let until = done_at.map_or(deadline, |t| t.min(deadline));
        match tokio::time::timeout_at(until, messages.next()).await {
            Ok(Some(Ok(message))) => {
                let event: Event = serde_json::from_slice(&message.payload).unwrap();
                let kind = event.event_type().as_str().to_owned();
                let key = (event.request_id.to_string(), event.seq);
                if let Some(before) = seqs.insert(key.clone(), kind.clone())
                    && before != kind
                {
                    clashes.push(format!("{key:?}: {before} and {kind}"));
                }
                if event.is_terminal() {
                    *counts.entry(event.request_id.to_string()).or_default() += 1;
                }
                if done_at.is_none() && counts.values().all(|c| *c >= 1) {
                    // Everything ended: watch a while longer for a second terminal event.
                    done_at = Some(tokio::time::Instant::now() + Duration::from_secs(3));
                }
            }
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(clashes.is_empty(), "one seq, two events: {clashes:?}");
    counts
}

fn assert_exactly_once(counts: &BTreeMap<String, usize>) {
    let wrong: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        wrong.is_empty(),
        "requests without exactly one terminal event: {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_processes_mid_job_loses_nothing() {
    let nats = NatsServer::start();
    // Each job takes 1 s, so the kill lands while both processes have jobs in flight:
    // those of the killed one are redelivered and resumed by the other.
    let cluster = Cluster::new(&nats.url(), 1000);
    let mut a = cluster.serve();
    let mut b = cluster.serve();
    let bus = cluster.client(&nats.url()).await;
    let ids = publish_many(&bus, 80).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // SIGKILL: no graceful shutdown, in-flight commands are simply abandoned.
    a.kill().unwrap();
    a.wait().unwrap();
    let counts = terminal_counts(&bus, &ids, Duration::from_secs(60)).await;
    assert_exactly_once(&counts);
    b.kill().unwrap();
    b.wait().unwrap();
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_during_load_loses_nothing() {
    let mut nats = NatsServer::start();
    let cluster = Cluster::new(&nats.url(), 100);
    let mut serve = cluster.serve();
    let ids = {
        let bus = cluster.client(&nats.url()).await;
        publish_many(&bus, 60).await
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.spawn();
    let bus = cluster.client(&nats.url()).await;
    let counts = terminal_counts(&bus, &ids, Duration::from_secs(90)).await;
    assert_exactly_once(&counts);
    // The runtime kept working across the restart: a new command completes too.
    let more = publish_texts(&bus, "after", 1, json!({})).await;
    let counts = terminal_counts(&bus, &more, Duration::from_secs(30)).await;
    assert_exactly_once(&counts);
    serve.kill().unwrap();
    serve.wait().unwrap();
    cluster.cleanup().await;
}

/// Waits (20 s at most) until the replicas at both ports see each other.
async fn both_see_two(port_a: u16, port_b: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while replicas_seen(port_a) != 2 || replicas_seen(port_b) != 2 {
        assert!(Instant::now() < deadline, "replicas never saw each other");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn replicas_seen(port: u16) -> i64 {
    let (status, body) = crate::reload::http(
        port,
        "GET",
        "/v1/providers/status",
        Some("cluster-test-admin-token"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["replicas"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_accounts_rate_limit() {
    let nats = NatsServer::start();
    // 60 rpm, burst 4, for the whole cluster.
    let cluster =
        Cluster::with_limits(&nats.url(), 0, "rpm = 60, burst = 4, max_concurrency = 100");
    let (mut a, port_a) = cluster.serve_on();
    let (mut b, port_b) = cluster.serve_on();
    both_see_two(port_a, port_b).await;
    let bus = cluster.client(&nats.url()).await;
    // Hammer for 10 s: every command may wait up to 10 s for a slot.
    let ids = publish_texts(&bus, "hammer", 120, json!({"deadline_ms": 10000})).await;
    let mut messages = every_event(&bus).await;
    let (mut completed, mut failed) = (0, 0);
    while completed + failed < ids.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("all requests end")
            .unwrap()
            .unwrap();
        let event: Event = serde_json::from_slice(&message.payload).unwrap();
        match event.body {
            switchyard_core::EventBody::Completed { .. } => completed += 1,
            switchyard_core::EventBody::Failed { .. } => failed += 1,
            _ => {}
        }
    }
    // 60 rpm over 10 s is 10 calls, plus the burst of 4; one call of slack for the
    // deadline being measured from each command's own acceptance.
    assert!(
        completed <= 10 + 4 + 1,
        "the provider saw {completed} calls; the cluster limit allows 14"
    );
    assert!(completed >= 8, "only {completed} calls went through");
    a.kill().unwrap();
    a.wait().unwrap();
    // B alone takes the whole limit again within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    while replicas_seen(port_b) != 1 {
        assert!(Instant::now() < deadline, "B never noticed A died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.kill().unwrap();
    b.wait().unwrap();
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_replica_is_respected_by_the_other() {
    let nats = NatsServer::start();
    let providers = r#"
[[providers]]
name = "flaky"
provider = "mock"
priority = 100
breaker = { consecutive_failures = 2, open_ms = 60000 }
options = { failure_rate = 1.0, fail_with = "provider_unavailable" }
rate_limit = { rpm = 100000, burst = 1000, max_concurrency = 100 }

[[providers]]
name = "steady"
provider = "mock"
priority = 1
rate_limit = { rpm = 100000, burst = 1000, max_concurrency = 100 }
"#;
    let cluster = Cluster::with_providers(&nats.url(), providers);
    let (mut a, port_a) = cluster.serve_on();
    let (mut b, port_b) = cluster.serve_on();
    both_see_two(port_a, port_b).await;
    let bus = cluster.client(&nats.url()).await;
    // Three commands: whichever replica gets two of them opens the breaker locally.
    let ids = publish_many(&bus, 3).await;
    let counts = terminal_counts(&bus, &ids, Duration::from_secs(30)).await;
    assert_exactly_once(&counts);
    let breaker_of = |port: u16| {
        let (_, body) = crate::reload::http(
            port,
            "GET",
            "/v1/providers/status",
            Some("cluster-test-admin-token"),
            None,
        );
        body["instances"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["name"] == "flaky").cloned())
            .map(|i| i["breaker"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker_of(port_a) != "open" || breaker_of(port_b) != "open" {
        assert!(
            Instant::now() < deadline,
            "breaker states: a={} b={}",
            breaker_of(port_a),
            breaker_of(port_b)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill().unwrap();
    a.wait().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_write_reaches_the_other_replica_over_nats_within_a_second() {
    let nats = NatsServer::start();
    let providers = "[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n";
    let cluster = Cluster::with_database(&nats.url(), providers, Some("shared.db"));
    let (mut a, port_a) = cluster.serve_on();
    let (mut b, port_b) = cluster.serve_on();
    let token = Some("cluster-test-admin-token");
    let (_, list) = crate::reload::http(port_a, "GET", "/v1/providers", token, None);
    let id = list["items"][0]["id"].as_i64().unwrap();
    for round in 0..3 {
        let (status, body) = crate::reload::http(
            port_a,
            "PATCH",
            &format!("/v1/providers/{id}"),
            token,
            Some(&json!({"priority": 50 + round})),
        );
        assert_eq!(status, 200, "{body}");
        let version = body["version"].as_i64().unwrap();
        let changed = Instant::now();
        loop {
            let (_, status) =
                crate::reload::http(port_b, "GET", "/v1/providers/status", token, None);
            if status["instances"][0]["version"] == version {
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(1),
                "replica b still runs {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    a.kill().unwrap();
    a.wait().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_micro_service_is_discoverable_and_answers() {
    let nats = NatsServer::start();
    let cluster = Cluster::new(&nats.url(), 0);
    let mut serve = cluster.serve();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let ask = |subject: String| {
        let client = client.clone();
        async move {
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(subject, Bytes::new()),
            )
            .await
            .expect("answered in time")
            .unwrap();
            serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap()
        }
    };
    let info = ask("$SRV.INFO.switchyard".to_owned()).await;
    assert_eq!(info["name"], "switchyard");
    let endpoints: Vec<String> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    let status_subject = format!("{}.ctl.status", cluster.prefix);
    let reload_subject = format!("{}.ctl.reload", cluster.prefix);
    assert!(endpoints.contains(&status_subject), "{endpoints:?}");
    assert!(endpoints.contains(&reload_subject), "{endpoints:?}");
    let status = ask(status_subject).await;
    assert_eq!(status[0]["name"], "mock-a");
    assert_eq!(status[0]["actor"], "running");
    let report = ask(reload_subject).await;
    assert_eq!(report["live"], 1, "{report}");
    let stats = ask("$SRV.STATS.switchyard".to_owned()).await;
    let versions = &stats["endpoints"][0]["data"]["config_versions"];
    assert_eq!(versions.as_object().map(|v| v.len()), Some(1), "{stats}");
    serve.kill().unwrap();
    serve.wait().unwrap();
    cluster.cleanup().await;
}

/// Two `serve` processes share a tenant's concurrency limit (#16 §1): with both live,
/// each allows half of it, on its own OpenAI-compatible calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_a_tenants_concurrency_limit() {
    let nats = NatsServer::start();
    let cluster = Cluster::new(&nats.url(), 800);
    let (mut a, port_a) = cluster.serve_on();
    let (mut b, port_b) = cluster.serve_on();
    both_see_two(port_a, port_b).await;
    let admin = Some("cluster-test-admin-token");
    let (status, made) = crate::reload::http(port_a, "POST", "/v1/tenants/acme/keys", admin, None);
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let (status, set) = crate::reload::http(
        port_a,
        "PUT",
        "/v1/tenants/acme/limits",
        admin,
        Some(&json!({"concurrency": 4})),
    );
    assert_eq!(status, 200, "{set}");
    for port in [port_a, port_b] {
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let key = key.clone();
                tokio::task::spawn_blocking(move || {
                    crate::reload::http(
                        port,
                        "POST",
                        "/v1/chat/completions",
                        Some(&key),
                        Some(&json!({"messages": [{"role": "user", "content": "hi"}]})),
                    )
                    .0
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for call in calls {
            statuses.push(call.await.unwrap());
        }
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 200, 429, 429, 429, 429],
            "each of two processes takes 2 of the tenant's 4 (port {port})"
        );
    }
    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    cluster.cleanup().await;
}

/// The sum of a counter over its label sets in a `/metrics` text.
fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two `serve` processes on one database, each trying every 400 ms to clean: the
/// lease lets one run at a time and at most one per interval across both, so the two
/// together run no more often than one would (a cleaner per process would run twice
/// as often).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_run_one_retention_cleaner_between_them() {
    let nats = NatsServer::start();
    let cluster = Cluster::with_providers(
        &nats.url(),
        "[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n\n[retention]\ninterval_ms = 400\n",
    );
    let started = Instant::now();
    let (mut a, port_a) = cluster.serve_on();
    let (mut b, port_b) = cluster.serve_on();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let runs: Vec<f64> = [port_a, port_b]
        .iter()
        .map(|&port| {
            let (status, text) = http_get(port, "/metrics");
            assert_eq!(status, 200);
            counter_sum(&text, "switchyard_retention_runs_total")
        })
        .collect();
    let most = (started.elapsed().as_millis() / 400 + 1) as f64;
    let total: f64 = runs.iter().sum();
    assert!(total >= 1.0, "the cleaner never ran: {runs:?}");
    assert!(
        total <= most,
        "{total} runs in {:?} with a 400 ms interval (at most {most}): {runs:?}",
        started.elapsed()
    );
    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    cluster.cleanup().await;
}
