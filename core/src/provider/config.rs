//! The provider config object of PROTOCOL.md §6, in three stages:
//! [`ProviderConfigDraft`] (what the API, TOML seeds and database rows deserialize
//! into; every field optional), [`ProviderSpec`] (what [`ProviderConfigDraft::validate`]
//! accepts; every default filled in) and [`ProviderConfig`] (a stored spec with the
//! server-assigned `id`, `version` and times).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::{Map, Value};

use super::{
    auth::ProviderAuth,
    limits::{BreakerDraft, BreakerSettings, RateLimit, RateLimitDraft},
    presets::Presets,
    pricing::CostTable,
    provider_type::ProviderType,
    secret::ApiKey,
    validate::{FieldError, ValidationError},
};
use crate::{ids::ConfigId, kind::Kind, protocol::ErrorCode};

mod checks;

pub(super) use checks::is_http_url;
use checks::{
    check_breaker, check_cost, check_kinds, check_name, check_rate_limit, check_text,
    is_plugin_ref, merge_nested, range,
};

/// A provider config as written by an operator: every field optional.
///
/// Server-assigned fields (`id`, `version`, `created_at`, `updated_at`) are accepted so
/// that an object read from the API can be sent back, and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfigDraft {
    /// Unique name, e.g. `stability-main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Provider type, e.g. `stability`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Kinds served; default: all the type can do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    /// Model name sent to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// API base URL; default: the provider's public endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The account's key (write-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKey>,
    /// How the account authenticates; default: its `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ProviderAuth>,
    /// The tenant whose own account this is (bring your own key): it serves only that
    /// tenant's requests. None: a shared account of the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether the instance serves requests (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Higher first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Tie-breaker and `weighted` share (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDraft>,
    /// Circuit breaker settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerDraft>,
    /// Per-call timeout in ms (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// Cost table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostTable>,
    /// Multimodal input flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports: Option<Supports>,
    /// The WASM plugin, for `provider = "wasm"`: `name` or `name@version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Type-specific settings (for `mock`, PROTOCOL.md §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Presets: values filled in for the fields a request leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Presets>,
    /// Models to try, in order, when a request that names this config's model fails
    /// retryably on every instance of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_models: Option<Vec<String>>,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Server-assigned; ignored on write.
    #[serde(default, skip_serializing)]
    pub id: Option<IgnoredAny>,
    /// Server-assigned; ignored on write.
    #[serde(default, skip_serializing)]
    pub version: Option<IgnoredAny>,
    /// Server-assigned; ignored on write.
    #[serde(default, skip_serializing)]
    pub created_at: Option<IgnoredAny>,
    /// Server-assigned; ignored on write.
    #[serde(default, skip_serializing)]
    pub updated_at: Option<IgnoredAny>,
}

/// Multimodal input flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Supports {
    /// Accepts input images.
    pub images: bool,
    /// Accepts files.
    pub files: bool,
    /// Accepts audio.
    pub audio: bool,
    /// Accepts video.
    pub video: bool,
}

/// Options of the `mock` provider type (PROTOCOL.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockOptions {
    /// Latency of every call, in ms.
    pub latency_ms: u64,
    /// Random extra latency up to this many ms.
    pub jitter_ms: u64,
    /// Fraction of calls (0–1) that fail.
    pub failure_rate: f64,
    /// The code failures carry.
    pub fail_with: ErrorCode,
    /// Fail the first N calls.
    pub fail_first: u64,
    /// Test hook for supervision: the first N calls panic inside the provider actor.
    pub panic_first: u64,
    /// Streamed text: fail (with `fail_with`) after sending this many chunks.
    pub fail_after_chunks: Option<u64>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            failure_rate: 0.0,
            fail_with: ErrorCode::ProviderError,
            fail_first: 0,
            panic_first: 0,
            fail_after_chunks: None,
        }
    }
}

impl MockOptions {
    /// Reads mock options from a config's `options` object.
    ///
    /// # Errors
    /// Field errors under `options.` for unknown keys or bad values.
    pub fn from_options(options: &Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let parsed: MockOptions = serde_json::from_value(Value::Object(options.clone()))
            .map_err(|e| vec![FieldError::new("options", e.to_string())])?;
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&parsed.failure_rate) {
            errors.push(FieldError::new(
                "options.failure_rate",
                format!("must be 0–1, got {}", parsed.failure_rate),
            ));
        }
        if parsed.latency_ms > 600_000 {
            errors.push(FieldError::new(
                "options.latency_ms",
                "must be at most 600000",
            ));
        }
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(errors)
        }
    }
}

