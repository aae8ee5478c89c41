//! The entry points of the fuzz targets (issue #14): every parser of a provider's
//! answer, reached without a server. Not an API for anything else (hidden from the docs).
//!
//! - [`answer_holds`]: one adapter's reader of a whole JSON answer (the pure functions
//!   each adapter calls before it downloads anything);
//! - [`classify_holds`]: the reading of an error answer (status, `retry-after`, the
//!   provider's error body) onto the taxonomy;
//! - [`stream_holds`]: the streamed answers, as the adapters read them: bytes in
//!   arbitrary chunks through reqwest's body and the SSE parser into the adapter's loop.
//!
//! Each returns `Err` with a description when a property that holds for any input is
//! broken (a panic is a finding of its own): an accepted image answer has an image, an
//! accepted text answer has text, the chunks of a stream add up to its text, and no
//! error message carries the account's key. [`answer_bytes_hold`], [`error_bytes_hold`]
//! and [`stream_bytes_hold`] are one fuzz input through them: the `provider_answer`,
//! `provider_error` and `provider_stream` targets of `fuzz/` (cargo-fuzz) and the
//! proptest smoke tests in `fuzzing/tests.rs` call the same functions.

use std::sync::Arc;

use futures_util::FutureExt as _;
use reqwest::{StatusCode, header::HeaderMap};
use switchyard_core::{ApiKey, Command, CommandInput, Kind, ProviderType, RequestId, Tenant};

use super::{
    AdapterOutput, AdapterRequest, AdapterUpdate, AttemptError, aliyun,
    answer::Answer,
    anthropic, gemini, ideogram, openai, seedream, stability,
    wire::{Api, Refine},
};

/// The key of every fuzzed account: no error message may carry it.
pub const FUZZ_KEY: &str = "sk-fuzz-0123456789abcdef";

/// A reader of a whole (not streamed) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerReader {
    /// OpenAI images (generations, edits, variations).
    OpenAiImages,
    /// OpenAI chat completion.
    OpenAiChat,
    /// Anthropic Messages.
    AnthropicMessage,
    /// Gemini `generateContent` for text.
    GeminiText,
    /// Gemini `generateContent` for images.
    GeminiImages,
    /// Imagen `:predict`.
    GeminiPredict,
    /// Stability v1 engines.
    StabilityV1,
    /// Stability v2beta (one image per call).
    StabilityV2,
    /// Ideogram v3 generate.
    Ideogram,
    /// Ark (Seedream) images generations.
    Seedream,
    /// DashScope task submit.
    AliyunSubmit,
    /// DashScope task poll.
    AliyunTask,
}

impl AnswerReader {
    /// Every reader.
    pub const ALL: [Self; 12] = [
        Self::OpenAiImages,
        Self::OpenAiChat,
        Self::AnthropicMessage,
        Self::GeminiText,
        Self::GeminiImages,
        Self::GeminiPredict,
        Self::StabilityV1,
        Self::StabilityV2,
        Self::Ideogram,
        Self::Seedream,
        Self::AliyunSubmit,
        Self::AliyunTask,
    ];

    /// The provider whose answers it reads.
    pub fn provider(self) -> ProviderType {
        match self {
            Self::OpenAiImages | Self::OpenAiChat => ProviderType::Openai,
            Self::AnthropicMessage => ProviderType::Anthropic,
            Self::GeminiText | Self::GeminiImages | Self::GeminiPredict => ProviderType::Gemini,
            Self::StabilityV1 | Self::StabilityV2 => ProviderType::Stability,
            Self::Ideogram => ProviderType::Ideogram,
            Self::Seedream => ProviderType::Seedream,
            Self::AliyunSubmit | Self::AliyunTask => ProviderType::Aliyun,
        }
    }
}

/// A reader of a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamReader {
    /// OpenAI (and OpenAI-compatible) chat completions: `data:` chunks, `[DONE]`.
    OpenAiChat,
    /// Anthropic Messages: named events, `message_stop`.
    AnthropicMessages,
    /// Gemini `streamGenerateContent?alt=sse`: chunks until a `finishReason`.
    GeminiText,
}

impl StreamReader {
    /// Every reader.
    pub const ALL: [Self; 3] = [Self::OpenAiChat, Self::AnthropicMessages, Self::GeminiText];
}

/// The provider types whose error answers [`classify_holds`] reads.
pub const ERROR_PROVIDERS: [ProviderType; 7] = [
    ProviderType::Openai,
    ProviderType::Anthropic,
    ProviderType::Gemini,
    ProviderType::Stability,
    ProviderType::Ideogram,
    ProviderType::Seedream,
    ProviderType::Aliyun,
];

