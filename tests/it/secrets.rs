//! A plaintext API key appears in no Debug, Display, serde output or log line.

use std::sync::{Arc, Mutex};

use switchyard_core::{ConfigId, ProviderConfig, ProviderConfigDraft};

const PLAINTEXT: &str = "sk-live-TOPSECRET-0123456789abcdef";

fn config() -> ProviderConfig {
    let draft: ProviderConfigDraft = serde_json::from_value(serde_json::json!({
        "name": "openai-main", "provider": "openai", "api_key": PLAINTEXT,
    }))
    .unwrap();
    ProviderConfig {
        id: ConfigId(1),
        spec: draft.validate().unwrap(),
        version: 1,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
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
