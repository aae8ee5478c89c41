//! The field checks a draft's validation is made of: each reads one field, pushes a
//! [`FieldError`] naming its path for every problem, and returns the value to use.

use std::collections::BTreeSet;

use crate::{
    kind::Kind,
    provider::{
        limits::{BreakerDraft, BreakerSettings, RateLimit, RateLimitDraft},
        pricing::CostTable,
        provider_type::ProviderType,
        validate::FieldError,
    },
};

pub(super) fn merge_nested<T>(
    base: Option<T>,
    patch: Option<T>,
    merge: impl FnOnce(T, T) -> T,
) -> Option<T> {
    match (base, patch) {
        (Some(base), Some(patch)) => Some(merge(base, patch)),
        (base, patch) => patch.or(base),
    }
}

pub(super) fn check_name(name: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
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

pub(super) fn check_kinds(
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

pub(super) fn check_text(
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

pub(super) fn range(
    path: &str,
    value: i64,
    min: i64,
    max: i64,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
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

pub(super) fn fraction(path: &str, value: f64, errors: &mut Vec<FieldError>) -> f64 {
    if !(value > 0.0 && value <= 1.0) {
        errors.push(FieldError::new(
            path,
            format!("must be > 0 and <= 1, got {value}"),
        ));
    }
    value
}

pub(super) fn as_u32(value: Option<i64>, default: u32) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(default)
}

pub(super) fn as_u64(value: Option<i64>, default: u64) -> u64 {
    value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default)
}

pub(super) fn check_rate_limit(
    draft: Option<&RateLimitDraft>,
    errors: &mut Vec<FieldError>,
) -> RateLimit {
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

pub(super) fn check_breaker(
    draft: Option<&BreakerDraft>,
    errors: &mut Vec<FieldError>,
) -> BreakerSettings {
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

pub(super) fn check_cost(cost: &CostTable, errors: &mut Vec<FieldError>) {
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

pub(in crate::provider) fn is_http_url(url: &str) -> bool {
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

pub(super) fn is_plugin_ref(plugin: &str) -> bool {
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