/// A validated provider config, not yet stored. Only [`ProviderConfigDraft::validate`]
/// builds one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProviderSpec {
    /// Unique name.
    pub name: String,
    /// Provider type.
    pub provider: ProviderType,
    /// Kinds served (never empty, all within the type's capabilities).
    pub kinds: BTreeSet<Kind>,
    /// Model name.
    pub model: Option<String>,
    /// API base URL.
    pub base_url: Option<String>,
    /// The key; serializes masked.
    pub api_key: Option<ApiKey>,
    /// How the account authenticates (shown only when it is not the `api_key`).
    #[serde(skip_serializing_if = "ProviderAuth::is_api_key")]
    pub auth: ProviderAuth,
    /// The tenant whose own account this is; None for a shared account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether the instance serves requests.
    pub enabled: bool,
    /// Higher first.
    pub priority: i32,
    /// Tie-breaker and weighted share.
    pub weight: u32,
    /// Rate limits.
    pub rate_limit: RateLimit,
    /// Breaker settings.
    pub breaker: BreakerSettings,
    /// Per-call timeout in ms.
    pub timeout_ms: u64,
    /// Cost table: the config's own, or the model's defaults
    /// ([`super::pricing::default_cost`]) when it gives none.
    pub cost: CostTable,
    /// Whether `cost` holds the model's defaults (stored as "not set", so a new model
    /// brings its own prices).
    #[serde(skip)]
    pub cost_is_default: bool,
    /// Multimodal flags.
    pub supports: Supports,
    /// WASM plugin reference.
    pub plugin: Option<String>,
    /// Type-specific settings.
    pub options: Map<String, Value>,
    /// Presets filled in for the fields a request leaves out (shown when set).
    #[serde(skip_serializing_if = "Presets::is_empty")]
    pub defaults: Presets,
    /// Models tried next when a request for this config's model fails retryably on
    /// every instance of it (shown when set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallback_models: Vec<String>,
    /// Free text.
    pub description: Option<String>,
}

/// A stored provider config: the spec plus server-assigned fields. Serializes to the
/// §6 object with the key masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderConfig {
    /// Database id.
    pub id: ConfigId,
    /// The validated settings.
    #[serde(flatten)]
    pub spec: ProviderSpec,
    /// Bumped on every write.
    pub version: i64,
    /// When the row was made.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

