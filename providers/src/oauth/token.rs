//! [`TokenSource`]: one OAuth2 client's access token, fetched and renewed.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde::Deserialize;
use switchyard_core::{ApiKey, ErrorCode, OAuth2, OAuth2ClientAuth, OAuth2Grant};

use super::vault::{TokenVault, client_key};
use crate::{AttemptError, wire::read_limited};

/// How long a failed fetch is answered from memory before the endpoint is asked again.
pub(crate) const FAILURE_HOLD: Duration = Duration::from_secs(1);
/// The longest a token fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest token answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// A token is renewed this long before it expires at most (less for short lifetimes:
/// a tenth of the lifetime).
const MAX_MARGIN: Duration = Duration::from_secs(60);
/// A longer lifetime than a year is taken as a year.
const MAX_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// An access token and when to renew it.
#[derive(Debug, Clone)]
struct Token {
    access: ApiKey,
    /// When it is to be renewed (a margin before it expires); `None`: it does not say,
    /// so it is used until the provider refuses it.
    renew_at: Option<Instant>,
    /// When it expires: until then it still serves if a renewal fails.
    expires_at: Option<Instant>,
}

/// What the fetch lock guards: the last failure (answered from memory for a moment)
/// and the refresh token in use (a server may rotate it).
#[derive(Debug, Default)]
struct Fetching {
    failed: Option<(Instant, AttemptError)>,
    rotated_refresh: Option<ApiKey>,
    /// The refresh token this process last read from or wrote to the vault.
    vault_seen: Option<ApiKey>,
}

/// One OAuth2 client's access token (see the module docs of `oauth`).
#[derive(Debug)]
pub struct TokenSource {
    settings: OAuth2,
    client: reqwest::Client,
    /// Where a rotated refresh token is kept across restarts and replicas, for the
    /// refresh-token grant (`None`: in memory only).
    vault: Option<Arc<dyn TokenVault>>,
    current: RwLock<Option<Token>>,
    fetching: tokio::sync::Mutex<Fetching>,
}

