//! Test support: databases (a fresh SQLite file or a fresh PostgreSQL schema per
//! test), provider configs as the store hands them over, and engine options.

use std::path::PathBuf;

use switchyard_runtime::{MasterKey, Store, store::ConnectOptions};

/// The PostgreSQL server tests use (`TEST_POSTGRES_URL`, default the local one).
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A unique, valid identifier suffix.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's database.
pub struct TestDb {
    pub store: Store,
    pub options: ConnectOptions,
    pub key_b64: String,
    /// Keeps the SQLite file's directory alive for the test.
    pub _dir: tempfile::TempDir,
    pub schema: Option<String>,
}

impl TestDb {
    /// The requests in `tenant`'s usage log over the last hour that count against its
    /// quotas (not those of its own provider accounts).
    pub async fn usage_requests(&self, tenant: &str) -> i64 {
        self.store
            .usage_totals(
                tenant,
                None,
                chrono::Utc::now() - chrono::Duration::hours(1),
            )
            .await
            .unwrap()
            .requests
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = ConnectOptions {
            url: format!("sqlite://{}", dir.path().join("test.db").display()),
            schema: None,
            max_connections: 4,
        };
        Self::open(options, dir, None).await
    }

    pub async fn postgres() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let schema = format!("sy_test_{}", unique_suffix());
        let options = ConnectOptions {
            url: postgres_url(),
            schema: Some(schema.clone()),
            max_connections: 4,
        };
        Self::open(options, dir, Some(schema)).await
    }

    async fn open(options: ConnectOptions, dir: tempfile::TempDir, schema: Option<String>) -> Self {
        let (key, key_b64) = MasterKey::generate();
        let store = Store::connect(&options, key)
            .await
            .unwrap_or_else(|e| panic!("cannot open test database {}: {e}", options.url));
        store.check_master_key().await.unwrap();
        Self {
            store,
            options,
            key_b64,
            _dir: dir,
            schema,
        }
    }

    /// The same database opened with another master key.
    pub async fn reopen_with(
        &self,
        key: MasterKey,
    ) -> Result<Store, switchyard_runtime::OpenError> {
        Store::connect(&self.options, key).await
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.options
            .url
            .strip_prefix("sqlite://")
            .map(PathBuf::from)
    }

    /// Runs SQL outside the repository, as an operator with a SQL shell would.
    pub async fn raw_execute(&self, sql: &str) {
        match &self.schema {
            None => {
                let pool = sqlx::SqlitePool::connect(&self.options.url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            Some(schema) => {
                let pool = self.pg_pool(schema).await;
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }

    /// Every text value of a one-column query, as strings.
    pub async fn raw_strings(&self, sql: &str) -> Vec<String> {
        match &self.schema {
            None => {
                let pool = sqlx::SqlitePool::connect(&self.options.url).await.unwrap();
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
            Some(schema) => {
                let pool = self.pg_pool(schema).await;
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
        }
    }

    async fn pg_pool(&self, schema: &str) -> sqlx::PgPool {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.options.url)
            .unwrap()
            .options([("search_path", schema)]);
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap()
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some(schema) = &self.schema {
            let pool = sqlx::PgPool::connect(&self.options.url).await.unwrap();
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// Generates one `#[tokio::test]` per backend for each named `async fn(&TestDb)`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::TestDb::postgres().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}
pub(crate) use on_both_databases;

/// A real nats-server (JetStream) of this test's own, on a free port, killed on drop.
pub struct NatsServer {
    child: Option<std::process::Child>,
    pub port: u16,
    pub store_dir: tempfile::TempDir,
    flags: Vec<String>,
}

/// The nats-server binary: `NATS_SERVER_BIN`, else `nats-server` on PATH.
pub fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server started with extra flags (e.g. `--auth TOKEN`).
    pub fn start_with(flags: &[&str]) -> Self {
        let store_dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            child: None,
            port: free_port(),
            store_dir,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server process on the same port and store.
    pub fn spawn(&mut self) {
        let child = std::process::Command::new(nats_server_bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store_dir.path())
            .args(&self.flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (set NATS_SERVER_BIN): {e}",
                    nats_server_bin()
                )
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the server process (the store stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `serve` process, killed when dropped (a failing test leaves none running).
pub struct Served(pub std::process::Child);

impl std::ops::Deref for Served {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to its end
/// (an event stream ends when the server closes it): the status and the raw response.
/// `headers` are whole header lines without their line ends.
pub fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The package directory at run time (cargo and nextest set it for test processes): a
/// test binary reused from another checkout of the same sources, through one shared
/// target dir, would otherwise read that checkout's files.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}

/// A provider config as the store hands it over (id `id`, version 1), from the JSON an
/// operator posts.
pub fn provider_config(id: i64, json: serde_json::Value) -> switchyard_core::ProviderConfig {
    let draft: switchyard_core::ProviderConfigDraft = serde_json::from_value(json).unwrap();
    switchyard_core::ProviderConfig {
        id: switchyard_core::ConfigId(id),
        spec: draft.validate().unwrap(),
        version: 1,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

/// The engine options of a test: `artifacts`, a fixed artifact-URL key, the default
/// restart policy, a 30 s wait for a free instance, no plugins, the default outbound
/// guard. Tests override fields with `..engine_options(artifacts)`.
pub fn engine_options(
    artifacts: switchyard_runtime::artifacts::ArtifactStore,
) -> switchyard_runtime::EngineOptions {
    switchyard_runtime::EngineOptions {
        artifacts,
        artifact_urls: switchyard_runtime::artifact_urls::ArtifactUrls::new(
            b"a test key, a test key",
            std::time::Duration::from_secs(3600),
            "http://127.0.0.1:8080",
        ),
        restart_policy: switchyard_runtime::actors::RestartPolicy::default(),
        default_wait: std::time::Duration::from_secs(30),
        plugins: None,
        vault: None,
        outbound: switchyard_runtime::guard::Guard::default(),
    }
}
