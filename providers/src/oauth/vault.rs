//! [`TokenVault`]: where an OAuth2 client's rotated refresh token is kept, so that the
//! newest one survives a restart and is shared by every replica.
//!
//! A token endpoint may rotate the refresh token: each refresh answers a new one and
//! invalidates the old (and a server that detects reuse may revoke the whole grant).
//! Kept in one process's memory, the newest token is lost at a restart, and two
//! replicas refreshing with the same token race each other. With a vault, a refresh
//! runs under the vault's cluster-wide lock for the client, starts from the newest
//! token the vault holds, and stores the rotated one before the lock is let go.
//!
//! The vault keys a client by [`client_key`]: its token endpoint, its client id and
//! a digest of the refresh token the operator configured. An operator who configures
//! a new refresh token (after authorising the client again) thus starts afresh
//! instead of being overridden by a token rotated from the old grant.

use std::fmt;

use sha2::{Digest as _, Sha256};
use switchyard_core::{ApiKey, OAuth2};

use crate::BoxFuture;

/// A vault's storage failed. The fetch then goes on without it (from the token in
/// memory or the configured one), and the failure is logged.
#[derive(Debug, thiserror::Error)]
#[error("the token vault failed: {0}")]
pub struct VaultError(pub String);

/// Held while one process refreshes a client's token; [`TokenVault::unlock`] lets
/// the next go. One that is never given back (the refresh was cancelled) runs out.
#[derive(Debug)]
pub struct VaultLock(pub String);

/// Storage and a cluster-wide lock for rotated refresh tokens (module docs).
pub trait TokenVault: Send + Sync + fmt::Debug {
    /// Waits (a bounded time) for the lock of `client`.
    fn lock(&self, client: &str) -> BoxFuture<'static, Result<VaultLock, VaultError>>;

    /// Gives `lock` of `client` back.
    fn unlock(&self, client: &str, lock: VaultLock) -> BoxFuture<'static, Result<(), VaultError>>;

    /// The newest refresh token stored for `client`.
    fn load(&self, client: &str) -> BoxFuture<'static, Result<Option<ApiKey>, VaultError>>;

    /// Stores `refresh` as `client`'s newest refresh token.
    fn store(&self, client: &str, refresh: ApiKey) -> BoxFuture<'static, Result<(), VaultError>>;
}

/// The key a vault keeps `settings`' refresh token under (module docs): hex of
/// SHA-256, never the token itself.
pub fn client_key(settings: &OAuth2) -> String {
    let mut digest = Sha256::new();
    for part in [
        settings.token_url.as_str(),
        settings.client_id.as_str(),
        settings.refresh_token.as_ref().map_or("", |r| r.expose()),
    ] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(refresh: &str) -> OAuth2 {
        serde_json::from_value(serde_json::json!({
            "token_url": "https://auth.example/token", "client_id": "gw",
            "grant": "refresh_token", "refresh_token": refresh
        }))
        .unwrap()
    }

    #[test]
    fn a_new_configured_refresh_token_is_a_new_client_key() {
        assert_eq!(client_key(&settings("r0")), client_key(&settings("r0")));
        assert_ne!(client_key(&settings("r0")), client_key(&settings("r1")));
        assert!(!client_key(&settings("secret-r0")).contains("secret"));
        assert_eq!(client_key(&settings("r0")).len(), 64);
    }
}
