//! A chat message's content in each provider's own format (#18 §4): OpenAI takes the
//! content parts as they are; Anthropic takes content blocks (`text`, `image` from a
//! URL or base64, `document` for a PDF); Gemini takes `parts` (`text`, `inline_data`
//! for base64 media, `file_data` for a URL). A text-only message stays a string (or one
//! text part), byte for byte what was sent before parts existed.
//!
//! No adapter fetches a URL here: a URL part goes to the provider as a URL.

use serde_json::{Value, json};
use switchyard_core::{ContentPart, Message, data_url};

/// Which kind of part a provider cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsupported(pub(crate) &'static str);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this provider takes no {} in chat messages", self.0)
    }
}

/// OpenAI's `content`: the string, or the parts as they came.
pub(crate) fn openai_content(message: &Message) -> Value {
    match &message.parts {
        None => Value::String(message.content.clone()),
        Some(parts) => serde_json::to_value(parts).unwrap_or(Value::Null),
    }
}

/// Anthropic's `content`: the string, or content blocks.
pub(crate) fn anthropic_content(message: &Message) -> Result<Value, Unsupported> {
    let Some(parts) = &message.parts else {
        return Ok(Value::String(message.content.clone()));
    };
    let blocks = parts
        .iter()
        .map(|part| match part {
            ContentPart::Text { text } => Ok(json!({"type": "text", "text": text})),
            ContentPart::ImageUrl { image_url } => Ok(match data_url(&image_url.url) {
                Some((mime, data)) => json!({"type": "image", "source":
                    {"type": "base64", "media_type": mime, "data": data}}),
                None => json!({"type": "image", "source": {"type": "url", "url": image_url.url}}),
            }),
            ContentPart::File { file } => {
                let (mime, data) = inline(file.file_data.as_deref().unwrap_or_default());
                Ok(json!({"type": "document", "source":
                    {"type": "base64", "media_type": mime, "data": data}}))
            }
            ContentPart::InputAudio { .. } => Err(Unsupported("audio")),
            ContentPart::VideoUrl { .. } => Err(Unsupported("video")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(blocks))
}

/// Gemini's `parts` of one message.
pub(crate) fn gemini_parts(message: &Message) -> Vec<Value> {
    let Some(parts) = &message.parts else {
        return vec![json!({"text": message.content})];
    };
    parts
        .iter()
        .map(|part| match part {
            ContentPart::Text { text } => json!({"text": text}),
            ContentPart::ImageUrl { image_url: media }
            | ContentPart::VideoUrl { video_url: media } => match data_url(&media.url) {
                Some((mime, data)) => json!({"inline_data": {"mime_type": mime, "data": data}}),
                None => json!({"file_data": {"mime_type": mime_of_url(&media.url, part),
                                                 "file_uri": media.url}}),
            },
            ContentPart::InputAudio { input_audio } => json!({"inline_data": {
                "mime_type": format!("audio/{}", input_audio.format), "data": input_audio.data}}),
            ContentPart::File { file } => {
                let (mime, data) = inline(file.file_data.as_deref().unwrap_or_default());
                json!({"inline_data": {"mime_type": mime, "data": data}})
            }
        })
        .collect()
}

/// A file's mime type and base64: from a `data:` URL, or plain base64 (a PDF).
fn inline(file_data: &str) -> (&str, &str) {
    data_url(file_data).unwrap_or(("application/pdf", file_data))
}

/// A URL's media type by its extension (Gemini's `file_data` needs one).
fn mime_of_url(url: &str, part: &ContentPart) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let by_extension = [
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".webp", "image/webp"),
        (".gif", "image/gif"),
        (".mp4", "video/mp4"),
        (".webm", "video/webm"),
        (".mov", "video/quicktime"),
    ];
    by_extension
        .iter()
        .find(|(ext, _)| path.ends_with(ext))
        .map(|(_, mime)| *mime)
        .unwrap_or(match part {
            ContentPart::VideoUrl { .. } => "video/mp4",
            _ => "image/jpeg",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: Value) -> Message {
        serde_json::from_value(json!({"role": "user", "content": content})).unwrap()
    }

    fn mixed() -> Message {
        message(json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}},
        ]))
    }

    #[test]
    fn text_stays_a_string_everywhere() {
        let text = message(json!("hello"));
        assert_eq!(openai_content(&text), json!("hello"));
        assert_eq!(anthropic_content(&text).unwrap(), json!("hello"));
        assert_eq!(gemini_parts(&text), vec![json!({"text": "hello"})]);
    }

    #[test]
    fn openai_gets_the_parts_as_sent() {
        let sent = mixed();
        assert_eq!(
            openai_content(&sent),
            serde_json::to_value(sent.parts.as_ref().unwrap()).unwrap()
        );
        assert_eq!(
            openai_content(&sent)[1]["image_url"]["url"],
            "https://example.com/a.png"
        );
    }

    #[test]
    fn anthropic_gets_image_and_document_blocks() {
        let blocks = anthropic_content(&mixed()).unwrap();
        assert_eq!(
            blocks,
            json!([
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            ])
        );
        let audio = message(
            json!([{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]),
        );
        assert_eq!(anthropic_content(&audio), Err(Unsupported("audio")));
    }

    #[test]
    fn gemini_gets_inline_and_file_data() {
        let parts = gemini_parts(&mixed());
        assert_eq!(
            parts,
            vec![
                json!({"text": "what is this?"}),
                json!({"file_data": {"mime_type": "image/png", "file_uri": "https://example.com/a.png"}}),
                json!({"inline_data": {"mime_type": "image/jpeg", "data": "AAAA"}}),
                json!({"inline_data": {"mime_type": "application/pdf", "data": "JVBE"}}),
            ]
        );
        let audio = message(
            json!([{"type": "input_audio", "input_audio": {"data": "UklG", "format": "mp3"}}]),
        );
        assert_eq!(
            gemini_parts(&audio),
            vec![json!({"inline_data": {"mime_type": "audio/mp3", "data": "UklG"}})]
        );
    }
}
