//! Default prices per model, used when a config gives no `cost`: list prices in USD as
//! published by each provider (2025). Contracts differ; operators set `cost` to their
//! own prices, and an explicit table always wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::provider_type::ProviderType;

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

/// How one model is billed.
#[derive(Debug, Clone, Copy)]
enum Price {
    /// Per image, by size (`WxH`), with the first entry also the default.
    Images(&'static [(&'static str, f64)]),
    /// Per 1,000 input and output tokens.
    Tokens(f64, f64),
}

/// `(provider, model prefix, price)`; the longest matching prefix wins.
const TABLE: &[(ProviderType, &str, Price)] = {
    use Price::*;
    use ProviderType::*;
    &[
        (
            Openai,
            "dall-e-3",
            Images(&[
                ("1024x1024", 0.04),
                ("1024x1792", 0.08),
                ("1792x1024", 0.08),
            ]),
        ),
        (
            Openai,
            "dall-e-2",
            Images(&[("1024x1024", 0.02), ("512x512", 0.018), ("256x256", 0.016)]),
        ),
        (Openai, "gpt-image-1", Tokens(0.005, 0.04)),
        (Openai, "gpt-image-1-mini", Tokens(0.002, 0.008)),
        (Openai, "gpt-4o", Tokens(0.0025, 0.01)),
        (Openai, "gpt-4o-mini", Tokens(0.000_15, 0.0006)),
        (Openai, "gpt-4.1", Tokens(0.002, 0.008)),
        (Openai, "gpt-4.1-mini", Tokens(0.0004, 0.0016)),
        (Anthropic, "claude-sonnet-4", Tokens(0.003, 0.015)),
        (Anthropic, "claude-opus-4", Tokens(0.015, 0.075)),
        (Anthropic, "claude-haiku-4", Tokens(0.001, 0.005)),
        (Anthropic, "claude-3-5-haiku", Tokens(0.0008, 0.004)),
        (Gemini, "gemini-2.5-flash", Tokens(0.0003, 0.0025)),
        (Gemini, "gemini-2.5-pro", Tokens(0.001_25, 0.01)),
        // Image output is billed as tokens: 1,290 per 1024² image ≈ $0.039.
        (Gemini, "gemini-2.5-flash-image", Tokens(0.0003, 0.03)),
        (Gemini, "imagen-4.0-generate", Images(&[("default", 0.04)])),
        (Gemini, "imagen-4.0-ultra", Images(&[("default", 0.06)])),
        (Gemini, "imagen-4.0-fast", Images(&[("default", 0.02)])),
        (Gemini, "imagen-3.0", Images(&[("default", 0.03)])),
        (Stability, "core", Images(&[("default", 0.03)])),
        (Stability, "ultra", Images(&[("default", 0.08)])),
        (Stability, "sd3.5-large", Images(&[("default", 0.065)])),
        (Stability, "sd3.5-large-turbo", Images(&[("default", 0.04)])),
        (Stability, "sd3.5-medium", Images(&[("default", 0.035)])),
        (Stability, "stable-diffusion", Images(&[("default", 0.01)])),
        (Ideogram, "", Images(&[("default", 0.06)])),
        (Seedream, "", Images(&[("default", 0.03)])),
        (Aliyun, "wan2.2-t2i-flash", Images(&[("default", 0.02)])),
        (Aliyun, "wan2.2-t2i-plus", Images(&[("default", 0.028)])),
        (Aliyun, "wanx2.1-t2i-turbo", Images(&[("default", 0.02)])),
        (Aliyun, "wanx2.1-t2i-plus", Images(&[("default", 0.028)])),
        (Aliyun, "wan2.5-t2i", Images(&[("default", 0.028)])),
    ]
};

/// The model each type uses when a config names none (as the adapters do).
fn default_model(provider: ProviderType) -> &'static str {
    match provider {
        ProviderType::Openai => "dall-e-3",
        ProviderType::Anthropic => "claude-sonnet-4-5-20250929",
        ProviderType::Gemini => "gemini-2.5-flash-image",
        ProviderType::Stability => "core",
        ProviderType::Seedream => "doubao-seedream-4-0-250828",
        ProviderType::Aliyun => "wan2.2-t2i-flash",
        ProviderType::Ideogram
        | ProviderType::OpenaiCompatible
        | ProviderType::Mock
        | ProviderType::Wasm => "",
    }
}

