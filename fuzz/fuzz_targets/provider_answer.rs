//! A whole (not streamed) provider answer: first byte picks one of the 12 readers (OpenAI
//! images/chat, Anthropic, Gemini text/images/predict, Stability v1/v2, Ideogram, Seedream,
//! DashScope submit/poll), the rest is the body. Checks: an accepted image answer has an
//! image, an accepted text answer has text, a running task's progress is in 0..=1, and no
//! error carries the account's key. Shared with `providers/src/fuzzing/tests.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_providers::fuzzing::answer_bytes_hold;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = answer_bytes_hold(data) {
        panic!("{broken}");
    }
});
