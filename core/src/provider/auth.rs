//! How a provider account proves who it is: its `api_key` (the default), or OAuth2
//! (`auth = {type: "oauth2", token_url, client_id, client_secret, scopes}`), where the
//! provider actor obtains an access token from the token endpoint and sends it as
//! `Authorization: Bearer`. The client secret and a refresh token are secrets like API
//! keys: masked on every wire, encrypted at rest.

use serde::{Deserialize, Serialize};

use super::{provider_type::ProviderType, secret::ApiKey, validate::FieldError};

/// A config's `auth` block. Without one, the account's `api_key` is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderAuth {
    /// The `api_key` field, in the header the provider documents (the default).
    ApiKey,
    /// OAuth2: an access token from `token_url`, refreshed before it expires.
    Oauth2(OAuth2),
}

/// The OAuth2 settings of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The token endpoint (RFC 6749 §3.2).
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret (write-only; sent as `client_auth` says, RFC 6749 §2.3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ApiKey>,
    /// How the client authenticates to the token endpoint: HTTP Basic (the default)
    /// or the id and secret in the form body.
    #[serde(default, skip_serializing_if = "OAuth2ClientAuth::is_basic")]
    pub client_auth: OAuth2ClientAuth,
    /// Scopes asked for (space-joined in the request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The grant used to get a token.
    #[serde(default)]
    pub grant: OAuth2Grant,
    /// The refresh token, for `grant = "refresh_token"` (write-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<ApiKey>,
}

/// How an OAuth2 client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2ClientAuth {
    /// `Authorization: Basic` with the id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`), for
    /// token endpoints that take no Basic authentication.
    Post,
}

impl OAuth2ClientAuth {
    /// Whether this is the default, which the config object leaves out.
    pub fn is_basic(&self) -> bool {
        *self == OAuth2ClientAuth::Basic
    }
}

/// The OAuth2 grant an account uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Grant {
    /// `client_credentials` (RFC 6749 §4.4).
    #[default]
    ClientCredentials,
    /// `refresh_token` (RFC 6749 §6), from a refresh token the operator obtained.
    RefreshToken,
}

impl OAuth2Grant {
    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuth2Grant::ClientCredentials => "client_credentials",
            OAuth2Grant::RefreshToken => "refresh_token",
        }
    }
}

impl ProviderAuth {
    /// Whether this is the default (`api_key`), which the config object leaves out.
    pub fn is_api_key(&self) -> bool {
        matches!(self, ProviderAuth::ApiKey)
    }

    /// The OAuth2 settings, when the account uses OAuth2.
    pub fn oauth2(&self) -> Option<&OAuth2> {
        match self {
            ProviderAuth::Oauth2(oauth) => Some(oauth),
            ProviderAuth::ApiKey => None,
        }
    }

    /// This block with its secrets taken from `stored` wherever it carries a masked
    /// value (as read back from the API): a masked secret means "unchanged".
    #[must_use]
    pub fn keep_masked_from(self, stored: Option<&ProviderAuth>) -> ProviderAuth {
        let (ProviderAuth::Oauth2(mut new), Some(ProviderAuth::Oauth2(old))) =
            (self.clone(), stored)
        else {
            return self;
        };
        let keep = |new: &mut Option<ApiKey>, old: &Option<ApiKey>| {
            if let (Some(n), Some(o)) = (new.as_ref(), old.as_ref())
                && n.looks_masked()
                && *n.expose() == o.masked()
            {
                *new = Some(o.clone());
            }
        };
        keep(&mut new.client_secret, &old.client_secret);
        keep(&mut new.refresh_token, &old.refresh_token);
        ProviderAuth::Oauth2(new)
    }

    /// Checks the block for a provider type, pushing one error per problem.
    pub(super) fn check(
        &self,
        provider: Option<ProviderType>,
        has_api_key: bool,
        errors: &mut Vec<FieldError>,
    ) {
        let ProviderAuth::Oauth2(oauth) = self else {
            return;
        };
        if matches!(provider, Some(ProviderType::Mock | ProviderType::Wasm)) {
            errors.push(FieldError::new(
                "auth.type",
                "oauth2 is for HTTP provider types, not mock or wasm",
            ));
        }
        if has_api_key {
            errors.push(FieldError::new(
                "api_key",
                "must be left out when auth.type is oauth2 (the access token replaces it)",
            ));
        }
        if !super::config::is_http_url(&oauth.token_url) {
            errors.push(FieldError::new(
                "auth.token_url",
                format!("'{}' is not an http:// or https:// URL", oauth.token_url),
            ));
        }
        let id = oauth.client_id.trim();
        if id.is_empty() || oauth.client_id.chars().count() > 500 {
            errors.push(FieldError::new(
                "auth.client_id",
                "must be 1–500 characters",
            ));
        }
        check_secret(
            "auth.client_secret",
            oauth.client_secret.as_ref(),
            true,
            errors,
        );
        let needs_refresh = oauth.grant == OAuth2Grant::RefreshToken;
        check_secret(
            "auth.refresh_token",
            oauth.refresh_token.as_ref(),
            needs_refresh,
            errors,
        );
        if !needs_refresh && oauth.refresh_token.is_some() {
            errors.push(FieldError::new(
                "auth.refresh_token",
                "is only used with grant = \"refresh_token\"",
            ));
        }
        if oauth.scopes.len() > 50 {
            errors.push(FieldError::new("auth.scopes", "at most 50 scopes"));
        }
        for (i, scope) in oauth.scopes.iter().enumerate() {
            // RFC 6749 §3.3: printable ASCII without space, `"` or `\`.
            let valid = !scope.is_empty()
                && scope.len() <= 200
                && scope
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                errors.push(FieldError::new(
                    format!("auth.scopes[{i}]"),
                    "must be printable ASCII without spaces, quotes or backslashes",
                ));
            }
        }
    }
}

