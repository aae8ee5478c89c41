//! The `mock` provider of PROTOCOL.md §5: calls nothing outside the process. Images are
//! real PNGs of the requested size (capped at 2048×2048) whose pixels derive from the
//! SHA-256 of prompt and seed, so the same input gives the same bytes. Text derives the
//! same way and streams in several chunks. Options script failures and latency.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use sha2::{Digest, Sha256};
use switchyard_core::{Command, ErrorCode, Kind, MockOptions, ProviderConfig, ProviderType};

use super::{
    AdapterBuildError, AdapterOutput, AdapterRequest, AttemptError, BoxFuture, ImageOutput,
    ProviderAdapter,
};

/// Largest side of a mock image.
pub const MAX_SIDE: u32 = 2048;

/// The mock adapter of one config.
#[derive(Debug)]
pub struct MockAdapter {
    options: MockOptions,
    model: Option<String>,
    calls: AtomicU64,
}

impl MockAdapter {
    /// An adapter with the config's `options`.
    ///
    /// # Errors
    /// [`AdapterBuildError`] when the options are invalid.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, AdapterBuildError> {
        let options = MockOptions::from_options(&config.spec.options).map_err(|errors| {
            AdapterBuildError {
                provider: ProviderType::Mock,
                reason: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })?;
        Ok(Self::new(options, config.spec.model.clone()))
    }

    /// An adapter with explicit options.
    pub fn new(options: MockOptions, model: Option<String>) -> Self {
        Self {
            options,
            model,
            calls: AtomicU64::new(0),
        }
    }
}

impl ProviderAdapter for MockAdapter {
    fn provider_type(&self) -> ProviderType {
        ProviderType::Mock
    }

    fn generate(
        &self,
        request: AdapterRequest,
    ) -> BoxFuture<'static, Result<AdapterOutput, AttemptError>> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        // Test hook for supervision: panics here, inside the actor's handler.
        #[expect(
            clippy::panic,
            reason = "the mock's panic_first option scripts actor crashes"
        )]
        if call < self.options.panic_first {
            panic!("mock adapter panics on call {call} (panic_first)");
        }
        let options = self.options.clone();
        let model = self.model.clone();
        Box::pin(async move {
            let latency = options.latency_ms
                + if options.jitter_ms > 0 {
                    rand::random::<u64>() % (options.jitter_ms + 1)
                } else {
                    0
                };
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            let scripted_failure = call < options.fail_first
                || (options.failure_rate > 0.0 && rand::random::<f64>() < options.failure_rate);
            if scripted_failure {
                let mut error = AttemptError::new(
                    options.fail_with,
                    format!("mock failure ({}) on call {call}", options.fail_with),
                );
                if options.fail_with == ErrorCode::RateLimited {
                    error.retry_after_ms = Some(1_000);
                }
                return Err(error);
            }
            let command = &request.command;
            match command.kind {
                Kind::ImageGenerate | Kind::ImageEdit => images(command, model.as_deref()),
                Kind::TextGenerate => text(
                    command,
                    request.streaming().then_some(&request),
                    options.fail_after_chunks,
                )
                .map_err(|sent| {
                    AttemptError::new(
                        options.fail_with,
                        format!("mock stream cut off after {sent} chunks"),
                    )
                }),
            }
        })
    }

    fn health_check(&self) -> BoxFuture<'static, Result<(), AttemptError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Width and height for a size string: `WxH`, `1K`/`2K`/`4K`, default 1024×1024.
pub fn dimensions(size: Option<&str>) -> (u32, u32) {
    let parsed = match size {
        Some("1K") => Some((1024, 1024)),
        Some("2K") | Some("4K") => Some((2048, 2048)),
        Some(s) => s
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?))),
        None => None,
    };
    let (w, h) = parsed.unwrap_or((1024, 1024));
    (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE))
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn images(command: &Command, model: Option<&str>) -> Result<AdapterOutput, AttemptError> {
    let input = &command.input;
    let prompt = input.prompt.as_deref().unwrap_or("");
    let seed = input.seed.unwrap_or(0);
    let (width, height) = dimensions(input.size.as_deref());
    let mut out = Vec::new();
    for index in 0..command.image_count() {
        let hash = digest(&[prompt.as_bytes(), &seed.to_le_bytes(), &index.to_le_bytes()]);
        let bytes = png_bytes(width, height, &hash)
            .map_err(|e| AttemptError::new(ErrorCode::Internal, format!("mock png: {e}")))?;
        out.push(ImageOutput {
            bytes,
            seed: Some(seed),
            revised_prompt: None,
        });
    }
    Ok(AdapterOutput {
        raw: Some(serde_json::json!({"mock": true, "model": model, "images": out.len()})),
        images: out,
        ..AdapterOutput::default()
    })
}

/// A PNG whose pixels are a gradient seeded by `hash`.
pub fn png_bytes(width: u32, height: u32, hash: &[u8; 32]) -> Result<Vec<u8>, png::EncodingError> {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    let (w, h) = (width.max(1), height.max(1));
    for y in 0..height {
        for x in 0..width {
            let fx = (x * 255 / w) as u8;
            let fy = (y * 255 / h) as u8;
            data.push(hash[0] ^ fx.wrapping_mul(hash[1] | 1));
            data.push(hash[2] ^ fy.wrapping_mul(hash[3] | 1));
            data.push(hash[4] ^ fx.wrapping_add(fy).wrapping_mul(hash[5] | 1));
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&data)?;
    }
    Ok(bytes)
}

const WORDS: [&str; 16] = [
    "switch", "yard", "signal", "track", "engine", "route", "freight", "siding", "points",
    "junction", "platform", "lantern", "ballast", "gauge", "depot", "relay",
];

