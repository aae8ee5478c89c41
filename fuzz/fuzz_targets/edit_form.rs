//! A `POST /v1/images/edits` body: first line the content type, then a chunk length byte,
//! then the body, through axum's `Multipart`, the handler's form reader and image check,
//! and the bus's command intake. Checks: no more files stored than one command takes; a
//! command that validates here is accepted by the bus. Shared with `http/src/fuzzing/tests.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_http::fuzzing::edit_form_bytes_hold;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = edit_form_bytes_hold(data) {
        panic!("{broken}");
    }
});