fn refine_of(provider: ProviderType) -> Refine {
    match provider {
        ProviderType::Anthropic => anthropic::refine,
        ProviderType::Gemini => gemini::refine,
        ProviderType::Stability => stability::refine,
        ProviderType::Ideogram => ideogram::refine,
        ProviderType::Seedream => seedream::refine,
        ProviderType::Aliyun => aliyun::refine,
        _ => openai::refine,
    }
}

/// The account every fuzzed answer comes from (nothing is ever sent to it).
fn account(provider: ProviderType) -> Api {
    Api::new(
        provider,
        Some("https://fuzz.invalid"),
        "",
        Some(ApiKey::new(FUZZ_KEY)),
        refine_of(provider),
    )
}

/// `Ok(false)`: a refusal that does not carry the key.
fn keyless(error: &AttemptError) -> Result<bool, String> {
    if error.message.contains(FUZZ_KEY) {
        return Err(format!("an error carries the key: {}", error.message));
    }
    Ok(false)
}

/// Reads `body` with `reader` and checks what holds for any answer: `Ok(true)` when
/// the answer is accepted, `Ok(false)` when it is refused.
///
/// # Errors
/// A description of the broken property.
pub fn answer_holds(reader: AnswerReader, body: &[u8]) -> Result<bool, String> {
    let api = account(reader.provider());
    let answer = match reader {
        AnswerReader::OpenAiImages => openai::read_images(&api, body),
        AnswerReader::OpenAiChat => openai::read_chat(&api, body),
        AnswerReader::AnthropicMessage => anthropic::read_message(&api, body),
        AnswerReader::GeminiText => gemini::read_generate(&api, Kind::TextGenerate, body),
        AnswerReader::GeminiImages => gemini::read_generate(&api, Kind::ImageGenerate, body),
        AnswerReader::GeminiPredict => gemini::read_predict(&api, body),
        AnswerReader::StabilityV1 => stability::read_v1(&api, body),
        AnswerReader::StabilityV2 => stability::read_v2(&api, body).and_then(|(image, raw)| {
            let filtered = usize::from(image.is_none());
            stability::finish(&api, image.into_iter().collect(), filtered, raw)
        }),
        AnswerReader::Ideogram => ideogram::read_generate(&api, body),
        AnswerReader::Seedream => seedream::read_generate(&api, body),
        AnswerReader::AliyunSubmit => {
            return match aliyun::read_submitted(&api, body) {
                Ok(_) => Ok(true),
                Err(error) => keyless(&error),
            };
        }
        AnswerReader::AliyunTask => match aliyun::read_task(&api, "t-1", body) {
            Ok(aliyun::TaskState::Running(fraction)) if !(0.0..=1.0).contains(&fraction) => {
                return Err(format!("a running task is {fraction} along"));
            }
            Ok(aliyun::TaskState::Running(_)) => return Ok(true),
            Ok(aliyun::TaskState::Succeeded(answer)) => Ok(answer),
            Err(error) => Err(error),
        },
    };
    match answer {
        Ok(answer) => answer_is_whole(reader, &answer),
        Err(error) => keyless(&error),
    }
}

fn answer_is_whole(reader: AnswerReader, answer: &Answer) -> Result<bool, String> {
    let text_reader = matches!(
        reader,
        AnswerReader::OpenAiChat | AnswerReader::AnthropicMessage | AnswerReader::GeminiText
    );
    if text_reader && answer.text.is_none() {
        return Err(format!("{reader:?} accepted an answer without text"));
    }
    if !text_reader && answer.images.is_empty() {
        return Err(format!("{reader:?} accepted an answer without images"));
    }
    Ok(true)
}

/// Reads an error answer of `provider` (status, `retry-after`, body) and checks that
/// the error never carries the account's key (always `Ok(false)` then: a refusal).
///
/// # Errors
/// A description of the broken property.
pub fn classify_holds(
    provider: ProviderType,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<bool, String> {
    let api = account(provider);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
        headers.insert("retry-after", value);
    }
    let error = api.classify(status, &headers, body);
    keyless(&error)
}

/// Reads a streamed answer arriving in `chunks` with `reader` and checks what holds
/// for any stream: an accepted one's chunks add up to its text, and no error carries
/// the account's key. `Ok(true)` when the stream is accepted.
///
/// # Errors
/// A description of the broken property.
pub async fn stream_holds(reader: StreamReader, chunks: Vec<Vec<u8>>) -> Result<bool, String> {
    let (provider, result, updates) = read_stream(reader, chunks).await?;
    let streamed: String = updates
        .into_iter()
        .filter_map(|u| match u {
            AdapterUpdate::Chunk(text) => Some(text),
            AdapterUpdate::Progress(_) => None,
        })
        .collect();
    match result {
        Ok(output) if output.text.as_deref() != Some(&streamed) => Err(format!(
            "{provider} streamed {streamed:?} but answered {:?}",
            output.text
        )),
        Ok(_) => Ok(true),
        Err(error) => keyless(&error),
    }
}

