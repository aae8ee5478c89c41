//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the secret is
//! `whsec_` and the base64 of 24 to 64 random bytes; an attempt carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64
//! of HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")>`.

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::hmac;

/// The prefix of a signing secret.
const PREFIX: &str = "whsec_";

/// A fresh secret: `whsec_` and 32 random bytes in base64.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a secret a tenant gave.
///
/// # Errors
/// What is wrong with it, for the tenant.
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("must start with {PREFIX}"))?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| format!("must be {PREFIX} and base64"))?;
    if !(24..=64).contains(&bytes.len()) {
        return Err("must hold 24 to 64 bytes".to_owned());
    }
    Ok(bytes)
}

/// The `webhook-signature` value of `body` sent as `id` at `timestamp`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_parse_and_bad_ones_are_named() {
        assert_eq!(key_of(&generate()).unwrap().len(), 32);
        assert!(key_of("secret").unwrap_err().contains("whsec_"));
        assert!(key_of("whsec_!!").unwrap_err().contains("base64"));
        assert!(key_of("whsec_AAAA").unwrap_err().contains("24 to 64"));
    }
}
