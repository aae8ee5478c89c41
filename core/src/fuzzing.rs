//! The entry point of the command fuzz target (issue #14): a raw body as it arrives on
//! `switchyard.cmd.<kind>`, through the envelope and the whole parse and validation.
//! Not an API for anything else (hidden from the docs).
//!
//! [`command_holds`] returns `Err` with a description when a property that holds for
//! any body is broken (a panic is a finding of its own): a command that parses and
//! validates is serialized and parsed again, as the bus carries it, and must still
//! validate. `fuzz/` (cargo-fuzz) and the proptest smoke tests in
//! `protocol/command/robustness.rs` call the same function.

use crate::{Command, CommandEnvelope};

/// Parses `body` as the command intake does and checks what holds for any body:
/// `Ok(true)` when the command is accepted, `Ok(false)` when it is refused.
///
/// # Errors
/// A description of the broken property.
pub fn command_holds(body: &[u8]) -> Result<bool, String> {
    let _ = CommandEnvelope::parse(body);
    let Ok(parsed) = Command::parse_and_validate(body, None) else {
        return Ok(false);
    };
    let again = serde_json::to_vec(&parsed).map_err(|e| format!("a valid command: {e}"))?;
    match Command::parse_and_validate(&again, None) {
        Ok(_) => Ok(true),
        Err(e) => Err(format!("a valid command fails its round trip: {e}")),
    }
}
