//! One chat message and who speaks it. The wire form of its content (a string or a
//! list of parts) is in [`super::parts`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parts::{self, ContentPart};

/// One chat message. On the wire its `content` is a string or a list of content
/// parts ([`ContentPart`]); either way `content` here is its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "parts::WireMessage", into = "parts::WireMessage")]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// The text (of a list of parts: its text parts, joined).
    pub content: String,
    /// The content parts, when the content was a list of them.
    pub parts: Option<Vec<ContentPart>>,
}

impl Message {
    /// A text message.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            parts: None,
        }
    }
}

/// Who speaks in a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
}
