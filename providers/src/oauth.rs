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
//! keeps the token it has. A rotated refresh token is kept in memory only.

mod adapter;
mod token;

use std::sync::{Arc, Mutex, Weak};

pub use adapter::OAuth2Adapter;
use switchyard_core::OAuth2;
pub use token::TokenSource;

/// The live token sources, by client settings and guard.
type Registry = Vec<((OAuth2, bool), Weak<TokenSource>)>;

/// The token source for `settings`: the live one of an adapter built for the same
/// client, or a new one. `guarded`: its endpoint came from a tenant, so it is fetched
/// through the outbound guard (`client` is then the guarded client).
pub(crate) fn source_for(
    settings: &OAuth2,
    client: &reqwest::Client,
    guarded: bool,
) -> Arc<TokenSource> {
    static LIVE: Mutex<Registry> = Mutex::new(Vec::new());
    let mut live = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    live.retain(|(_, source)| source.strong_count() > 0);
    let key = (settings.clone(), guarded);
    if let Some(source) = live
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, source)| source.upgrade())
    {
        return source;
    }
    let source = Arc::new(TokenSource::new(settings.clone(), client.clone()));
    live.push((key, Arc::downgrade(&source)));
    source
}