impl ProviderConfigDraft {
    /// A draft with only the two required fields.
    pub fn new(name: impl Into<String>, provider: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            provider: Some(provider.into()),
            ..Self::default()
        }
    }

    /// This draft with every field that `patch` sets replaced by the patch's value;
    /// `rate_limit` and `breaker` merge field by field.
    pub fn overlay(self, patch: ProviderConfigDraft) -> ProviderConfigDraft {
        ProviderConfigDraft {
            name: patch.name.or(self.name),
            provider: patch.provider.or(self.provider),
            kinds: patch.kinds.or(self.kinds),
            model: patch.model.or(self.model),
            base_url: patch.base_url.or(self.base_url),
            api_key: patch.api_key.or(self.api_key),
            auth: match patch.auth {
                Some(auth) => Some(auth.keep_masked_from(self.auth.as_ref())),
                None => self.auth,
            },
            owner: patch.owner.or(self.owner),
            enabled: patch.enabled.or(self.enabled),
            priority: patch.priority.or(self.priority),
            weight: patch.weight.or(self.weight),
            rate_limit: merge_nested(self.rate_limit, patch.rate_limit, |base, p| {
                RateLimitDraft {
                    rpm: p.rpm.or(base.rpm),
                    burst: p.burst.or(base.burst),
                    max_concurrency: p.max_concurrency.or(base.max_concurrency),
                    tpm: p.tpm.or(base.tpm),
                }
            }),
            breaker: merge_nested(self.breaker, patch.breaker, |base, p| BreakerDraft {
                window: p.window.or(base.window),
                min_calls: p.min_calls.or(base.min_calls),
                failure_rate: p.failure_rate.or(base.failure_rate),
                consecutive_failures: p.consecutive_failures.or(base.consecutive_failures),
                slow_call_ms: p.slow_call_ms.or(base.slow_call_ms),
                slow_call_rate: p.slow_call_rate.or(base.slow_call_rate),
                open_ms: p.open_ms.or(base.open_ms),
                max_open_ms: p.max_open_ms.or(base.max_open_ms),
                half_open_calls: p.half_open_calls.or(base.half_open_calls),
            }),
            timeout_ms: patch.timeout_ms.or(self.timeout_ms),
            cost: patch.cost.or(self.cost),
            supports: patch.supports.or(self.supports),
            plugin: patch.plugin.or(self.plugin),
            options: patch.options.or(self.options),
            defaults: patch.defaults.or(self.defaults),
            fallback_models: patch.fallback_models.or(self.fallback_models),
            description: patch.description.or(self.description),
            id: None,
            version: None,
            created_at: None,
            updated_at: None,
        }
    }

    /// Checks every field, fills in defaults, and collects every problem.
    ///
    /// # Errors
    /// [`ValidationError`] with one [`FieldError`] per bad field.
    pub fn validate(&self) -> Result<ProviderSpec, ValidationError> {
        let mut errors = Vec::new();
        let name = check_name(self.name.as_deref(), &mut errors);
        let provider = match self.provider.as_deref() {
            None => {
                errors.push(FieldError::new("provider", "is required"));
                None
            }
            Some(raw) => match raw.parse::<ProviderType>() {
                Ok(t) => Some(t),
                Err(message) => {
                    errors.push(FieldError::new("provider", message));
                    None
                }
            },
        };
        let kinds = check_kinds(self.kinds.as_deref(), provider, &mut errors);
        let model = check_text("model", self.model.as_deref(), 200, &mut errors);
        if let Some(url) = &self.base_url
            && !is_http_url(url)
        {
            errors.push(FieldError::new(
                "base_url",
                format!("'{url}' is not an http:// or https:// URL"),
            ));
        }
        let enabled = self.enabled.unwrap_or(true);
        let auth = self.auth.clone().unwrap_or(ProviderAuth::ApiKey);
        auth.check(provider, self.api_key.is_some(), &mut errors);
        let owner = self.owner.as_deref().and_then(|owner| {
            crate::ids::Tenant::new(owner)
                .map_err(|e| errors.push(FieldError::new("owner", e.to_string())))
                .ok()
                .map(|t| t.as_str().to_owned())
        });
        match (&self.api_key, provider) {
            (Some(key), _) if key.looks_masked() => errors.push(FieldError::new(
                "api_key",
                "is a masked value; send the real key or leave the field out",
            )),
            (Some(key), _) if key.expose().trim().is_empty() => {
                errors.push(FieldError::new("api_key", "must not be empty"));
            }
            (None, Some(t)) if enabled && t.requires_api_key() && auth.oauth2().is_none() => {
                errors.push(FieldError::new(
                    "api_key",
                    format!("is required for provider type '{t}' when enabled"),
                ));
            }
            _ => {}
        }
        let priority = range(
            "priority",
            self.priority.unwrap_or(0),
            -1_000_000,
            1_000_000,
            &mut errors,
        )
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(0);
        let weight = range(
            "weight",
            self.weight.unwrap_or(1),
            0,
            1_000_000,
            &mut errors,
        )
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(1);
        let rate_limit = check_rate_limit(self.rate_limit.as_ref(), &mut errors);
        let breaker = check_breaker(self.breaker.as_ref(), &mut errors);
        let timeout_ms = range(
            "timeout_ms",
            self.timeout_ms.unwrap_or(60_000),
            1,
            3_600_000,
            &mut errors,
        )
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(60_000);
        let given = self.cost.clone().filter(|c| !c.is_empty());
        if let Some(cost) = &given {
            check_cost(cost, &mut errors);
        }
        let supports = self.supports.unwrap_or(Supports {
            images: kinds.contains(&Kind::ImageEdit),
            ..Supports::default()
        });
        match (provider, &self.plugin) {
            (Some(ProviderType::Wasm), None) => errors.push(FieldError::new(
                "plugin",
                "is required when provider is 'wasm'",
            )),
            (Some(ProviderType::Wasm), Some(plugin)) if !is_plugin_ref(plugin) => {
                errors.push(FieldError::new(
                    "plugin",
                    format!("'{plugin}' is not 'name' or 'name@version'"),
                ))
            }
            (Some(t), Some(_)) if t != ProviderType::Wasm => errors.push(FieldError::new(
                "plugin",
                "is only valid when provider is 'wasm'",
            )),
            _ => {}
        }
        let options = self.options.clone().unwrap_or_default();
        if provider == Some(ProviderType::Mock)
            && let Err(option_errors) = MockOptions::from_options(&options)
        {
            errors.extend(option_errors);
        }
        let defaults = self.defaults.clone().unwrap_or_default();
        defaults.check(&mut errors);
        let fallback_models = self.fallback_models.clone().unwrap_or_default();
        if fallback_models.len() > crate::protocol::MAX_MODELS {
            errors.push(FieldError::new(
                "fallback_models",
                format!("at most {} models", crate::protocol::MAX_MODELS),
            ));
        }
        for (i, m) in fallback_models.iter().enumerate() {
            if m.trim().is_empty() || m.len() > 200 {
                errors.push(FieldError::new(
                    format!("fallback_models[{i}]"),
                    "must be 1–200 characters",
                ));
            } else if model.as_deref() == Some(m.as_str()) {
                errors.push(FieldError::new(
                    format!("fallback_models[{i}]"),
                    "is this config's own model",
                ));
            }
        }
        let description = check_text(
            "description",
            self.description.as_deref(),
            2000,
            &mut errors,
        );

        ValidationError::from_errors(errors)?;
        let (Some(name), Some(provider)) = (name, provider) else {
            // Unreachable: a missing name or provider pushed a field error above.
            return Err(ValidationError::single("name", "is required"));
        };
        let cost_is_default = given.is_none();
        let cost =
            given.unwrap_or_else(|| super::pricing::default_cost(provider, model.as_deref()));
        Ok(ProviderSpec {
            cost_is_default,
            name,
            provider,
            kinds,
            model,
            base_url: self.base_url.clone(),
            api_key: self.api_key.clone(),
            auth,
            owner,
            enabled,
            priority,
            weight,
            rate_limit,
            breaker,
            timeout_ms,
            cost,
            supports,
            plugin: self.plugin.clone(),
            options,
            defaults,
            fallback_models,
            description,
        })
    }
}