/// The default cost table for a provider type and model (empty when unknown, e.g.
/// `mock`, self-hosted `openai_compatible` servers and plugins).
pub fn default_cost(provider: ProviderType, model: Option<&str>) -> CostTable {
    let model = model.unwrap_or_else(|| default_model(provider));
    let best = TABLE
        .iter()
        .filter(|(p, prefix, _)| *p == provider && model.starts_with(prefix))
        .max_by_key(|(_, prefix, _)| prefix.len());
    match best {
        None => CostTable::default(),
        Some((_, _, Price::Tokens(input, output))) => CostTable {
            per_image: BTreeMap::new(),
            per_1k_input_tokens: *input,
            per_1k_output_tokens: *output,
        },
        Some((_, _, Price::Images(sizes))) => {
            let mut per_image: BTreeMap<String, f64> =
                sizes.iter().map(|(s, p)| ((*s).to_owned(), *p)).collect();
            if let Some((_, first)) = sizes.first() {
                per_image.entry("default".to_owned()).or_insert(*first);
            }
            CostTable {
                per_image,
                per_1k_input_tokens: 0.0,
                per_1k_output_tokens: 0.0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dall_e_3_prices_by_size() {
        let cost = default_cost(ProviderType::Openai, Some("dall-e-3"));
        assert_eq!(cost.image_price(Some("1024x1024")), 0.04);
        assert_eq!(cost.image_price(Some("1024x1792")), 0.08);
        assert_eq!(cost.image_price(None), 0.04);
        // No model: the adapter's default, dall-e-3.
        assert_eq!(default_cost(ProviderType::Openai, None), cost);
    }

    #[test]
    fn the_longest_prefix_wins_and_unknown_models_cost_nothing() {
        let mini = default_cost(ProviderType::Openai, Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(mini.per_1k_input_tokens, 0.000_15);
        let image = default_cost(ProviderType::Gemini, Some("gemini-2.5-flash-image"));
        assert_eq!(image.per_1k_output_tokens, 0.03);
        let sonnet = default_cost(ProviderType::Anthropic, Some("claude-sonnet-4-5-20250929"));
        assert_eq!(sonnet.estimate(0, None, 1000, 1000), 0.018);
        assert!(default_cost(ProviderType::Mock, None).is_empty());
        assert!(default_cost(ProviderType::Openai, Some("my-finetune")).is_empty());
    }
}

#[cfg(test)]
mod config_tests {
    use crate::{CostTable, ProviderConfigDraft};

    #[test]
    fn a_config_without_cost_follows_its_model_and_an_explicit_cost_wins() {
        let mut draft = ProviderConfigDraft::new("oa", "openai");
        draft.api_key = Some(crate::ApiKey::new("sk-x"));
        draft.model = Some("dall-e-2".into());
        let spec = draft.validate().unwrap();
        assert!(spec.cost_is_default);
        assert_eq!(spec.cost.image_price(Some("256x256")), 0.016);
        // A patch that changes the model brings the new model's prices.
        let patched = spec
            .to_draft()
            .overlay(ProviderConfigDraft {
                model: Some("dall-e-3".into()),
                ..ProviderConfigDraft::default()
            })
            .validate()
            .unwrap();
        assert_eq!(patched.cost.image_price(Some("1024x1792")), 0.08);
        // An explicit table is kept, also through a patch.
        let mut explicit = CostTable::default();
        explicit.per_image.insert("default".into(), 0.01);
        let priced = patched
            .to_draft()
            .overlay(ProviderConfigDraft {
                cost: Some(explicit.clone()),
                ..ProviderConfigDraft::default()
            })
            .validate()
            .unwrap();
        assert!(!priced.cost_is_default);
        let again = priced.to_draft().validate().unwrap();
        assert_eq!(again.cost, explicit);
    }
}
