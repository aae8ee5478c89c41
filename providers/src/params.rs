//! The keys of a command's `params` that the gateway sets itself and a tenant may not
//! override: they pick the model, the number and size of images, the token cap, the
//! prompt and streaming — what the bill and the quota are computed from — or the shape
//! of the answer the adapter parses. `params` carrying them are dropped (and logged);
//! docs/providers.md lists them.

use switchyard_core::ProviderType;

/// Reserved for every provider type.
pub const RESERVED: &[&str] = &[
    "model",
    "n",
    "size",
    "quality",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "system",
    "user",
    "response_format",
    "image",
    "mask",
];

/// Reserved besides [`RESERVED`] for one provider type: its own names for the same
/// settings.
pub fn reserved_for(provider: ProviderType) -> &'static [&'static str] {
    match provider {
        ProviderType::Gemini => &[
            "contents",
            "generationConfig",
            "instances",
            "parameters",
            "sampleCount",
            "candidateCount",
            "maxOutputTokens",
        ],
        ProviderType::Stability => &["samples", "text_prompts", "width", "height"],
        ProviderType::Ideogram => &["num_images", "image_request"],
        ProviderType::Seedream => &[
            "sequential_image_generation",
            "sequential_image_generation_options",
            "max_images",
        ],
        ProviderType::Aliyun => &["input", "parameters"],
        ProviderType::Anthropic => &["metadata"],
        _ => &[],
    }
}

/// Whether `key` may not be set through `params` for `provider`.
pub fn is_reserved(provider: ProviderType, key: &str) -> bool {
    RESERVED.contains(&key) || reserved_for(provider).contains(&key)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::AdapterRequest;

    #[test]
    fn params_cannot_override_what_the_gateway_sets() {
        let command = serde_json::from_value(json!({
            "request_id": "r", "tenant": "acme", "kind": "image.generate",
            "input": {"prompt": "a fox", "n": 1},
            "params": {"model": "the-expensive-one", "n": 10, "size": "4096x4096",
                       "quality": "hd", "style": "vivid",
                       "seedream": {"max_images": 15, "watermark": false},
                       "openai": {"max_tokens": 99999, "background": "transparent"}}
        }))
        .unwrap();
        let request = AdapterRequest::new(Arc::new(command));
        let openai = request.params_for(ProviderType::Openai);
        assert_eq!(
            serde_json::Value::Object(openai),
            json!({"style": "vivid", "background": "transparent"})
        );
        let seedream = request.params_for(ProviderType::Seedream);
        assert_eq!(
            serde_json::Value::Object(seedream),
            json!({"style": "vivid", "watermark": false})
        );
    }
}