/// [`stream_holds`] run to its end at once: an in-memory stream never waits.
///
/// # Errors
/// A description of the broken property, or that the stream waited.
pub fn stream_holds_now(reader: StreamReader, chunks: Vec<Vec<u8>>) -> Result<bool, String> {
    stream_holds(reader, chunks)
        .now_or_never()
        .unwrap_or_else(|| Err("an in-memory stream waited".to_owned()))
}

type StreamRun = (
    ProviderType,
    Result<AdapterOutput, AttemptError>,
    Vec<AdapterUpdate>,
);

async fn read_stream(reader: StreamReader, chunks: Vec<Vec<u8>>) -> Result<StreamRun, String> {
    let provider = match reader {
        StreamReader::OpenAiChat => ProviderType::Openai,
        StreamReader::AnthropicMessages => ProviderType::Anthropic,
        StreamReader::GeminiText => ProviderType::Gemini,
    };
    let api = account(provider);
    let input = CommandInput {
        stream: Some(true),
        ..CommandInput::default()
    };
    let command = Command::new(
        RequestId::new("fuzz").map_err(|e| e.to_string())?,
        Tenant::new("fuzz").map_err(|e| e.to_string())?,
        Kind::TextGenerate,
        input,
    );
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut request = AdapterRequest::new(Arc::new(command));
    request.updates = Some(sender);
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ));
    let response = reqwest::Response::from(http::Response::new(body));
    let result = match reader {
        StreamReader::OpenAiChat => openai::chat_stream(&api, response, &request).await,
        StreamReader::AnthropicMessages => anthropic::stream(&api, response, &request).await,
        StreamReader::GeminiText => gemini::stream(&api, response, &request).await,
    };
    drop(request);
    let mut updates = Vec::new();
    while let Ok(update) = receiver.try_recv() {
        updates.push(update);
    }
    Ok((provider, result, updates))
}

/// A fuzz input as an answer: its first byte picks the reader, the rest is the body.
pub fn answer_input(data: &[u8]) -> Option<(AnswerReader, &[u8])> {
    let (&pick, body) = data.split_first()?;
    Some((
        AnswerReader::ALL[usize::from(pick) % AnswerReader::ALL.len()],
        body,
    ))
}

/// A fuzz input as an error answer: its first byte picks the provider, the next two
/// the status (100–999), and a first line the `retry-after` value; the rest is the body.
pub fn error_input(data: &[u8]) -> Option<(ProviderType, u16, Option<&str>, &[u8])> {
    let [pick, high, low, rest @ ..] = data else {
        return None;
    };
    let provider = ERROR_PROVIDERS[usize::from(*pick) % ERROR_PROVIDERS.len()];
    let status = 100 + u16::from_be_bytes([*high, *low]) % 900;
    let (retry_after, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (std::str::from_utf8(&rest[..at]).ok(), &rest[at + 1..]),
        None => (None, rest),
    };
    Some((provider, status, retry_after, body))
}

/// A fuzz input as a stream: its first byte picks the reader, the second the chunk
/// length (1–256 bytes, so chunks split lines and UTF-8 sequences anywhere); the rest is
/// the stream.
pub fn stream_input(data: &[u8]) -> Option<(StreamReader, Vec<Vec<u8>>)> {
    let [pick, size, body @ ..] = data else {
        return None;
    };
    let reader = StreamReader::ALL[usize::from(*pick) % StreamReader::ALL.len()];
    let chunks = body
        .chunks(usize::from(*size) + 1)
        .map(<[u8]>::to_vec)
        .collect();
    Some((reader, chunks))
}

/// One fuzz input, split by [`answer_input`], through [`answer_holds`] (an empty input
/// holds).
///
/// # Errors
/// A description of the broken property.
pub fn answer_bytes_hold(data: &[u8]) -> Result<(), String> {
    match answer_input(data) {
        Some((reader, body)) => answer_holds(reader, body).map(drop),
        None => Ok(()),
    }
}

/// One fuzz input, split by [`error_input`], through [`classify_holds`] (an input too
/// short to split holds).
///
/// # Errors
/// A description of the broken property.
pub fn error_bytes_hold(data: &[u8]) -> Result<(), String> {
    match error_input(data) {
        Some((provider, status, retry_after, body)) => {
            classify_holds(provider, status, retry_after, body).map(drop)
        }
        None => Ok(()),
    }
}

/// One fuzz input, split by [`stream_input`], through [`stream_holds_now`] (an input
/// too short to split holds).
///
/// # Errors
/// A description of the broken property.
pub fn stream_bytes_hold(data: &[u8]) -> Result<(), String> {
    match stream_input(data) {
        Some((reader, chunks)) => stream_holds_now(reader, chunks).map(drop),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
