//! A raw body as it arrives on `switchyard.cmd.<kind>`: the envelope, the whole parse and
//! validation, and a round trip of any command that is accepted (it must still validate).
//! The check is the one the proptest smoke `core/src/protocol/command/robustness.rs` runs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::fuzzing::command_holds;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = command_holds(data) {
        panic!("{broken}");
    }
});
