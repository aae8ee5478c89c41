use super::*;

fn command(json: serde_json::Value) -> Command {
    serde_json::from_value(json).expect("command parses")
}

fn errors(c: &Command, subject: Option<Kind>) -> Vec<String> {
    c.validate(subject)
        .expect_err("should be invalid")
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn defaults_fill_in() {
    let c = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "image.generate",
        "input": {"prompt": "a cat"},
    }));
    assert_eq!(c.v, 1);
    assert_eq!(c.route, Route::default());
    assert_eq!(c.priority, 5);
    assert!(!c.cache);
    assert_eq!(c.image_count(), 1);
    assert!(c.validate(Some(Kind::ImageGenerate)).is_ok());
}

#[test]
fn image_rules_are_checked() {
    let c = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "image.generate",
        "input": {"prompt": "  ", "n": 11, "size": "big one", "output_format": "gif"},
        "priority": 0,
    }));
    assert_eq!(
        errors(&c, Some(Kind::TextGenerate)),
        [
            "kind is 'image.generate' but the command came on the 'text.generate' subject",
            "priority must be 1–10, got 0",
            "input.prompt must not be empty",
            "input.n must be 1–10, got 11",
            "input.size 'big one' is neither WxH (e.g. 1024x1024) nor a size token (e.g. 2K)",
            "input.output_format must be png, jpeg or webp, got 'gif'",
        ]
    );
}

#[test]
fn edit_needs_well_formed_images() {
    let c = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "image.edit",
        "input": {"prompt": "make it blue", "images": [
            {"url": "https://x/a.png"}, {"url": "ftp://x"}, {"b64": "AAAA"}, {}
        ]},
    }));
    assert_eq!(
        errors(&c, None),
        [
            "input.images[1] url must be http:// or https://",
            "input.images[2] b64 needs a mime type",
            "input.images[3] must have exactly one of url, artifact_id or b64",
        ]
    );
    let missing = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "image.edit", "input": {"prompt": "x"},
    }));
    assert_eq!(
        errors(&missing, None),
        ["input.images is required for image.edit"]
    );
}

#[test]
fn text_rules_are_checked() {
    let c = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "text.generate",
        "input": {"messages": [], "temperature": 3.0, "max_tokens": 0},
    }));
    assert_eq!(
        errors(&c, None),
        [
            "input.messages must hold at least one message",
            "input.max_tokens must be > 0, got 0",
            "input.temperature must be 0–2, got 3",
        ]
    );
}

#[test]
fn unknown_kind_or_provider_is_malformed_not_a_panic() {
    let body = br#"{"request_id":"r1","tenant":"acme","kind":"video.generate","input":{}}"#;
    assert!(matches!(
        Command::parse(body),
        Err(CommandError::Malformed(_))
    ));
    let body = br#"{"request_id":"r1","tenant":"acme","kind":"image.generate","input":{"prompt":"x"},"route":{"provider":"stabilty"}}"#;
    let err = Command::parse(body).unwrap_err().to_string();
    assert!(err.contains("did you mean 'stability'"), "{err}");
}

#[test]
fn parse_errors_name_the_field() {
    let body =
        br#"{"request_id":"r 1","tenant":"acme","kind":"image.generate","input":{"prompt":"x"}}"#;
    let err = Command::parse(body).unwrap_err().to_string();
    assert!(err.contains("request_id: may only contain"), "{err}");
    let body = br#"{"request_id":"r1","tenant":"acme","kind":"image.generate","input":{"prompt":"x","n":"two"}}"#;
    let err = Command::parse(body).unwrap_err().to_string();
    assert!(err.contains("input.n: invalid type"), "{err}");
    let body = br#"{"request_id":"r1","tenant":"acme","kind":"image.generate","input":{"prompt":"x"}} trailing"#;
    assert!(matches!(
        Command::parse(body),
        Err(CommandError::Malformed(_))
    ));
}

#[test]
fn envelope_sorts_dlq_cases() {
    assert!(
        CommandEnvelope::parse(b"not json")
            .unwrap_err()
            .starts_with("body is not valid JSON")
    );
    assert_eq!(
        CommandEnvelope::parse(b"[1]").unwrap_err(),
        "body is not a JSON object"
    );
    assert_eq!(
        CommandEnvelope::parse(br#"{"tenant":"a"}"#).unwrap_err(),
        "missing request_id"
    );
    assert_eq!(
        CommandEnvelope::parse(br#"{"request_id":"r"}"#).unwrap_err(),
        "missing tenant"
    );
    assert_eq!(
        CommandEnvelope::parse(br#"{"request_id":"r.1","tenant":"a"}"#).unwrap_err(),
        "request_id is invalid: may only contain A-Z, a-z, 0-9, '_' and '-', found '.'"
    );
    let ok = CommandEnvelope::parse(br#"{"request_id":"r1","tenant":"a","reply_to":"_INBOX.x"}"#)
        .unwrap();
    assert_eq!(ok.reply_to.as_deref(), Some("_INBOX.x"));
}

#[test]
fn oversized_bodies_are_refused() {
    let body = vec![b' '; MAX_COMMAND_BYTES + 1];
    assert_eq!(
        Command::parse(&body),
        Err(CommandError::TooLarge(MAX_COMMAND_BYTES + 1))
    );
}

#[test]
fn config_ref_takes_an_id_or_a_name() {
    let c = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "image.generate",
        "input": {"prompt": "x"}, "route": {"config_id": 7},
    }));
    assert_eq!(c.route.config_id, Some(ConfigRef::Id(7)));
    let c = command(serde_json::json!({
        "request_id": "r1", "tenant": "acme", "kind": "image.generate",
        "input": {"prompt": "x"}, "route": {"config_id": "stability-main", "provider": "stability"},
    }));
    assert_eq!(
        c.route.config_id,
        Some(ConfigRef::Name("stability-main".into()))
    );
    assert_eq!(
        c.route.provider,
        ProviderSelector::Type(ProviderType::Stability)
    );
}

#[test]
fn a_built_command_has_the_defaults_a_minimal_body_parses_to() {
    let parsed = Command::parse(
        br#"{"request_id": "r1", "tenant": "acme", "kind": "image.generate", "input": {"prompt": "hi"}}"#,
    )
    .unwrap();
    let built = Command::new(
        RequestId::new("r1").unwrap(),
        Tenant::new("acme").unwrap(),
        Kind::ImageGenerate,
        CommandInput {
            prompt: Some("hi".into()),
            ..CommandInput::default()
        },
    );
    assert_eq!(built, parsed);
    assert!(built.validate(None).is_ok());
}
