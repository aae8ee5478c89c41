//! A streamed answer: first byte picks the reader (OpenAI chat, Anthropic Messages, Gemini
//! SSE), the second the chunk length (1–256 bytes), the rest is the stream, through
//! reqwest's body, the SSE decoder and the adapter's loop. Checks: an accepted stream's
//! chunks add up to its text; no error carries the account's key. Shared with
//! `providers/src/fuzzing/tests.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_providers::fuzzing::stream_bytes_hold;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = stream_bytes_hold(data) {
        panic!("{broken}");
    }
});
