//! The closed set of provider types and what each can do.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kind::Kind;

/// A provider type: which adapter speaks to the account.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProviderType {
    /// OpenAI: images (DALL·E, gpt-image-1) and chat.
    Openai,
    /// Anthropic messages.
    Anthropic,
    /// Google Gemini and Imagen.
    Gemini,
    /// Stability AI.
    Stability,
    /// Ideogram.
    Ideogram,
    /// Aliyun DashScope (async tasks).
    Aliyun,
    /// Volcengine Ark Doubao Seedream.
    Seedream,
    /// Any server speaking the OpenAI API (vLLM, Ollama, LocalAI).
    OpenaiCompatible,
    /// The in-process mock of PROTOCOL.md §5.
    Mock,
    /// A WASM plugin.
    Wasm,
}

impl ProviderType {
    /// Every type, in a stable order.
    pub const ALL: [ProviderType; 10] = [
        ProviderType::Openai,
        ProviderType::Anthropic,
        ProviderType::Gemini,
        ProviderType::Stability,
        ProviderType::Ideogram,
        ProviderType::Aliyun,
        ProviderType::Seedream,
        ProviderType::OpenaiCompatible,
        ProviderType::Mock,
        ProviderType::Wasm,
    ];

    /// The wire name, e.g. `openai_compatible`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Openai => "openai",
            ProviderType::Anthropic => "anthropic",
            ProviderType::Gemini => "gemini",
            ProviderType::Stability => "stability",
            ProviderType::Ideogram => "ideogram",
            ProviderType::Aliyun => "aliyun",
            ProviderType::Seedream => "seedream",
            ProviderType::OpenaiCompatible => "openai_compatible",
            ProviderType::Mock => "mock",
            ProviderType::Wasm => "wasm",
        }
    }

    /// The kinds this provider type can serve; a config's `kinds` default to these and
    /// may only narrow them.
    pub fn capable_kinds(self) -> &'static [Kind] {
        use Kind::*;
        match self {
            ProviderType::Openai
            | ProviderType::Gemini
            | ProviderType::OpenaiCompatible
            | ProviderType::Mock
            | ProviderType::Wasm => &[ImageGenerate, ImageEdit, TextGenerate],
            ProviderType::Anthropic => &[TextGenerate],
            ProviderType::Stability | ProviderType::Seedream => &[ImageGenerate, ImageEdit],
            ProviderType::Ideogram | ProviderType::Aliyun => &[ImageGenerate],
        }
    }

    /// Whether an enabled config of this type must carry an API key.
    pub fn requires_api_key(self) -> bool {
        !matches!(
            self,
            ProviderType::Mock | ProviderType::Wasm | ProviderType::OpenaiCompatible
        )
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderType {
    type Err = String;
    /// Parses a wire name; an unknown one gets a message with the closest known name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(found) = ProviderType::ALL.into_iter().find(|t| t.as_str() == s) {
            return Ok(found);
        }
        let closest = ProviderType::ALL
            .into_iter()
            .map(|t| (edit_distance(s, t.as_str()), t))
            .min_by_key(|(d, _)| *d);
        Err(match closest {
            Some((d, t)) if d <= 2 => {
                format!("unknown provider type '{s}' (did you mean '{t}'?)")
            }
            _ => format!("unknown provider type '{s}'"),
        })
    }
}

/// Levenshtein distance; names are short, so the quadratic version is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_suggest_the_closest_name() {
        assert_eq!(
            "stabilty".parse::<ProviderType>(),
            Err("unknown provider type 'stabilty' (did you mean 'stability'?)".to_owned())
        );
        assert_eq!(
            "midjourney".parse::<ProviderType>(),
            Err("unknown provider type 'midjourney'".to_owned())
        );
        for t in ProviderType::ALL {
            assert_eq!(t.as_str().parse::<ProviderType>(), Ok(t));
        }
    }
}