/// RFC 6749 §5.1.
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// RFC 6749 §5.2.
#[derive(Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl TokenSource {
    /// A source for `settings`, fetching with `client`, keeping a rotated refresh
    /// token in `vault` (if any, and if the grant uses one).
    pub fn new(
        settings: OAuth2,
        client: reqwest::Client,
        vault: Option<Arc<dyn TokenVault>>,
    ) -> Self {
        let vault = vault.filter(|_| settings.grant == OAuth2Grant::RefreshToken);
        Self {
            settings,
            client,
            vault,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(Fetching::default()),
        }
    }

    /// Whether a rotated refresh token is kept in a vault.
    pub(crate) fn has_vault(&self) -> bool {
        self.vault.is_some()
    }

    /// The token to send now, if there is one (not renewed here: see [`Self::fresh`]).
    pub fn current(&self) -> Option<ApiKey> {
        self.read().as_ref().map(|t| t.access.clone())
    }

    /// Whether `token` is still the one in use (not refused by the provider since).
    pub fn is_current(&self, token: &ApiKey) -> bool {
        self.read().as_ref().is_some_and(|t| t.access == *token)
    }

    /// Drops `token` if it is still the one in use: the provider refused it (a 401).
    /// The next [`Self::fresh`] fetches a new one; a newer token another request got
    /// meanwhile stays.
    pub fn reject(&self, token: &ApiKey) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|t| t.access == *token) {
            *current = None;
        }
    }

    /// A token that is not due for renewal: the one in use, or a new one from the
    /// token endpoint.
    ///
    /// # Errors
    /// `unauthorized` when the endpoint refuses the client or grant, else
    /// `provider_unavailable`, `timeout` or `rate_limited`.
    pub async fn fresh(&self) -> Result<ApiKey, AttemptError> {
        if let Some(token) = self.usable() {
            return Ok(token);
        }
        let mut fetching = self.fetching.lock().await;
        // Another request may have fetched one while this one waited.
        if let Some(token) = self.usable() {
            return Ok(token);
        }
        if let Some((at, error)) = &fetching.failed
            && at.elapsed() < FAILURE_HOLD
        {
            return self.unexpired().ok_or_else(|| error.clone());
        }
        match self.fetch(&mut fetching).await {
            Ok(token) => {
                fetching.failed = None;
                let access = token.access.clone();
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
                Ok(access)
            }
            Err(error) => {
                tracing::warn!(error = %error, "oauth2 token fetch failed");
                fetching.failed = Some((Instant::now(), error.clone()));
                // A renewal that failed before the token expired: it still serves.
                self.unexpired().ok_or(error)
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Token>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token in use while it has not expired (due for renewal or not).
    fn unexpired(&self) -> Option<ApiKey> {
        self.read()
            .as_ref()
            .filter(|t| t.expires_at.is_some_and(|at| Instant::now() < at))
            .map(|t| t.access.clone())
    }

    fn usable(&self) -> Option<ApiKey> {
        self.read()
            .as_ref()
            .filter(|t| t.renew_at.is_none_or(|at| Instant::now() < at))
            .map(|t| t.access.clone())
    }

    /// Fetches a token; with a vault, under its lock for this client and from the
    /// newest refresh token it holds, storing a rotated one before the lock goes.
    async fn fetch(&self, fetching: &mut Fetching) -> Result<Token, AttemptError> {
        let Some(vault) = &self.vault else {
            return self.fetch_once(fetching).await;
        };
        let client = client_key(&self.settings);
        // Without the lock another replica may be refreshing with the same token: fail
        // this fetch instead (an unexpired token still serves meanwhile).
        let lock = vault.lock(&client).await.map_err(|e| {
            tracing::warn!(error = %e, "oauth2 refresh waits for the token vault");
            self.error(
                ErrorCode::ProviderUnavailable,
                "the token vault is unavailable; the refresh is put off",
            )
        })?;
        match vault.load(&client).await {
            // Newer than this process last saw: another replica rotated it. Else what
            // memory holds may be newer still (a store that failed, or a fetch cut
            // off before it stored): keep that.
            Ok(Some(newest)) if fetching.vault_seen.as_ref() != Some(&newest) => {
                fetching.rotated_refresh = Some(newest.clone());
                fetching.vault_seen = Some(newest);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "oauth2 refresh token not read from the vault"),
        }
        let before = fetching.rotated_refresh.clone();
        let token = self.fetch_once(fetching).await;
        if let Some(rotated) = fetching.rotated_refresh.clone()
            && before.as_ref() != Some(&rotated)
        {
            match vault.store(&client, rotated.clone()).await {
                Ok(()) => fetching.vault_seen = Some(rotated),
                Err(e) => tracing::error!(error = %e, "a rotated oauth2 refresh token was not \
                    stored; this process keeps it and stores it with its next refresh"),
            }
        }
        if let Err(e) = vault.unlock(&client, lock).await {
            tracing::warn!(error = %e, "an oauth2 refresh lock was not given back; it runs out");
        }
        token
    }

    /// One request to the token endpoint.
    async fn fetch_once(&self, fetching: &mut Fetching) -> Result<Token, AttemptError> {
        let settings = &self.settings;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", settings.grant.as_str())];
        let scope = settings.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let refresh = fetching
            .rotated_refresh
            .clone()
            .or_else(|| settings.refresh_token.clone());
        if settings.grant == OAuth2Grant::RefreshToken {
            let Some(refresh) = &refresh else {
                return Err(self.error(ErrorCode::Unauthorized, "no refresh_token is configured"));
            };
            form.push(("refresh_token", refresh.expose()));
        }
        let secret = settings.client_secret.as_ref().map(|s| s.expose());
        if settings.client_auth == OAuth2ClientAuth::Post {
            form.push(("client_id", &settings.client_id));
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let sent_at = Instant::now();
        let mut request = self.client.post(&settings.token_url);
        if settings.client_auth == OAuth2ClientAuth::Basic {
            request = request.basic_auth(&settings.client_id, secret);
        }
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                let code = if e.is_timeout() {
                    ErrorCode::Timeout
                } else {
                    ErrorCode::ProviderUnavailable
                };
                self.error(code, "the token endpoint could not be reached")
            })?;
        let status = response.status();
        let body = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|_| {
                self.error(ErrorCode::ProviderUnavailable, "the token answer broke off")
            })?;
        if !status.is_success() {
            let mut error = self.refused(status, &body);
            // The refresh token sent may be a rotated one, which `error` does not know.
            if let Some(sent) = refresh.as_ref().filter(|r| r.expose().len() >= 4) {
                error.message = error.message.replace(sent.expose(), "****");
            }
            return Err(error);
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            self.error(
                ErrorCode::ProviderError,
                format!("the token endpoint sent a malformed answer ({e})"),
            )
        })?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(self.error(
                ErrorCode::ProviderError,
                format!("the token endpoint issued a '{kind}' token, not a bearer token"),
            ));
        }
        if answer.access_token.is_empty() {
            return Err(self.error(
                ErrorCode::ProviderError,
                "the token endpoint sent an empty token",
            ));
        }
        if let Some(rotated) = answer.refresh_token.filter(|r| !r.is_empty()) {
            fetching.rotated_refresh = Some(ApiKey::new(rotated));
        }
        // `expires_in` is a number of seconds; some servers send it as a string.
        let lifetime = match &answer.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .map(|secs| Duration::from_secs(secs.min(MAX_LIFETIME_SECS)));
        Ok(Token {
            access: ApiKey::new(answer.access_token),
            renew_at: lifetime
                .and_then(|life| sent_at.checked_add(life - (life / 10).min(MAX_MARGIN))),
            expires_at: lifetime.and_then(|life| sent_at.checked_add(life)),
        })
    }

    /// The error for a refusing token endpoint (RFC 6749 §5.2 body where there is one).
    fn refused(&self, status: StatusCode, body: &[u8]) -> AttemptError {
        let code = match status.as_u16() {
            400 | 401 | 403 => ErrorCode::Unauthorized,
            429 => ErrorCode::RateLimited,
            500..=599 => ErrorCode::ProviderUnavailable,
            _ => ErrorCode::ProviderError,
        };
        let reason = match serde_json::from_slice::<Refusal>(body) {
            Ok(r) => match r.error_description {
                Some(d) => format!("{}: {}", r.error, d.chars().take(300).collect::<String>()),
                None => r.error,
            },
            Err(_) => status
                .canonical_reason()
                .unwrap_or("no readable answer")
                .to_owned(),
        };
        self.error(
            code,
            format!("the token endpoint answered {}: {reason}", status.as_u16()),
        )
    }

    /// An error naming the client, never a secret.
    fn error(&self, code: ErrorCode, message: impl std::fmt::Display) -> AttemptError {
        let mut text = format!("oauth2 client '{}': {message}", self.settings.client_id);
        for secret in [&self.settings.client_secret, &self.settings.refresh_token]
            .into_iter()
            .flatten()
        {
            if secret.expose().len() >= 4 {
                text = text.replace(secret.expose(), "****");
            }
        }
        AttemptError::new(code, text)
    }
}
