//! The `switchyard` binary as operators use it: config check, the seed's operator
//! scenarios through `providers …`, and `serve` starting and stopping cleanly.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const BENCH_BIN: &str = env!("CARGO_BIN_EXE_switchyard-bench");

pub(crate) struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let config = format!(
            r#"
[database]
url = "sqlite://{d}/data/switchyard.db"
[http]
listen = "127.0.0.1:0"
[artifacts]
url = "file://{d}/data/artifacts"
[secrets]
master_key_file = "{d}/data/master.key"
[admin]
token_file = "{d}/data/admin.token"
{extra}
"#
        );
        std::fs::write(dir.path().join("switchyard.toml"), config).unwrap();
        Self { dir }
    }

    /// The directory with the config file and `data/`.
    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("SWITCHYARD_") {
                command.env_remove(key);
            }
        }
        command
            .arg("--config")
            .arg(self.dir.path().join("switchyard.toml"))
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info");
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `serve` with this admin token, once it listens; returns it and its URL.
    pub(crate) fn serve(&self, token: &str) -> (crate::support::Served, String) {
        let port = crate::support::free_port();
        let serve = self
            .command()
            .arg("serve")
            .env("SWITCHYARD_ADMIN__TOKEN", token)
            .env("SWITCHYARD_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        (
            crate::support::Served(serve),
            format!("http://127.0.0.1:{port}"),
        )
    }

    fn list(&self) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&self.ok(&["providers", "list", "--json"])).unwrap()
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_check_names_the_bad_key() {
    let env = Env::new(
        "[bus]\nprefix = \"has space\"\n[[providers]]\nname = \"x\"\nprovider = \"stabilty\"\n",
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bus.prefix 'has space' is not a valid subject prefix"),
        "{err}"
    );
    assert!(
        err.contains("providers[0].provider unknown provider type 'stabilty'"),
        "{err}"
    );

    let env = Env::new("[htttp]\nlisten = \"127.0.0.1:1\"\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("htttp"), "{}", stderr(&out));

    let good = Env::new("");
    assert!(good.ok(&["config", "check"]).contains("settings are valid"));
}

#[test]
fn env_overrides_the_file() {
    let env = Env::new("");
    let out = env
        .command()
        .args(["config", "check"])
        .env("SWITCHYARD_HTTP__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("http.listen 'not-an-address'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "--config",
            "/nonexistent/switchyard.toml",
            "config",
            "check",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config file /nonexistent/switchyard.toml does not exist"));
}

#[test]
fn operator_scenarios_from_the_seed() {
    let env = Env::new("");
    let key1 = "sk-stab-main-SECRET-000000000001";
    let key2 = "sk-stab-acct2-SECRET-00000000002";
    let key3 = "sk-openai-SECRET-0000000000000003";
    // The first Stability account, then a second one at lower priority.
    env.command()
        .args([
            "providers",
            "add",
            "--name",
            "stability-main",
            "--provider",
            "stability",
            "--priority",
            "100",
            "--api-key-env",
            "K1",
            "--rpm",
            "150",
            "--burst",
            "10",
            "--max-concurrency",
            "3",
            "--cost-per-image",
            "default=0.04",
        ])
        .env("K1", key1)
        .status()
        .unwrap()
        .success()
        .then_some(())
        .unwrap();
    env.ok(&[
        "providers",
        "add",
        "--name",
        "acct2",
        "--provider",
        "stability",
        "--priority",
        "90",
        "--api-key",
        key2,
        "--model",
        "stable-diffusion-xl-1024-v1-0",
        "--base-url",
        "https://api.stability.ai",
        "--options",
        "{\"style_preset\":\"photographic\"}",
    ]);
    // DALL·E from a §6 JSON object on standard input, disabled at first.
    let mut child = env
        .command()
        .args(["providers", "add", "--from-json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let json = format!(
            r#"{{"name":"dalle3","provider":"openai","kinds":["image.generate"],"model":"dall-e-3","api_key":"{key3}","enabled":false,"priority":10}}"#
        );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(json.as_bytes())
            .unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());
    // Enable DALL·E as a fallback at priority 80, disable config 1, then raise OpenAI to 200.
    env.ok(&["providers", "enable", "dalle3"]);
    env.ok(&["providers", "set-priority", "dalle3", "80"]);
    env.ok(&["providers", "disable", "1"]);
    let listed = env.list();
    let summary: Vec<(String, i64, bool)> = listed
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["priority"].as_i64().unwrap(),
                p["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("stability-main".to_owned(), 100, false),
            ("acct2".to_owned(), 90, true),
            ("dalle3".to_owned(), 80, true),
        ]
    );
    env.ok(&["providers", "set-priority", "dalle3", "200"]);
    let listed = env.list();
    assert_eq!(listed[0]["name"], "dalle3");
    assert_eq!(listed[0]["priority"], 200);
    assert_eq!(listed[0]["version"], 4);
    assert_eq!(listed[1]["name"], "stability-main");
    assert_eq!(listed[1]["rate_limit"]["max_concurrency"], 3);
    assert_eq!(listed[2]["options"]["style_preset"], "photographic");

    // Keys are masked in every output and encrypted in the database file.
    let table = env.ok(&["providers", "list"]);
    let json = env.ok(&["providers", "list", "--json"]);
    let show = env.ok(&["providers", "show", "acct2"]);
    for output in [&table, &json, &show] {
        assert!(!output.contains("SECRET"), "{output}");
    }
    assert!(table.contains("sk-…0002"), "{table}");
    assert_eq!(listed[2]["api_key"], "sk-…0002");
    let db = std::fs::read(env.dir.path().join("data/switchyard.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("SECRET"));

    // Bad input: field errors, exit code 2, nothing written.
    let out = env.run(&[
        "providers",
        "update",
        "acct2",
        "--rpm",
        "0",
        "--provider",
        "stabilty",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("rate_limit.rpm must be > 0"), "{err}");
    assert!(
        err.contains("unknown provider type 'stabilty' (did you mean 'stability'?)"),
        "{err}"
    );
    let out = env.run(&["providers", "add", "--name", "acct2", "--provider", "mock"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a provider config named 'acct2' already exists"));
    let out = env.run(&["providers", "remove", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no provider config with id or name 'nope'"));
    assert_eq!(env.list().len(), 3);

    env.ok(&["providers", "remove", "stability-main"]);
    assert_eq!(env.list().len(), 2);
}

#[test]
fn serve_migrates_seeds_and_stops_on_ctrl_c() {
    let env = Env::new(
        "[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\npriority = 100\n\n[[providers]]\nname = \"mock-b\"\nprovider = \"mock\"\n",
    );
    let mut child = env
        .command()
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("serve never reported start: {log:#?}"));
        let started = line.contains("switchyard started");
        log.push(line);
        if started {
            break;
        }
    }
    assert!(log.iter().any(|l| l.contains("running=2")), "{log:#?}");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve exited with {exit}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:#?}");
    // The key file was generated private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.path().join("data/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second start finds the seeds applied and changes nothing.
    let listed = env.list();
    assert_eq!(listed.len(), 2);
    assert!(Path::new(&env.dir.path().join("data/admin.token")).exists());
}

#[test]
fn demo_runs_the_main_job_end_to_end() {
    let env = Env::new(
        "[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\npriority = 100\nrate_limit = { rpm = 60000, burst = 1000 }\n",
    );
    let out = env.run(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", stderr(&out));
    assert_eq!(
        stdout.matches(" completed on mock-a").count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("failed: invalid_request"), "{stdout}");
    assert!(
        stdout.contains("duplicate dropped by the bus: true"),
        "{stdout}"
    );
    // The images it reports are really there.
    let stored: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split(" stored at ").nth(1))
        .collect();
    assert_eq!(stored.len(), 3, "{stdout}");
    for path in stored {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{path}");
    }
}

#[test]
fn providers_commands_work_against_a_running_server() {
    let env = Env::new("[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n");
    let (mut serve, server) = env.serve("cli-remote-admin-token");
    let remote = |args: &[&str]| {
        Command::new(BIN)
            .args([
                "--server",
                &server,
                "--token",
                "cli-remote-admin-token",
                "providers",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&[
        "add",
        "--name",
        "acct2",
        "--provider",
        "stability",
        "--priority",
        "90",
        "--api-key",
        "sk-remote-SECRET-0123456789",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&["set-priority", "acct2", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&["list", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "acct2");
    assert_eq!(listed[0]["priority"], 200);
    assert_eq!(listed[0]["api_key"], "sk-…6789");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SECRET"));
    let out = remote(&["update", "acct2", "--rpm", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rate_limit.rpm must be > 0"),
        "{}",
        stderr(&out)
    );
    let out = remote(&["remove", "acct2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = Command::new(BIN)
        .args([
            "--server",
            &server,
            "--token",
            "wrong-token-wrong",
            "providers",
            "list",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("401"), "{}", stderr(&bad));
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

fn guest_path(name: &str) -> String {
    let path = format!(
        "{}/plugins/examples/dist/{name}.wasm",
        crate::support::manifest_dir()
    );
    assert!(
        Path::new(&path).exists(),
        "{path} is missing — build the example plugins first: plugins/build-examples.sh"
    );
    path
}

#[test]
fn plugins_are_validated_installed_and_rolled_back_locally_and_through_a_server() {
    let env = Env::new("");
    let garbage = env.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let out = env.run(&["plugins", "install", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a WebAssembly file"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["plugins", "install", &guest_path("echo-core")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("core WebAssembly module, not a component"),
        "{}",
        stderr(&out)
    );
    let installed = env.ok(&["plugins", "install", &guest_path("echo")]);
    assert!(installed.contains("installed echo@1.0.0"), "{installed}");
    let listed: Vec<Value> = serde_json::from_str(&env.ok(&["plugins", "list", "--json"])).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["version"], "1.0.0");

    let (mut serve, server) = env.serve("plugin-admin-token-1");
    let remote = |args: &[&str]| {
        Command::new(BIN)
            .args([
                "--server",
                &server,
                "--token",
                "plugin-admin-token-1",
                "plugins",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&["install", &guest_path("echo-v2")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed echo@2.0.0"));
    let out = remote(&["install", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = remote(&["rollback", "echo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2.0.0 deactivated; 1.0.0 serves again"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = remote(&["list", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let active: Vec<(&str, bool)> = listed
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap(),
                p["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(active, [("1.0.0", true), ("2.0.0", false)]);
    let out = remote(&["remove", "echo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

/// The load tool runs end to end over a real nats-server — the runtime pipeline, the
/// bus-only floor, and reading events back from the stream — and removes the streams
/// it made. (It reports speed; nothing here asserts a timing.)
#[test]
fn bench_drives_the_pipeline_and_the_bus_floor_over_nats() {
    let nats = crate::support::NatsServer::start();
    let url = nats.url();
    for extra in [&[][..], &["--floor"], &["--from-stream"]] {
        let out = Command::new(BENCH_BIN)
            .args(["--bus", &url, "--requests", "300"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("300 commands: published at")
                && stdout.contains("300 completed, 0 failed"),
            "{extra:?}: {stdout}\n{stderr}"
        );
    }
    // (nats-server renames a deleted stream's folder to `.NAME` before removing it.)
    let streams = nats.store_dir.path().join("jetstream/$G/streams");
    let left: Vec<String> = std::fs::read_dir(&streams)
        .unwrap_or_else(|e| panic!("{}: {e}", streams.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "streams left on the server: {left:?}");
}

/// On PostgreSQL the load tool works in a schema of its own and drops it afterwards.
#[test]
fn bench_on_postgres_drops_its_schema() {
    let nats = crate::support::NatsServer::start();
    let child = Command::new(BENCH_BIN)
        .args(["--bus", &nats.url(), "--requests", "200"])
        .args(["--database", &crate::support::postgres_url()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let schema = format!("bench_{}", child.id());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("200 completed, 0 failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: i64 = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::PgPool::connect(&crate::support::postgres_url())
            .await
            .unwrap();
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(&schema)
        .fetch_one(&pool)
        .await
        .unwrap()
    });
    assert_eq!(left, 0, "schema {schema} was left behind");
}

#[test]
fn keys_and_quotas_commands_work_locally_and_through_a_server() {
    let env = Env::new("[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n");
    let made = env.ok(&["keys", "create", "--tenant", "acme", "--name", "web"]);
    let secret = made
        .split_whitespace()
        .find(|w| w.starts_with("sy_"))
        .unwrap_or_else(|| panic!("no key printed: {made}"))
        .to_owned();
    let listed = env.ok(&["keys", "list", "--tenant", "acme"]);
    assert!(
        listed.contains("web") && listed.contains("live"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "the key is printed only once");
    env.ok(&[
        "quotas",
        "set",
        "--tenant",
        "acme",
        "--period",
        "day",
        "--max-images",
        "5",
    ]);
    for (args, needle) in [
        (
            vec![
                "quotas",
                "set",
                "--tenant",
                "acme",
                "--period",
                "week",
                "--max-images",
                "5",
            ],
            "neither 'day' nor 'month'",
        ),
        (
            vec!["quotas", "set", "--tenant", "acme", "--period", "day"],
            "at least one",
        ),
        (
            vec![
                "quotas",
                "set",
                "--tenant",
                "a b",
                "--period",
                "day",
                "--max-images",
                "1",
            ],
            "tenant",
        ),
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let quotas = env.ok(&["quotas", "list", "--tenant", "acme"]);
    assert!(
        quotas.contains("day") && quotas.contains("images 0/5"),
        "{quotas}"
    );

    let (mut serve, server) = env.serve("cli-tenants-admin-token");
    let remote = |args: &[&str]| {
        Command::new(BIN)
            .args(["--server", &server, "--token", "cli-tenants-admin-token"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&["quotas", "list", "--tenant", "acme"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("images 0/5"),
        "{}",
        stderr(&out)
    );
    let out = remote(&[
        "quotas",
        "set",
        "--tenant",
        "acme",
        "--user",
        "bob b",
        "--period",
        "month",
        "--max-requests",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&[
        "quotas", "remove", "--tenant", "acme", "--user", "bob b", "--period", "month",
    ]);
    assert!(
        out.status.success(),
        "a user with a space is encoded: {}",
        stderr(&out)
    );
    let out = remote(&["quotas", "remove", "--tenant", "acme", "--period", "month"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let out = remote(&["keys", "create", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&["keys", "revoke", "--tenant", "acme", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&["keys", "list", "--tenant", "acme"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("revoked") && listed.contains("live"),
        "{listed}"
    );
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

/// `submit --wait` and `watch` against a running `serve` over a real nats-server: the
/// events of each request in order, `--cache` answered from the first request the
/// second time, and `watch` seeing both.
#[test]
fn submit_and_watch_work_against_a_running_server_over_nats() {
    let nats = crate::support::NatsServer::start();
    let env = Env::new(&format!(
        "[bus]\nurl = \"{}\"\n[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n",
        nats.url()
    ));
    let (mut serve, _) = env.serve("cli-submit-admin-token");
    let mut watch = crate::support::Served(
        env.command()
            .args(["watch", "--tenant", "acme"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Submit only once watch says it is subscribed: events before that are not its.
    {
        use std::io::BufRead;
        let stderr = watch.0.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("watching events"));
        assert!(ready, "watch ended before it subscribed");
        std::thread::spawn(move || lines.for_each(drop));
    }
    let submit = |extra: &[&str]| {
        let out = env.run(
            &[
                &[
                    "submit",
                    "--kind",
                    "text.generate",
                    "--prompt",
                    "hello",
                    "--tenant",
                    "acme",
                ],
                extra,
            ]
            .concat(),
        );
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, events)
    };
    let (out, first) = submit(&["--cache", "--wait", "--user", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let types: Vec<&str> = first.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"accepted"), "{types:?}");
    assert_eq!(types.last(), Some(&"completed"), "{types:?}");
    assert_eq!(first.last().unwrap()["cached"], false);
    let (out, second) = submit(&["--cache", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let last = second.last().unwrap();
    assert_eq!(last["cached"], true, "{second:?}");
    assert_eq!(
        last["output"]["text"],
        first.last().unwrap()["output"]["text"]
    );

    // watch printed both requests' events as they happened.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    let mut stdout = watch.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(&mut stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut completed = 0;
    while completed < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("watch did not print both requests: {seen}"));
        completed += usize::from(line.contains("\"type\":\"completed\""));
        seen.push_str(&line);
        seen.push('\n');
    }
    // The memory bus lives in one process: submit says so instead of hanging.
    let out = env.run(&[
        "submit",
        "--kind",
        "text.generate",
        "--prompt",
        "x",
        "--bus",
        "memory://",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("inside one process"),
        "{}",
        stderr(&out)
    );
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

/// One chat call on a fresh connection; `None` when the connection fails (the server
/// is gone).
fn try_chat(port: u16, key: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = r#"{"messages":[{"role":"user","content":"hello"}]}"#;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A kill -9 during synchronous calls (#15): every record the write-behind had
/// reported written (its counter on `/metrics`, read right before the kill) is in the
/// database afterwards, and the calls in flight fail as broken connections.
#[test]
fn records_written_behind_calls_survive_a_kill_9() {
    let env = Env::new("[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n");
    let token = "cli-kill-9-admin-token";
    let (mut serve, url) = env.serve(token);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, made) =
        crate::reload::http(port, "POST", "/v1/tenants/acme/keys", Some(token), None);
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (key, stop) = (key.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut answered, mut broken) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match try_chat(port, &key) {
                        Some(200) => answered += 1,
                        Some(other) => panic!("a call answered {other}"),
                        None => broken += 1,
                    }
                }
                (answered, broken)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, metrics) = crate::support::raw_http(port, "GET", "/metrics", &[], b"");
    let written: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_write_behind_written_total "))
        .map_or(0, |v| v.trim().parse().unwrap());
    serve.kill().unwrap();
    let _ = serve.wait();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: u64 = callers.into_iter().map(|c| c.join().unwrap().0).sum();
    assert!(written > 0, "nothing was written in 1.5 s of calls");
    assert!(
        answered >= written,
        "{answered} answered, {written} written"
    );
    let recorded: i64 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let db = env.dir.path().join("data/switchyard.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_log WHERE tenant = 'acme'")
                .fetch_one(&pool)
                .await
                .unwrap()
        });
    assert!(
        u64::try_from(recorded).unwrap() >= written,
        "{recorded} usage rows, but the write-behind had written {written}"
    );
}
