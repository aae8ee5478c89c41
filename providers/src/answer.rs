//! A provider's answer as read, before its result URLs are downloaded.
//!
//! Every adapter reads an answer body in a pure function (bytes in, an [`Answer`] or an
//! [`AttemptError`] out) and only then does I/O: the download of the images the answer
//! names by URL. Keeping the reading pure makes every parser of a provider's JSON
//! reachable without a server, which is how they are fuzzed (issue #14), and it means an
//! answer that is malformed anywhere is refused before anything is downloaded.

use serde_json::Value;

use super::{AdapterOutput, AttemptError, ImageOutput, wire::Api};

/// Where an answer's image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageSource {
    /// The bytes came inline (base64 in the answer, already decoded).
    Inline(Vec<u8>),
    /// A result URL to download once.
    Url(String),
}

/// One image of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnswerImage {
    /// Its bytes or its URL.
    pub source: ImageSource,
    /// The seed used, if the provider reports one.
    pub seed: Option<i64>,
    /// The prompt as the provider rewrote it.
    pub revised_prompt: Option<String>,
}

impl AnswerImage {
    /// An image whose bytes came inline.
    pub fn inline(bytes: Vec<u8>) -> Self {
        Self {
            source: ImageSource::Inline(bytes),
            seed: None,
            revised_prompt: None,
        }
    }

    /// An image behind a result URL.
    pub fn url(url: String) -> Self {
        Self {
            source: ImageSource::Url(url),
            seed: None,
            revised_prompt: None,
        }
    }
}

/// An answer read and checked, its images not downloaded yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Answer {
    /// The images, in the answer's order.
    pub images: Vec<AnswerImage>,
    /// Text made.
    pub text: Option<String>,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// The provider's raw answer, scrubbed.
    pub raw: Option<Value>,
}

impl Answer {
    /// Downloads the images that came as URLs (once each, in order) and gives the output.
    pub async fn fetch(self, api: &Api) -> Result<AdapterOutput, AttemptError> {
        let mut images = Vec::with_capacity(self.images.len());
        for image in self.images {
            let bytes = match image.source {
                ImageSource::Inline(bytes) => bytes,
                ImageSource::Url(url) => api.download(&url).await?,
            };
            images.push(ImageOutput {
                bytes,
                seed: image.seed,
                revised_prompt: image.revised_prompt,
            });
        }
        Ok(AdapterOutput {
            images,
            text: self.text,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            raw: self.raw,
        })
    }
}
