//! Identifier newtypes, so that ids never travel between modules as bare strings.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a string is not a valid subject-token identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("must not be empty")]
    Empty,
    /// The string was longer than 64 characters.
    #[error("must be at most 64 characters, got {0}")]
    TooLong(usize),
    /// The string held a character outside `[A-Za-z0-9_-]`.
    #[error("may only contain A-Z, a-z, 0-9, '_' and '-', found {0:?}")]
    BadChar(char),
}

/// Checks the PROTOCOL.md rule for `tenant` and `request_id`: `[A-Za-z0-9_-]{1,64}`,
/// so that each is a single NATS subject token.
pub fn check_subject_token(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    let len = value.chars().count();
    if len > 64 {
        return Err(IdError::TooLong(len));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(bad) => Err(IdError::BadChar(bad)),
        None => Ok(()),
    }
}

macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Wraps `value` after checking it is a valid subject token.
            ///
            /// # Errors
            /// [`IdError`] when `value` is not `[A-Za-z0-9_-]{1,64}`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_subject_token(&value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_-]{1,64}$",
                    "description": "One NATS subject token: 1–64 of A-Z, a-z, 0-9, '_' and '-'."
                })
            }
        }
    };
}

token_newtype!(
    /// A client-chosen request id: the idempotency key together with the tenant.
    RequestId
);
token_newtype!(
    /// Who pays and whose quota is used; scopes the event subjects.
    Tenant
);

/// The database id of one provider config (one account of one provider).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    JsonSchema,
)]
#[serde(transparent)]
pub struct ConfigId(pub i64);

impl fmt::Display for ConfigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_follow_the_protocol_rule() {
        assert!(RequestId::new("01JD3Q7W9M2ZB8T4X6K0C5N1RA").is_ok());
        assert!(Tenant::new("acme_co-1").is_ok());
        assert_eq!(Tenant::new(""), Err(IdError::Empty));
        assert_eq!(Tenant::new("a.b"), Err(IdError::BadChar('.')));
        assert_eq!(Tenant::new("a b"), Err(IdError::BadChar(' ')));
        assert_eq!(RequestId::new("x".repeat(65)), Err(IdError::TooLong(65)));
        assert!(RequestId::new("x".repeat(64)).is_ok());
    }

    #[test]
    fn tokens_reject_bad_values_when_deserialized() {
        let err = serde_json::from_str::<Tenant>("\"acme.*\"").unwrap_err();
        assert!(err.to_string().contains("may only contain"), "{err}");
    }
}
