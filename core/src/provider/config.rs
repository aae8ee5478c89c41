//! The provider config object of PROTOCOL.md §6, in three stages:
//! [`ProviderConfigDraft`] (what the API, TOML seeds and database rows deserialize
//! into; every field optional), [`ProviderSpec`] (what [`ProviderConfigDraft::validate`]
//! accepts; every default filled in) and [`ProviderConfig`] (a stored spec with the
//! server-assigned `id`, `version` and times).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::{Map, Value};

use super::{
    provider_type::ProviderType,
    secret::ApiKey,
    validate::{FieldError, ValidationError},
};
use crate::{ids::ConfigId, kind::Kind, protocol::ErrorCode};

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

/// `rate_limit` as written: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDraft {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<i64>,
    /// Requests allowed at once above the steady rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<i64>,
    /// Calls in flight at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    /// Tokens per minute (text), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<i64>,
}

/// `breaker` as written: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerDraft {
    /// Sliding window size, in calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Calls in the window before rates are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_calls: Option<i64>,
    /// Failure rate (0–1] that opens the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Consecutive failures that open the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i64>,
    /// A call slower than this many ms is slow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_ms: Option<i64>,
    /// Slow-call rate (0–1] that opens the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate: Option<f64>,
    /// How long the breaker stays open on its first trip, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_ms: Option<i64>,
    /// Cap of the open time as it doubles on repeated trips, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_ms: Option<i64>,
    /// Probe calls let through when half-open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_calls: Option<i64>,
}

/// Validated rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per minute (> 0).
    pub rpm: u32,
    /// Requests allowed at once above the steady rate (> 0).
    pub burst: u32,
    /// Calls in flight at most (> 0).
    pub max_concurrency: u32,
    /// Tokens per minute, if limited.
    pub tpm: Option<u32>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            rpm: 60,
            burst: 10,
            max_concurrency: 8,
            tpm: None,
        }
    }
}

/// Validated circuit-breaker settings (resilience4j semantics, PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BreakerSettings {
    /// Sliding window size, in calls.
    pub window: u32,
    /// Calls in the window before rates are judged.
    pub min_calls: u32,
    /// Failure rate (0–1] that opens the breaker.
    pub failure_rate: f64,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// A call slower than this many ms counts as slow.
    pub slow_call_ms: u64,
    /// Slow-call rate (0–1] that opens the breaker.
    pub slow_call_rate: f64,
    /// How long the breaker stays open on its first trip, in ms.
    pub open_ms: u64,
    /// Cap of the open time, which doubles on each repeated trip, in ms.
    pub max_open_ms: u64,
    /// Probe calls let through when half-open.
    pub half_open_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 5,
            failure_rate: 0.5,
            consecutive_failures: 5,
            slow_call_ms: 30_000,
            slow_call_rate: 1.0,
            open_ms: 30_000,
            max_open_ms: 300_000,
            half_open_calls: 1,
        }
    }
}

/// The cost table: per image by size (with a `default` entry), per 1k tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostTable {
    /// USD per image, keyed by size (`1024x1024`) or `default`.
    #[serde(default)]
    pub per_image: BTreeMap<String, f64>,
    /// USD per 1,000 input tokens.
    #[serde(default)]
    pub per_1k_input_tokens: f64,
    /// USD per 1,000 output tokens.
    #[serde(default)]
    pub per_1k_output_tokens: f64,
}

impl CostTable {
    /// No prices at all: the config gives none, so the model's defaults apply.
    pub fn is_empty(&self) -> bool {
        self.per_image.is_empty()
            && self.per_1k_input_tokens == 0.0
            && self.per_1k_output_tokens == 0.0
    }

    /// The price of one image of `size`: the size's own entry, else `default`, else 0.
    pub fn image_price(&self, size: Option<&str>) -> f64 {
        size.and_then(|s| self.per_image.get(s))
            .or_else(|| self.per_image.get("default"))
            .copied()
            .unwrap_or(0.0)
    }

