use super::*;

fn draft(json: serde_json::Value) -> ProviderConfigDraft {
    serde_json::from_value(json).expect("draft parses")
}

fn messages(result: Result<ProviderSpec, ValidationError>) -> Vec<String> {
    result
        .expect_err("validation should fail")
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn minimal_mock_config_gets_every_default() {
    let spec = ProviderConfigDraft::new("mock-a", "mock")
        .validate()
        .unwrap();
    assert_eq!(spec.provider, ProviderType::Mock);
    assert_eq!(spec.kinds.len(), 3);
    assert!(spec.enabled);
    assert_eq!(spec.priority, 0);
    assert_eq!(spec.weight, 1);
    assert_eq!(spec.rate_limit, RateLimit::default());
    assert_eq!(spec.breaker, BreakerSettings::default());
    assert_eq!(spec.timeout_ms, 60_000);
    assert!(spec.supports.images, "image.edit implies image input");
}

#[test]
fn field_errors_name_each_field() {
    let errors = messages(
        draft(serde_json::json!({
            "name": "acct2",
            "provider": "stabilty",
            "rate_limit": {"rpm": 0, "burst": -1},
            "breaker": {"failure_rate": 1.5, "window": 10, "min_calls": 11},
            "timeout_ms": 0,
            "weight": -3,
        }))
        .validate(),
    );
    assert_eq!(
        errors,
        [
            "provider unknown provider type 'stabilty' (did you mean 'stability'?)",
            "weight must be >= 0, got -3",
            "rate_limit.rpm must be > 0",
            "rate_limit.burst must be > 0",
            "breaker.min_calls must be <= 10, got 11",
            "breaker.failure_rate must be > 0 and <= 1, got 1.5",
            "timeout_ms must be > 0",
        ]
    );
}

#[test]
fn name_and_provider_are_required() {
    let errors = messages(ProviderConfigDraft::default().validate());
    assert_eq!(errors, ["name is required", "provider is required"]);
}

#[test]
fn bad_names_are_refused() {
    for (name, expected) in [
        ("", "name must be 1–64 characters"),
        ("42", "name must not be all digits (it would read as an id)"),
        (
            "a b",
            "name may only contain A-Z, a-z, 0-9, '_', '-' and '.', found ' '",
        ),
    ] {
        let errors = messages(ProviderConfigDraft::new(name, "mock").validate());
        assert_eq!(errors, [expected]);
    }
}

#[test]
fn real_providers_need_a_key_when_enabled() {
    let errors = messages(ProviderConfigDraft::new("oa", "openai").validate());
    assert_eq!(
        errors,
        ["api_key is required for provider type 'openai' when enabled"]
    );
    let disabled = ProviderConfigDraft {
        enabled: Some(false),
        ..ProviderConfigDraft::new("oa", "openai")
    };
    assert!(disabled.validate().is_ok());
}

#[test]
fn masked_keys_are_never_accepted_as_keys() {
    let errors = messages(
        draft(serde_json::json!({"name": "oa", "provider": "openai", "api_key": "sk-…abcd"}))
            .validate(),
    );
    assert_eq!(
        errors,
        ["api_key is a masked value; send the real key or leave the field out"]
    );
}

#[test]
fn kinds_must_fit_the_provider_type() {
    let errors = messages(
        draft(serde_json::json!({
            "name": "claude", "provider": "anthropic", "api_key": "sk-ant-0123456789",
            "kinds": ["text.generate", "image.generate", "video.generate"],
        }))
        .validate(),
    );
    assert_eq!(
        errors,
        [
            "kinds[1] provider type 'anthropic' cannot serve 'image.generate'",
            "kinds[2] unknown kind 'video.generate' (expected image.generate, image.edit or text.generate)",
        ]
    );
}

#[test]
fn wasm_needs_a_plugin_and_only_wasm_may_name_one() {
    let errors = messages(ProviderConfigDraft::new("w", "wasm").validate());
    assert_eq!(errors, ["plugin is required when provider is 'wasm'"]);
    let ok = ProviderConfigDraft {
        plugin: Some("replicate@1.2.0".into()),
        ..ProviderConfigDraft::new("w", "wasm")
    };
    assert!(ok.validate().is_ok());
    let errors = messages(
        ProviderConfigDraft {
            plugin: Some("replicate".into()),
            ..ProviderConfigDraft::new("m", "mock")
        }
        .validate(),
    );
    assert_eq!(errors, ["plugin is only valid when provider is 'wasm'"]);
}

#[test]
fn mock_options_are_checked() {
    let errors = messages(
        draft(serde_json::json!({
            "name": "m", "provider": "mock", "options": {"failure_rate": 2.0},
        }))
        .validate(),
    );
    assert_eq!(errors, ["options.failure_rate must be 0–1, got 2"]);
    let errors = messages(
        draft(serde_json::json!({
            "name": "m", "provider": "mock", "options": {"fail_with": "bogus"},
        }))
        .validate(),
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("options unknown variant `bogus`"),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_value::<ProviderConfigDraft>(serde_json::json!({
        "name": "m", "provider": "mock", "priorty": 3,
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `priorty`"), "{err}");
}

#[test]
fn server_fields_from_a_read_object_are_ignored() {
    let d = draft(serde_json::json!({
        "id": 7, "name": "m", "provider": "mock", "version": 3,
        "created_at": "2026-11-22T08:00:00Z", "updated_at": "2026-11-22T08:00:00Z",
    }));
    assert!(d.validate().is_ok());
}

#[test]
fn overlay_merges_nested_settings_field_by_field() {
    let base = draft(serde_json::json!({
        "name": "m", "provider": "mock", "priority": 10,
        "rate_limit": {"rpm": 150, "burst": 10},
    }));
    let patch = draft(serde_json::json!({"priority": 200, "rate_limit": {"burst": 3}}));
    let spec = base.overlay(patch).validate().unwrap();
    assert_eq!(spec.priority, 200);
    assert_eq!(spec.rate_limit.rpm, 150);
    assert_eq!(spec.rate_limit.burst, 3);
    assert_eq!(spec.name, "m");
}

#[test]
fn spec_to_draft_round_trips() {
    let spec = draft(serde_json::json!({
        "name": "st", "provider": "stability", "api_key": "sk-0123456789abcdef",
        "priority": 90, "weight": 2, "kinds": ["image.generate"],
        "rate_limit": {"rpm": 150, "burst": 10, "max_concurrency": 3, "tpm": 1000},
        "breaker": {"window": 30, "open_ms": 1000, "max_open_ms": 8000},
        "cost": {"per_image": {"default": 0.04}},
        "options": {"style_preset": "photographic"},
    }))
    .validate()
    .unwrap();
    assert_eq!(spec.to_draft().validate().unwrap(), spec);
}

#[test]
fn cost_picks_the_size_then_the_default() {
    let cost = CostTable {
        per_image: [("1024x1024".to_owned(), 0.04), ("default".to_owned(), 0.08)].into(),
        per_1k_input_tokens: 0.5,
        per_1k_output_tokens: 1.5,
    };
    assert_eq!(cost.image_price(Some("1024x1024")), 0.04);
    assert_eq!(cost.image_price(Some("1024x1792")), 0.08);
    assert_eq!(cost.image_price(None), 0.08);
    let total = cost.estimate(2, Some("1024x1024"), 2000, 1000);
    assert!((total - (0.08 + 1.0 + 1.5)).abs() < 1e-9, "{total}");
}

#[test]
fn stored_config_serializes_as_the_protocol_object_with_the_key_masked() {
    let spec = draft(serde_json::json!({
        "name": "stability-main", "provider": "stability", "api_key": "sk-0123456789abcdef",
    }))
    .validate()
    .unwrap();
    let config = ProviderConfig {
        id: ConfigId(7),
        spec,
        version: 3,
        created_at: DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
        updated_at: DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    };
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["id"], 7);
    assert_eq!(json["api_key"], "sk-…cdef");
    assert_eq!(json["provider"], "stability");
    assert_eq!(
        json["kinds"],
        serde_json::json!(["image.generate", "image.edit"])
    );
    assert_eq!(json["rate_limit"]["rpm"], 60);
    assert_eq!(json["version"], 3);
    assert!(!json.to_string().contains("0123456789"));
    // What a client reads back is a valid draft again (the masked key is left out).
    let mut read_back: ProviderConfigDraft = serde_json::from_value(json).unwrap();
    read_back.api_key = None;
    read_back.enabled = Some(false);
    assert!(read_back.validate().is_ok());
}
