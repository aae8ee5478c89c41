//! `echo`: answers a text request with `echo <version>: <last message>` (streamed in
//! two chunks when asked) and an image request with a 1×1 PNG. Used by the hot-swap
//! test (v1 and v2 are the same code with another version) and the overhead benchmark.

wit_bindgen::generate!({ path: "../../wit", world: "provider" });

use switchyard::provider::{
    host,
    types::{ErrorCode, Image, Kind},
};

const VERSION: &str = if cfg!(feature = "v2") {
    "2.0.0"
} else {
    "1.0.0"
};

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

struct Echo;

impl Guest for Echo {
    fn describe() -> Descriptor {
        Descriptor {
            name: "echo".into(),
            version: VERSION.into(),
            kinds: vec![Kind::ImageGenerate, Kind::TextGenerate],
            options_schema: "{}".into(),
        }
    }

    fn generate(request: Request) -> Result<Response, ProviderError> {
        match request.kind {
            Kind::TextGenerate => {
                let last = request
                    .messages
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                let text = format!("echo {VERSION}: {last}");
                if request.stream {
                    let (head, tail) = text.split_at(text.len() / 2);
                    host::emit_chunk(head);
                    host::emit_chunk(tail);
                }
                Ok(Response {
                    images: Vec::new(),
                    text: Some(text),
                    input_tokens: last.len() as u64,
                    output_tokens: 3,
                })
            }
            Kind::ImageGenerate => Ok(Response {
                images: (0..request.n.max(1))
                    .map(|_| Image {
                        bytes: PNG.to_vec(),
                        seed: request.seed,
                        revised_prompt: None,
                    })
                    .collect(),
                text: None,
                input_tokens: 0,
                output_tokens: 0,
            }),
            Kind::ImageEdit => Err(ProviderError {
                code: ErrorCode::InvalidRequest,
                message: "echo does not edit images".into(),
                retry_after_ms: None,
            }),
        }
    }

    fn health_check() -> Result<(), ProviderError> {
        Ok(())
    }
}

export!(Echo);
