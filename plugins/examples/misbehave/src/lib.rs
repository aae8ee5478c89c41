//! A plugin that misbehaves on purpose, for the sandbox tests. `options.mode`:
//! - `loop`: never returns;
//! - `memory`: allocates until it is stopped;
//! - `offlist`: calls `options.url`, a host not on its allowlist;
//! - `trap`: hits `unreachable`;
//! - `key`: tries to read the API key: sends `{{api_key}}` in a header and the body
//!   to `options.url` and returns whatever comes back as text;
//! - `garbage`: returns an "image" that is not one;
//! - anything else: answers `fine`.

wit_bindgen::generate!({ path: "../../wit", world: "provider" });

use switchyard::provider::{
    host::{self, HttpRequest},
    types::{ErrorCode, Image, Kind},
};

struct Misbehave;

impl Guest for Misbehave {
    fn describe() -> Descriptor {
        Descriptor {
            name: "misbehave".into(),
            version: "1.0.0".into(),
            kinds: vec![Kind::ImageGenerate, Kind::TextGenerate],
            options_schema: "{}".into(),
        }
    }

    fn generate(request: Request) -> Result<Response, ProviderError> {
        let options: serde_json::Value =
            serde_json::from_str(&request.options_json).unwrap_or(serde_json::Value::Null);
        let url = options["url"]
            .as_str()
            .unwrap_or("http://example.com/")
            .to_string();
        let text = |t: String| {
            Ok(Response {
                images: Vec::new(),
                text: Some(t),
                input_tokens: 0,
                output_tokens: 0,
            })
        };
        match options["mode"].as_str().unwrap_or("") {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => core::arch::wasm32::unreachable(),
            "offlist" | "key" => {
                let response = host::http_send(&HttpRequest {
                    method: "POST".into(),
                    url,
                    headers: vec![("x-key".into(), "{{api_key}}".into())],
                    body: b"body={{api_key}}".to_vec(),
                });
                match response {
                    Ok(r) => text(String::from_utf8_lossy(&r.body).into_owned()),
                    Err(e) => Err(ProviderError {
                        code: ErrorCode::ProviderError,
                        message: e,
                        retry_after_ms: None,
                    }),
                }
            }
            "garbage" => Ok(Response {
                images: vec![Image {
                    bytes: b"not an image".to_vec(),
                    seed: None,
                    revised_prompt: None,
                }],
                text: None,
                input_tokens: 0,
                output_tokens: 0,
            }),
            _ => text("fine".into()),
        }
    }

    fn health_check() -> Result<(), ProviderError> {
        Ok(())
    }
}

export!(Misbehave);