/// The text output; with `fail_after` and a stream, `Err(chunks sent)` after that many.
fn text(
    command: &Command,
    chunks: Option<&AdapterRequest>,
    fail_after: Option<u64>,
) -> Result<AdapterOutput, u64> {
    let input = &command.input;
    let messages = input.messages.as_deref().unwrap_or(&[]);
    let mut hasher_input = Vec::new();
    for m in messages {
        hasher_input.extend_from_slice(m.content.as_bytes());
        hasher_input.push(0);
    }
    let hash = digest(&[
        &hasher_input,
        input.system.as_deref().unwrap_or("").as_bytes(),
    ]);
    let wanted = input
        .max_tokens
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(12)
        .clamp(1, 64);
    let words: Vec<&str> = (0..wanted)
        .map(|i| WORDS[usize::from(hash[i % 32] % 16)])
        .collect();
    let full = words.join(" ");
    if let Some(sink) = chunks {
        // Several chunks: about four words each.
        for (i, piece) in words.chunks(4).enumerate() {
            if fail_after.is_some_and(|n| i as u64 >= n) {
                return Err(i as u64);
            }
            let mut delta = piece.join(" ");
            if i > 0 {
                delta.insert(0, ' ');
            }
            sink.chunk(delta);
        }
    }
    let input_chars: usize = messages.iter().map(|m| m.content.len()).sum();
    Ok(AdapterOutput {
        text: Some(full),
        input_tokens: (input_chars as u64).div_ceil(4),
        output_tokens: words.len() as u64,
        raw: Some(serde_json::json!({"mock": true, "words": words.len()})),
        ..AdapterOutput::default()
    })
}

/// The PNG the mock makes for image `index` of a prompt and seed (for tests).
pub fn png_for_test(prompt: &str, seed: i64, index: u32, width: u32, height: u32) -> Vec<u8> {
    let hash = digest(&[prompt.as_bytes(), &seed.to_le_bytes(), &index.to_le_bytes()]);
    png_bytes(width, height, &hash).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn command(json: serde_json::Value) -> Arc<Command> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    fn request(command: Arc<Command>) -> AdapterRequest {
        AdapterRequest::new(command)
    }

    #[tokio::test]
    async fn images_are_real_deterministic_pngs_of_the_requested_size() {
        let adapter = MockAdapter::new(MockOptions::default(), None);
        let c = command(
            serde_json::json!({"request_id": "r", "tenant": "t", "kind": "image.generate",
            "input": {"prompt": "a cat", "size": "64x32", "seed": 7, "n": 2}}),
        );
        let a = adapter.generate(request(c.clone())).await.unwrap();
        let b = adapter.generate(request(c)).await.unwrap();
        assert_eq!(a.images.len(), 2);
        assert_eq!(a, b, "same input, same bytes");
        assert_ne!(a.images[0].bytes, a.images[1].bytes);
        let meta = crate::image::describe(&a.images[0].bytes).unwrap();
        assert_eq!(
            (meta.mime.as_str(), meta.width, meta.height),
            ("image/png", 64, 32)
        );
        let other = command(
            serde_json::json!({"request_id": "r", "tenant": "t", "kind": "image.generate",
            "input": {"prompt": "a dog", "size": "64x32", "seed": 7}}),
        );
        let c2 = adapter.generate(request(other)).await.unwrap();
        assert_ne!(c2.images[0].bytes, a.images[0].bytes);
    }

    #[test]
    fn sizes_are_parsed_and_capped() {
        assert_eq!(dimensions(None), (1024, 1024));
        assert_eq!(dimensions(Some("2K")), (2048, 2048));
        assert_eq!(dimensions(Some("9000x10")), (2048, 10));
        assert_eq!(dimensions(Some("garbage")), (1024, 1024));
    }

    #[tokio::test]
    async fn text_streams_in_several_chunks_that_add_up() {
        let adapter = MockAdapter::new(MockOptions::default(), None);
        let c = command(
            serde_json::json!({"request_id": "r", "tenant": "t", "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "hello there"}], "stream": true}}),
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = adapter
            .generate(AdapterRequest {
                updates: Some(tx),
                ..AdapterRequest::new(c)
            })
            .await
            .unwrap();
        let mut streamed = String::new();
        let mut count = 0;
        while let Ok(crate::AdapterUpdate::Chunk(delta)) = rx.try_recv() {
            streamed.push_str(&delta);
            count += 1;
        }
        assert!(count >= 3, "{count} chunks");
        assert_eq!(Some(streamed), out.text);
        assert_eq!(out.output_tokens, 12);
        assert_eq!(out.input_tokens, 3);
    }

    #[tokio::test]
    async fn scripted_failures() {
        let adapter = MockAdapter::new(
            MockOptions {
                fail_first: 2,
                fail_with: ErrorCode::Timeout,
                ..MockOptions::default()
            },
            None,
        );
        let c = command(
            serde_json::json!({"request_id": "r", "tenant": "t", "kind": "text.generate",
            "input": {"messages": [{"role": "user", "content": "x"}]}}),
        );
        for _ in 0..2 {
            assert_eq!(
                adapter.generate(request(c.clone())).await.unwrap_err().code,
                ErrorCode::Timeout
            );
        }
        assert!(adapter.generate(request(c.clone())).await.is_ok());
        let always = MockAdapter::new(
            MockOptions {
                failure_rate: 1.0,
                ..MockOptions::default()
            },
            None,
        );
        assert_eq!(
            always.generate(request(c)).await.unwrap_err().code,
            ErrorCode::ProviderError
        );
    }
}
