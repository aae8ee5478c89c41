//! A provider's error answer: first byte picks the provider, two bytes the status
//! (100–999), a first line the `retry-after` value, the rest is the body, read onto the
//! error taxonomy. Check: no error carries the account's key. Shared with
//! `providers/src/fuzzing/tests.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_providers::fuzzing::error_bytes_hold;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = error_bytes_hold(data) {
        panic!("{broken}");
    }
});