fn check_secret(path: &str, secret: Option<&ApiKey>, required: bool, errors: &mut Vec<FieldError>) {
    match secret {
        None if required => errors.push(FieldError::new(path, "is required")),
        None => {}
        Some(s) if s.looks_masked() => errors.push(FieldError::new(
            path,
            "is a masked value; send the real secret or leave the field out",
        )),
        Some(s) if s.expose().trim().is_empty() => {
            errors.push(FieldError::new(path, "must not be empty"));
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(json: serde_json::Value) -> ProviderAuth {
        serde_json::from_value(json).unwrap()
    }

    fn problems(auth: &ProviderAuth, has_key: bool) -> Vec<String> {
        let mut errors = Vec::new();
        auth.check(Some(ProviderType::Openai), has_key, &mut errors);
        errors.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_complete_client_credentials_block_passes_and_serializes_masked() {
        let auth = oauth(serde_json::json!({
            "type": "oauth2", "token_url": "https://login.example/token",
            "client_id": "gateway", "client_secret": "s3cret-0123456789", "scopes": ["ai.generate"]
        }));
        assert!(problems(&auth, false).is_empty());
        let shown = serde_json::to_string(&auth).unwrap();
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(
            shown.contains("\"grant\":\"client_credentials\""),
            "{shown}"
        );
    }

    #[test]
    fn client_auth_is_basic_unless_post_is_asked_and_basic_is_not_shown() {
        let base = serde_json::json!({
            "type": "oauth2", "token_url": "https://login.example/token",
            "client_id": "gateway", "client_secret": "s3cret-0123456789"
        });
        let basic = oauth(base.clone());
        assert_eq!(basic.oauth2().unwrap().client_auth, OAuth2ClientAuth::Basic);
        assert!(
            !serde_json::to_string(&basic)
                .unwrap()
                .contains("client_auth")
        );
        let mut post = base.clone();
        post["client_auth"] = "post".into();
        let post = oauth(post);
        assert_eq!(post.oauth2().unwrap().client_auth, OAuth2ClientAuth::Post);
        assert!(
            serde_json::to_string(&post)
                .unwrap()
                .contains("\"client_auth\":\"post\"")
        );
        let mut other = base;
        other["client_auth"] = "private_key_jwt".into();
        assert!(serde_json::from_value::<ProviderAuth>(other).is_err());
    }

    #[test]
    fn each_missing_or_bad_field_is_named() {
        let auth = oauth(serde_json::json!({
            "type": "oauth2", "token_url": "ftp://x", "client_id": " ",
            "grant": "refresh_token", "scopes": ["a b"]
        }));
        let paths = problems(&auth, true);
        for path in [
            "api_key",
            "auth.token_url",
            "auth.client_id",
            "auth.client_secret",
            "auth.refresh_token",
            "auth.scopes[0]",
        ] {
            assert!(paths.iter().any(|p| p == path), "{path} in {paths:?}");
        }
    }

    #[test]
    fn unknown_types_and_fields_are_refused() {
        assert!(
            serde_json::from_value::<ProviderAuth>(serde_json::json!({"type": "saml"})).is_err()
        );
        assert!(
            serde_json::from_value::<ProviderAuth>(serde_json::json!({
                "type": "oauth2", "token_url": "https://t", "client_id": "c", "colour": 1
            }))
            .is_err()
        );
    }

    #[test]
    fn a_masked_secret_sent_back_keeps_the_stored_one() {
        let stored = oauth(serde_json::json!({
            "type": "oauth2", "token_url": "https://t/token", "client_id": "c",
            "client_secret": "s3cret-0123456789"
        }));
        let shown: ProviderAuth =
            serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
        let kept = shown.keep_masked_from(Some(&stored));
        assert_eq!(kept, stored);
        let changed = oauth(serde_json::json!({
            "type": "oauth2", "token_url": "https://t/token", "client_id": "c",
            "client_secret": "another-secret-99"
        }));
        assert_eq!(changed.clone().keep_masked_from(Some(&stored)), changed);
    }
}
