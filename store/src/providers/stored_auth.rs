//! The `auth` column: a config's `auth` block as stored, with its secrets (the OAuth2
//! client secret and refresh token) encrypted like API keys.

use serde::{Deserialize, Serialize};
use switchyard_core::{ApiKey, OAuth2, OAuth2ClientAuth, OAuth2Grant, ProviderAuth};

use crate::secrets::{MasterKey, SecretError};

/// The stored form of an `auth` block (only OAuth2 is stored; the default is NULL).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum StoredAuth {
    Oauth2 {
        token_url: String,
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret_ciphertext: Option<String>,
        #[serde(default, skip_serializing_if = "OAuth2ClientAuth::is_basic")]
        client_auth: OAuth2ClientAuth,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scopes: Vec<String>,
        #[serde(default)]
        grant: OAuth2Grant,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_token_ciphertext: Option<String>,
    },
}

impl StoredAuth {
    /// The stored form of `auth`; `None` for the default (`api_key`).
    pub(super) fn encrypt(auth: &ProviderAuth, key: &MasterKey) -> Option<StoredAuth> {
        let oauth = auth.oauth2()?;
        let seal = |secret: &Option<ApiKey>| secret.as_ref().map(|s| key.encrypt(s.expose()));
        Some(StoredAuth::Oauth2 {
            token_url: oauth.token_url.clone(),
            client_id: oauth.client_id.clone(),
            client_secret_ciphertext: seal(&oauth.client_secret),
            client_auth: oauth.client_auth,
            scopes: oauth.scopes.clone(),
            grant: oauth.grant,
            refresh_token_ciphertext: seal(&oauth.refresh_token),
        })
    }

    /// The `auth` block, secrets decrypted.
    pub(super) fn decrypt(self, key: &MasterKey) -> Result<ProviderAuth, SecretError> {
        let StoredAuth::Oauth2 {
            token_url,
            client_id,
            client_secret_ciphertext,
            client_auth,
            scopes,
            grant,
            refresh_token_ciphertext,
        } = self;
        let open =
            |sealed: Option<String>| sealed.map(|s| key.decrypt(&s).map(ApiKey::new)).transpose();
        Ok(ProviderAuth::Oauth2(OAuth2 {
            token_url,
            client_id,
            client_secret: open(client_secret_ciphertext)?,
            client_auth,
            scopes,
            grant,
            refresh_token: open(refresh_token_ciphertext)?,
        }))
    }
}
