//! [`ApiKey`]: a secret that never shows itself in `Debug`, `Display`, serde output or
//! logs. Only [`ApiKey::expose`] gives the plaintext, for the one place that needs it
//! (the adapter's request, the encryption at rest).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A provider API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a plaintext key.
    pub fn new(plaintext: impl Into<String>) -> Self {
        Self(plaintext.into())
    }

    /// The plaintext. Call it only where the key is sent to its provider or encrypted.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form shown to operators: `sk-…abcd` (first three and last four
    /// characters) for keys of 12 characters or more, `…` alone for shorter ones.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// Whether this value is itself a masked key (as read back from the API), which
    /// must never be stored as if it were a real key.
    pub fn looks_masked(&self) -> bool {
        self.0.contains('…')
    }
}

/// Masks a secret string; see [`ApiKey::masked`].
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Serializes the **masked** form: API keys are write-only on every wire.
impl Serialize for ApiKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-0123456789abcdef";

    #[test]
    fn key_is_masked_everywhere_but_expose() {
        let key = ApiKey::new(KEY);
        assert_eq!(key.masked(), "sk-…cdef");
        assert!(!format!("{key:?}").contains("0123456789"));
        assert!(!format!("{key}").contains("0123456789"));
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"sk-…cdef\"");
        assert_eq!(key.expose(), KEY);
    }

    #[test]
    fn short_keys_show_nothing() {
        assert_eq!(ApiKey::new("abc").masked(), "…");
        assert_eq!(ApiKey::new("12345678901").masked(), "…");
    }

    #[test]
    fn masked_values_are_recognised() {
        assert!(ApiKey::new("sk-…cdef").looks_masked());
        assert!(!ApiKey::new(KEY).looks_masked());
    }
}
