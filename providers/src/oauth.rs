//! OAuth2 provider auth (`auth = {type: "oauth2", …}`): a [`TokenSource`] per OAuth2
//! client obtains access tokens from the token endpoint (client-credentials or
//! refresh-token grant, RFC 6749 §4.4 and §6) and renews a token before it expires.
//! One fetch at a time per client (the others wait for it); a failed fetch is answered
//! from memory for a second, so a broken token endpoint is not hammered by
//! every request. [`OAuth2Adapter`] wraps an adapter: it makes sure a token is fresh
//! before each attempt and, when the provider answers 401, fetches a new one and tries
//! once more.
//!
//! Every adapter built for the same client and the same network guard shares one
//! source ([`source_for`]), so a hot reload or a second config of the same client
//! keeps the token it has. A rotated refresh token is kept in the [`TokenVault`] the
//! runtime gives (encrypted in the database, shared by every replica), or in memory
//! when there is none.

mod adapter;
mod token;
mod vault;

use std::sync::{Arc, Mutex, Weak};

pub use adapter::OAuth2Adapter;
use switchyard_core::OAuth2;
pub use token::TokenSource;
pub use vault::{TokenVault, VaultError, VaultLock, client_key};

/// The live token sources, by client settings and guard.
type Registry = Vec<((OAuth2, bool), Weak<TokenSource>)>;

/// The token source for `settings`: the live one of an adapter built for the same
/// client, or a new one. `guarded`: its endpoint came from a tenant, so it is fetched
/// through the outbound guard (`client` is then the guarded client). `vault` keeps
/// its rotated refresh tokens: a live source without one is not reused when a vault
/// is given (and `None` takes the live source whatever it keeps them in, which is how
/// an adapter's `Api` finds the source its builder made just before).
pub(crate) fn source_for(
    settings: &OAuth2,
    client: &reqwest::Client,
    guarded: bool,
    vault: Option<&Arc<dyn TokenVault>>,
) -> Arc<TokenSource> {
    static LIVE: Mutex<Registry> = Mutex::new(Vec::new());
    let mut live = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    live.retain(|(_, source)| source.strong_count() > 0);
    // Only the refresh-token grant has anything to keep.
    let vault = vault.filter(|_| settings.grant == switchyard_core::OAuth2Grant::RefreshToken);
    let key = (settings.clone(), guarded);
    if let Some(source) = live
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, source)| source.upgrade())
        .filter(|source| vault.is_none() || source.has_vault())
    {
        return source;
    }
    live.retain(|(k, _)| *k != key);
    let source = Arc::new(TokenSource::new(
        settings.clone(),
        client.clone(),
        vault.cloned(),
    ));
    live.push((key, Arc::downgrade(&source)));
    source
}