    /// Estimated cost of a result.
    pub fn estimate(
        &self,
        images: u32,
        size: Option<&str>,
        input_tokens: u64,
        output_tokens: u64,
    ) -> f64 {
        f64::from(images) * self.image_price(size)
            + input_tokens as f64 / 1000.0 * self.per_1k_input_tokens
            + output_tokens as f64 / 1000.0 * self.per_1k_output_tokens
    }
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
        match (&self.api_key, provider) {
            (Some(key), _) if key.looks_masked() => errors.push(FieldError::new(
                "api_key",
                "is a masked value; send the real key or leave the field out",
            )),
            (Some(key), _) if key.expose().trim().is_empty() => {
                errors.push(FieldError::new("api_key", "must not be empty"));
            }
            (None, Some(t)) if enabled && t.requires_api_key() => errors.push(FieldError::new(
                "api_key",
                format!("is required for provider type '{t}' when enabled"),
            )),
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
            description: self.description.clone(),
            ..ProviderConfigDraft::default()
        }
    }

    /// Whether this instance serves `kind`.
    pub fn serves(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

fn merge_nested<T>(base: Option<T>, patch: Option<T>, merge: impl FnOnce(T, T) -> T) -> Option<T> {
    match (base, patch) {
        (Some(base), Some(patch)) => Some(merge(base, patch)),
        (base, patch) => patch.or(base),
    }
}

fn check_name(name: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(name) = name else {
        errors.push(FieldError::new("name", "is required"));
        return None;
    };
    let problem = if name.is_empty() || name.chars().count() > 64 {
        Some("must be 1–64 characters".to_owned())
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(format!(
            "may only contain A-Z, a-z, 0-9, '_', '-' and '.', found {bad:?}"
        ))
    } else if name.chars().all(|c| c.is_ascii_digit()) {
        Some("must not be all digits (it would read as an id)".to_owned())
    } else {
        None
    };
    match problem {
        Some(message) => {
            errors.push(FieldError::new("name", message));
            None
        }
        None => Some(name.to_owned()),
    }
}

fn check_kinds(
    kinds: Option<&[String]>,
    provider: Option<ProviderType>,
    errors: &mut Vec<FieldError>,
) -> BTreeSet<Kind> {
    let capable: &[Kind] = provider.map_or(&Kind::ALL, ProviderType::capable_kinds);
    let Some(kinds) = kinds else {
        return capable.iter().copied().collect();
    };
    if kinds.is_empty() {
        errors.push(FieldError::new("kinds", "must name at least one kind"));
    }
    let mut out = BTreeSet::new();
    for (i, raw) in kinds.iter().enumerate() {
        match raw.parse::<Kind>() {
            Err(e) => errors.push(FieldError::new(format!("kinds[{i}]"), e.to_string())),
            Ok(kind) if !capable.contains(&kind) => errors.push(FieldError::new(
                format!("kinds[{i}]"),
                format!(
                    "provider type '{}' cannot serve '{kind}'",
                    provider.map_or("?", ProviderType::as_str)
                ),
            )),
            Ok(kind) => {
                out.insert(kind);
            }
        }
    }
    out
}

fn check_text(
    path: &str,
    value: Option<&str>,
    max_chars: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = value?;
    if value.trim().is_empty() {
        errors.push(FieldError::new(path, "must not be empty when given"));
    } else if value.chars().count() > max_chars {
        errors.push(FieldError::new(
            path,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Some(value.to_owned())
}

fn range(path: &str, value: i64, min: i64, max: i64, errors: &mut Vec<FieldError>) -> Option<i64> {
    if value < min {
        let message = if min == 1 {
            "must be > 0".to_owned()
        } else {
            format!("must be >= {min}, got {value}")
        };
        errors.push(FieldError::new(path, message));
        None
    } else if value > max {
        errors.push(FieldError::new(
            path,
            format!("must be <= {max}, got {value}"),
        ));
        None
    } else {
        Some(value)
    }
}

fn fraction(path: &str, value: f64, errors: &mut Vec<FieldError>) -> f64 {
    if !(value > 0.0 && value <= 1.0) {
        errors.push(FieldError::new(
            path,
            format!("must be > 0 and <= 1, got {value}"),
        ));
    }
    value
}

fn as_u32(value: Option<i64>, default: u32) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(default)
}

fn as_u64(value: Option<i64>, default: u64) -> u64 {
    value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default)
}

fn check_rate_limit(draft: Option<&RateLimitDraft>, errors: &mut Vec<FieldError>) -> RateLimit {
    let defaults = RateLimit::default();
    let Some(draft) = draft else {
        return defaults;
    };
    let rpm = draft
        .rpm
        .and_then(|v| range("rate_limit.rpm", v, 1, 1_000_000, errors));
    let burst = draft
        .burst
        .and_then(|v| range("rate_limit.burst", v, 1, 100_000, errors));
    let max_concurrency = draft
        .max_concurrency
        .and_then(|v| range("rate_limit.max_concurrency", v, 1, 100_000, errors));
    let tpm = draft
        .tpm
        .and_then(|v| range("rate_limit.tpm", v, 1, 1_000_000_000, errors));
    RateLimit {
        rpm: as_u32(rpm, defaults.rpm),
        burst: as_u32(burst, defaults.burst),
        max_concurrency: as_u32(max_concurrency, defaults.max_concurrency),
        tpm: tpm.and_then(|v| u32::try_from(v).ok()),
    }
}

fn check_breaker(draft: Option<&BreakerDraft>, errors: &mut Vec<FieldError>) -> BreakerSettings {
    let d = BreakerSettings::default();
    let Some(draft) = draft else {
        return d;
    };
    let window = as_u32(
        draft
            .window
            .and_then(|v| range("breaker.window", v, 1, 10_000, errors)),
        d.window,
    );
    let min_calls = as_u32(
        draft
            .min_calls
            .and_then(|v| range("breaker.min_calls", v, 1, i64::from(window), errors)),
        d.min_calls.min(window),
    );
    let open_ms = as_u64(
        draft
            .open_ms
            .and_then(|v| range("breaker.open_ms", v, 1, 86_400_000, errors)),
        d.open_ms,
    );
    let max_open_ms = as_u64(
        draft.max_open_ms.and_then(|v| {
            range(
                "breaker.max_open_ms",
                v,
                i64::try_from(open_ms).unwrap_or(1),
                86_400_000,
                errors,
            )
        }),
        d.max_open_ms.max(open_ms),
    );
    BreakerSettings {
        window,
        min_calls,
        failure_rate: draft.failure_rate.map_or(d.failure_rate, |v| {
            fraction("breaker.failure_rate", v, errors)
        }),
        consecutive_failures: as_u32(
            draft
                .consecutive_failures
                .and_then(|v| range("breaker.consecutive_failures", v, 1, 10_000, errors)),
            d.consecutive_failures,
        ),
        slow_call_ms: as_u64(
            draft
                .slow_call_ms
                .and_then(|v| range("breaker.slow_call_ms", v, 1, 3_600_000, errors)),
            d.slow_call_ms,
        ),
        slow_call_rate: draft.slow_call_rate.map_or(d.slow_call_rate, |v| {
            fraction("breaker.slow_call_rate", v, errors)
        }),
        open_ms,
        max_open_ms,
        half_open_calls: as_u32(
            draft
                .half_open_calls
                .and_then(|v| range("breaker.half_open_calls", v, 1, 1_000, errors)),
            d.half_open_calls,
        ),
    }
}

fn check_cost(cost: &CostTable, errors: &mut Vec<FieldError>) {
    let mut check = |path: String, value: f64| {
        if !value.is_finite() || value < 0.0 {
            errors.push(FieldError::new(path, format!("must be >= 0, got {value}")));
        }
    };
    for (size, price) in &cost.per_image {
        check(format!("cost.per_image.{size}"), *price);
    }
    check(
        "cost.per_1k_input_tokens".to_owned(),
        cost.per_1k_input_tokens,
    );
    check(
        "cost.per_1k_output_tokens".to_owned(),
        cost.per_1k_output_tokens,
    );
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn is_plugin_ref(plugin: &str) -> bool {
    let (name, version) = match plugin.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (plugin, None),
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    valid_name && version.is_none_or(|v| !v.is_empty() && !v.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests;
