//! Multimodal chat content (#18 §4): a message's `content` is a string, or a list of
//! OpenAI-style content parts (`text`, `image_url`, `input_audio`, `file`, and
//! `video_url` beside them). [`Message::content`] always holds the text (the text parts
//! joined), so everything that reads only text keeps reading it; the parts stay for the
//! adapters, which send them in their provider's own format.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::{Message, Role};

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image: an `https` URL or a `data:image/…;base64,` URL.
    ImageUrl {
        /// Where it is.
        image_url: MediaUrl,
    },
    /// Audio, inline.
    InputAudio {
        /// The audio.
        input_audio: InputAudio,
    },
    /// A file (a PDF, say), inline as a `data:` URL or plain base64.
    File {
        /// The file.
        file: FileData,
    },
    /// A video: an `https` URL or a `data:video/…;base64,` URL.
    VideoUrl {
        /// Where it is.
        video_url: MediaUrl,
    },
}

/// A URL of an image or a video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MediaUrl {
    /// `https://…` or `data:<mime>;base64,<data>`.
    pub url: String,
    /// OpenAI's `detail` (`auto`, `low`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Inline audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InputAudio {
    /// Base64 bytes.
    pub data: String,
    /// `wav` or `mp3`.
    pub format: String,
}

/// An inline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileData {
    /// `data:<mime>;base64,<data>`, or base64 (then a PDF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// What a request carries besides text, for routing by `supports`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Images.
    pub images: bool,
    /// Files.
    pub files: bool,
    /// Audio.
    pub audio: bool,
    /// Video.
    pub video: bool,
}

impl Carried {
    /// What `messages` carry.
    pub fn by(messages: &[Message]) -> Self {
        let mut carried = Self::default();
        for part in messages.iter().flat_map(|m| m.parts.iter().flatten()) {
            match part {
                ContentPart::Text { .. } => {}
                ContentPart::ImageUrl { .. } => carried.images = true,
                ContentPart::InputAudio { .. } => carried.audio = true,
                ContentPart::File { .. } => carried.files = true,
                ContentPart::VideoUrl { .. } => carried.video = true,
            }
        }
        carried
    }

    /// Whether it is text only.
    pub fn is_text(self) -> bool {
        self == Self::default()
    }
}

/// A `data:` URL's mime type and base64 payload.
pub fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let mime = head.strip_suffix(";base64")?;
    Some((mime, data))
}

/// The problems of a message's parts, each as (field, why).
pub(super) fn check_parts(index: usize, parts: &[ContentPart], bad: &mut impl FnMut(&str, String)) {
    for (p, part) in parts.iter().enumerate() {
        let at = format!("input.messages[{index}].content[{p}]");
        let url_ok = |url: &str, family: &str| {
            url.starts_with("https://")
                || url.starts_with("http://")
                || data_url(url)
                    .is_some_and(|(mime, data)| mime.starts_with(family) && !data.is_empty())
        };
        match part {
            ContentPart::Text { .. } => {}
            ContentPart::ImageUrl { image_url } if !url_ok(&image_url.url, "image/") => bad(
                &format!("{at}.image_url.url"),
                "must be an http(s) URL or a data:image/…;base64, URL".to_owned(),
            ),
            ContentPart::VideoUrl { video_url } if !url_ok(&video_url.url, "video/") => bad(
                &format!("{at}.video_url.url"),
                "must be an http(s) URL or a data:video/…;base64, URL".to_owned(),
            ),
            ContentPart::InputAudio { input_audio } => {
                if input_audio.data.is_empty() {
                    bad(&format!("{at}.input_audio.data"), "is empty".to_owned());
                }
                if !matches!(input_audio.format.as_str(), "wav" | "mp3") {
                    bad(
                        &format!("{at}.input_audio.format"),
                        format!("must be wav or mp3, got '{}'", input_audio.format),
                    );
                }
            }
            ContentPart::File { file } if file.file_data.as_deref().is_none_or(str::is_empty) => {
                bad(&format!("{at}.file.file_data"), "is required".to_owned());
            }
            _ => {}
        }
    }
}

/// A message as it is on the wire: `content` a string or a list of parts.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Message")]
pub(super) struct WireMessage {
    /// `system`, `user` or `assistant`.
    role: Role,
    /// The text, or a list of content parts (OpenAI's shape).
    content: WireContent,
}

/// A message's content on the wire.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
enum WireContent {
    /// Text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

impl From<WireMessage> for Message {
    fn from(wire: WireMessage) -> Self {
        match wire.content {
            WireContent::Text(content) => Message {
                role: wire.role,
                content,
                parts: None,
            },
            WireContent::Parts(parts) => Message {
                role: wire.role,
                content: parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect(),
                parts: Some(parts),
            },
        }
    }
}

impl From<Message> for WireMessage {
    fn from(message: Message) -> Self {
        Self {
            role: message.role,
            content: match message.parts {
                Some(parts) => WireContent::Parts(parts),
                None => WireContent::Text(message.content),
            },
        }
    }
}

impl JsonSchema for Message {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Message")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        WireMessage::json_schema(generator)
    }
}
