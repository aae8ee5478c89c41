//! The capability kinds a command asks for and a provider config serves.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a command asks for; also the `<kind>` token of `switchyard.cmd.<kind>`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Kind {
    /// Text to image.
    #[serde(rename = "image.generate")]
    ImageGenerate,
    /// Image to image: edits, inpainting, variations.
    #[serde(rename = "image.edit")]
    ImageEdit,
    /// Chat / text completion.
    #[serde(rename = "text.generate")]
    TextGenerate,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 3] = [Kind::ImageGenerate, Kind::ImageEdit, Kind::TextGenerate];

    /// The wire name, e.g. `image.generate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ImageGenerate => "image.generate",
            Kind::ImageEdit => "image.edit",
            Kind::TextGenerate => "text.generate",
        }
    }

    /// Whether the kind produces images.
    pub fn is_image(self) -> bool {
        matches!(self, Kind::ImageGenerate | Kind::ImageEdit)
    }
}

/// A string that is not one of the known kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind '{0}' (expected image.generate, image.edit or text.generate)")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_strings_and_json() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), kind);
        }
        assert!("image.gen".parse::<Kind>().is_err());
    }
}
