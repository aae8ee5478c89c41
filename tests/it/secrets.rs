//! A plaintext API key appears in no Debug, Display, serde output or log line.

use std::sync::{Arc, Mutex};

use switchyard_core::ProviderConfig;

const PLAINTEXT: &str = "sk-live-TOPSECRET-0123456789abcdef";

fn config() -> ProviderConfig {
    crate::support::provider_config(
        1,
        serde_json::json!({"name": "openai-main", "provider": "openai", "api_key": PLAINTEXT}),
    )
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plaintext_key_never_leaves_through_formatting_serde_or_logs() {
    let config = config();
    let draft = config.spec.to_draft();
    assert!(!format!("{config:?}").contains("TOPSECRET"));
    assert!(!format!("{draft:?}").contains("TOPSECRET"));
    assert!(
        !serde_json::to_string(&config)
            .unwrap()
            .contains("TOPSECRET")
    );
    assert!(!serde_json::to_string(&draft).unwrap().contains("TOPSECRET"));
    assert!(!format!("{}", config.spec.api_key.as_ref().unwrap()).contains("TOPSECRET"));
    assert_eq!(
        serde_json::to_value(&config).unwrap()["api_key"],
        "sk-…cdef"
    );

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(config = ?config, key = %config.spec.api_key.as_ref().unwrap(), "loaded");
        tracing::info!(draft = ?draft, "draft");
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("sk-…cdef"),
        "the masked form is logged: {logs}"
    );
    assert!(!logs.contains("TOPSECRET"), "{logs}");
    // The one way to the plaintext is explicit.
    assert_eq!(config.spec.api_key.unwrap().expose(), PLAINTEXT);
}

/// An empty admin token file (a crashed first start, an empty mounted secret) stops
/// `serve` with a clear error: it never means "no token".
#[tokio::test]
async fn an_empty_admin_token_file_refuses_to_serve() {
    let db = crate::support::TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "\n").unwrap();
    let mut settings = switchyard_runtime::Settings::default();
    settings.database.url = db.options.url.clone();
    settings.secrets.master_key = Some(switchyard_runtime::settings::Secret::new(
        db.key_b64.clone(),
    ));
    settings.admin.token_file = token_file.clone();
    settings.artifacts.url = format!("file://{}/artifacts", dir.path().display());
    let (runtime, _) = switchyard_runtime::prepare(settings).await.unwrap();
    let error = runtime.admin_token().unwrap_err().to_string();
    assert!(error.contains("at least 16"), "{error}");
    // Removed, it is generated afresh (whole, 0600) and is a real credential.
    std::fs::remove_file(&token_file).unwrap();
    let token = runtime.admin_token().unwrap();
    assert!(token.expose().len() >= 16);
}
