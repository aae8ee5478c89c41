//! `switchyard limits …` and `switchyard usage`, against the database and through a
//! running server (`--server`).

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::cli::{BIN, Env, stderr};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn limits_commands_work_locally_and_through_a_server() {
    let env = Env::new("[tenants]\nrpm = 30\n");
    let shown = env.ok(&["limits", "show", "--tenant", "acme"]);
    assert!(shown.contains("rpm 30 (default)"), "{shown}");
    assert!(shown.contains("concurrency unlimited"), "{shown}");
    let set = env.ok(&[
        "limits",
        "set",
        "--tenant",
        "acme",
        "--concurrency",
        "3",
        "--user-rpm",
        "10",
    ]);
    assert!(
        set.contains("concurrency 3") && set.contains("user_rpm 10"),
        "{set}"
    );
    for (args, needle) in [
        (
            vec!["limits", "set", "--tenant", "acme", "--rpm", "0"],
            "rpm: must be at least 1",
        ),
        (
            vec!["limits", "set", "--tenant", "a b", "--rpm", "1"],
            "tenant",
        ),
        (
            vec!["limits", "remove", "--tenant", "globex"],
            "no limits of its own",
        ),
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }

    let (mut serve, server) = env.serve("cli-limits-admin-token");
    let remote = |args: &[&str]| {
        Command::new(BIN)
            .args(["--server", &server, "--token", "cli-limits-admin-token"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&["limits", "show", "--tenant", "acme"]);
    assert!(
        stdout(&out).contains("concurrency 3") && stdout(&out).contains("rpm 30 (default)"),
        "the server shows what the CLI stored: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = remote(&["limits", "set", "--tenant", "acme", "--rpm", "5"]);
    assert!(
        stdout(&out).contains("rpm 5,"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = remote(&["limits", "remove", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&["limits", "remove", "--tenant", "acme"]);
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

/// A chat call through a running server, then `usage` as a table and as JSON, locally
/// and through the server.
#[test]
fn usage_reports_a_call_as_a_table_and_as_json() {
    let env = Env::new("[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n");
    let empty = env.ok(&["usage", "--tenant", "acme", "--json"]);
    let empty: Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(empty["total"]["requests"], 0, "{empty}");

    let (mut serve, server) = env.serve("cli-usage-admin-token");
    let port: u16 = server.rsplit(':').next().unwrap().parse().unwrap();
    let token = Some("cli-usage-admin-token");
    let (status, made) = crate::reload::http(port, "POST", "/v1/tenants/acme/keys", token, None);
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let ask = json!({"model": "auto", "user": "bob",
                     "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) =
        crate::reload::http(port, "POST", "/v1/chat/completions", Some(&key), Some(&ask));
    assert_eq!(status, 200, "{answer}");

    let remote = |args: &[&str]| {
        Command::new(BIN)
            .args(["--server", &server, "--token", "cli-usage-admin-token"])
            .args(args)
            .output()
            .unwrap()
    };
    // The call's record is written behind its answer: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report = loop {
        let out = remote(&[
            "usage",
            "--tenant",
            "acme",
            "--bucket",
            "month",
            "--by-user",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
        if report["total"]["requests"] == 1 {
            break report;
        }
        assert!(std::time::Instant::now() < deadline, "no usage: {report}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let group = &report["buckets"][0]["groups"][0];
    assert_eq!(group["user"], "bob", "{report}");
    assert_eq!(group["provider"], "mock", "{report}");
    assert_eq!(group["kind"], "text.generate", "{report}");
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    let _ = serve.wait();

    let table = env.ok(&["usage", "--tenant", "acme", "--bucket", "week"]);
    assert!(
        table.contains("text.generate") && table.contains("mock"),
        "{table}"
    );
    assert!(table.contains("total: 1 requests"), "{table}");
    let out = env.run(&["usage", "--tenant", "acme", "--bucket", "year"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--bucket"), "{}", stderr(&out));
    let out = env.run(&["usage", "--tenant", "acme", "--from", "yesterday"]);
    assert!(
        stderr(&out).contains("--from 'yesterday'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plans_commands_manage_plans_and_assign_them() {
    let env = Env::new("");
    let listed = env.ok(&["plans", "list"]);
    for plan in ["basic", "professional", "enterprise"] {
        assert!(listed.contains(plan), "{listed}");
    }
    assert!(
        listed.contains("tokens 100000") && listed.contains("images 50"),
        "{listed}"
    );
    env.ok(&[
        "plans",
        "set",
        "tiny",
        "--period",
        "day",
        "--max-requests",
        "2",
    ]);
    env.ok(&["plans", "assign", "--tenant", "acme", "--plan", "tiny"]);
    let quotas = env.ok(&["quotas", "list", "--tenant", "acme"]);
    assert!(quotas.contains("requests 0/2"), "{quotas}");
    for (args, needle) in [
        (vec!["plans", "remove", "tiny"], "assigned"),
        (
            vec!["plans", "assign", "--tenant", "acme", "--plan", "gold"],
            "no plan named 'gold'",
        ),
        (
            vec!["plans", "set", "tiny", "--period", "day"],
            "at least one",
        ),
        (vec!["plans", "set", "a b", "--max-images", "1"], "name"),
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    env.ok(&["plans", "unassign", "--tenant", "acme"]);
    env.ok(&["plans", "remove", "tiny"]);
    assert!(!env.ok(&["plans", "list"]).contains("tiny"));
}

/// `retention set/show/remove` keep a tenant's policy; `retention run --dry-run`
/// counts what would go and deletes nothing; `retention run` deletes it.
#[test]
fn retention_commands_set_a_policy_and_run_the_cleaner() {
    let env = Env::new("[retention]\ntasks_days = 10\n");
    env.ok(&["migrate"]);
    let shown = env.ok(&["retention", "set", "--tenant", "acme", "--tasks-days", "2"]);
    assert!(shown.contains("tasks 2 days"), "{shown}");
    assert!(shown.contains("usage 400 days (default)"), "{shown}");
    let refused = env.run(&["retention", "set", "--tenant", "acme", "--usage-days", "5"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("usage_days"),
        "{}",
        stderr(&refused)
    );

    // One finished task of acme's, three days old.
    let db = env.path().join("data/switchyard.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let tasks = |sql: String| {
        runtime.block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows
        })
    };
    tasks(format!(
        "INSERT INTO tasks (request_id, tenant, kind, command, status, completed_at) \
         VALUES ('r1', 'acme', 'image.generate', '{{}}', 'completed', '{three_days_ago}') \
         RETURNING tenant"
    ));
    let dry: Value =
        serde_json::from_str(&env.ok(&["retention", "run", "--dry-run", "--json"])).unwrap();
    assert_eq!(
        (dry["dry_run"].clone(), dry["tasks"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(tasks("SELECT tenant FROM tasks".into()), ["acme"], "dry");
    let ran = env.ok(&["retention", "run"]);
    assert!(ran.contains("deleted: 1 tasks"), "{ran}");
    assert!(tasks("SELECT tenant FROM tasks".into()).is_empty());

    env.ok(&["retention", "remove", "--tenant", "acme"]);
    let shown = env.ok(&["retention", "show", "--tenant", "acme"]);
    assert!(shown.contains("tasks 10 days (default)"), "{shown}");
}

/// `providers stats` reads each config's attempts from the database.
#[test]
fn providers_stats_reports_attempts_per_config() {
    let env = Env::new("[[providers]]\nname = \"mock-a\"\nprovider = \"mock\"\n");
    env.ok(&["migrate"]);
    let db = env.path().join("data/switchyard.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        for (ok, code, ms) in [(1, "NULL", 10), (1, "NULL", 30), (0, "'timeout'", 50)] {
            let sql = format!(
                "INSERT INTO attempt_log (tenant, kind, provider_config_id, succeeded, \
                 error_code, latency_ms, created_at) SELECT 'acme', 'image.generate', id, \
                 {ok}, {code}, {ms}, '{now}' FROM provider_configs WHERE name = 'mock-a'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    });
    let stats: Value = serde_json::from_str(&env.ok(&["providers", "stats", "--json"])).unwrap();
    assert_eq!(stats[0]["name"], "mock-a", "{stats}");
    assert_eq!(stats[0]["requests"], 3, "{stats}");
    assert_eq!(stats[0]["error_codes"], json!({"timeout": 1}), "{stats}");
    assert_eq!(stats[0]["p50_ms"], 30, "{stats}");
    assert_eq!(stats[0]["p99_ms"], 50, "{stats}");
    let table = env.ok(&["providers", "stats", "mock-a"]);
    assert!(
        table.contains("mock-a") && table.contains("timeout:1"),
        "{table}"
    );
}

/// `templates set/list/show/remove` keep templates in the database, checked as the API
/// checks them.
#[test]
fn templates_commands_manage_templates() {
    let env = Env::new("");
    env.ok(&["migrate"]);
    let set = env.ok(&[
        "templates",
        "set",
        "product",
        "--kind",
        "image",
        "--text",
        "A photo of {{ product }}",
    ]);
    assert!(set.contains("product"), "{set}");
    let refused = env.run(&[
        "templates",
        "set",
        "bad",
        "--kind",
        "image",
        "--text",
        "{% if %}",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("template"),
        "{}",
        stderr(&refused)
    );
    assert!(env.ok(&["templates", "list"]).contains("product"));
    assert_eq!(
        env.ok(&["templates", "show", "product"]).trim(),
        "A photo of {{ product }}"
    );
    env.ok(&["templates", "remove", "product"]);
    assert!(!env.run(&["templates", "show", "product"]).status.success());
}