impl ProviderSpec {
    /// The spec as a draft, so a patch can be laid over it and validated again.
    pub fn to_draft(&self) -> ProviderConfigDraft {
        ProviderConfigDraft {
            name: Some(self.name.clone()),
            provider: Some(self.provider.as_str().to_owned()),
            kinds: Some(self.kinds.iter().map(|k| k.as_str().to_owned()).collect()),
            model: self.model.clone(),
            base_url: self.base_url.clone(),
            api_key: self.api_key.clone(),
            auth: self.auth.oauth2().is_some().then(|| self.auth.clone()),
            owner: self.owner.clone(),
            enabled: Some(self.enabled),
            priority: Some(i64::from(self.priority)),
            weight: Some(i64::from(self.weight)),
            rate_limit: Some(RateLimitDraft {
                rpm: Some(i64::from(self.rate_limit.rpm)),
                burst: Some(i64::from(self.rate_limit.burst)),
                max_concurrency: Some(i64::from(self.rate_limit.max_concurrency)),
                tpm: self.rate_limit.tpm.map(i64::from),
            }),
            breaker: Some(BreakerDraft {
                window: Some(i64::from(self.breaker.window)),
                min_calls: Some(i64::from(self.breaker.min_calls)),
                failure_rate: Some(self.breaker.failure_rate),
                consecutive_failures: Some(i64::from(self.breaker.consecutive_failures)),
                slow_call_ms: i64::try_from(self.breaker.slow_call_ms).ok(),
                slow_call_rate: Some(self.breaker.slow_call_rate),
                open_ms: i64::try_from(self.breaker.open_ms).ok(),
                max_open_ms: i64::try_from(self.breaker.max_open_ms).ok(),
                half_open_calls: Some(i64::from(self.breaker.half_open_calls)),
            }),
            timeout_ms: i64::try_from(self.timeout_ms).ok(),
            cost: (!self.cost_is_default).then(|| self.cost.clone()),
            supports: Some(self.supports),
            plugin: self.plugin.clone(),
            options: Some(self.options.clone()),
            defaults: (!self.defaults.is_empty()).then(|| self.defaults.clone()),
            fallback_models: (!self.fallback_models.is_empty())
                .then(|| self.fallback_models.clone()),
            description: self.description.clone(),
            ..ProviderConfigDraft::default()
        }
    }

    /// Whether this instance serves `kind`.
    pub fn serves(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}
#[cfg(test)]
mod tests;
