//! Signed, expiring artifact URLs (PROTOCOL.md §3): the `url` of an image in an event is
//! `{http.public_url}/v1/artifacts/{id}?exp=…&sig=…`, where `sig` is an HMAC-SHA256 over
//! the artifact id, the requesting tenant and the expiry (Unix ms), under a key held
//! like the master key (`artifacts.url_key` or its file). Such a URL fetches the image
//! without other credentials until it expires; without it an artifact needs the admin
//! token or a key of a tenant that owns it. Without `http.public_url` the URLs are
//! relative paths.

use std::time::Duration;

use base64::Engine as _;
use ring::hmac;
use switchyard_core::Tenant;

/// Why a signed artifact URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The expiry has passed.
    #[error("the artifact link has expired")]
    Expired,
    /// The signature does not match the id, an owner and the expiry.
    #[error("the artifact link's signature is not valid")]
    Invalid,
}

/// Makes and checks artifact URLs. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactUrls {
    key: hmac::Key,
    ttl: Duration,
    public_url: String,
    /// With `artifacts.presign`: the store whose own presigned GET URLs go in events.
    presigner: Option<crate::artifacts::ArtifactStore>,
}

impl std::fmt::Debug for ArtifactUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactUrls")
            .field("ttl", &self.ttl)
            .field("public_url", &self.public_url)
            .field("presigned", &self.presigner.is_some())
            .finish_non_exhaustive()
    }
}

impl ArtifactUrls {
    /// URLs signed with `key` that live `ttl`, under `public_url` (`""`: relative).
    pub fn new(key: &[u8], ttl: Duration, public_url: &str) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            ttl,
            public_url: public_url.trim_end_matches('/').to_owned(),
            presigner: None,
        }
    }

    /// These URLs, but for images in `store` its own presigned GET URLs where it signs
    /// them (S3, `artifacts.presign`): clients fetch from the store, not through the
    /// gateway. A store that does not sign keeps the gateway's links.
    #[must_use]
    pub fn presigned_by(mut self, store: crate::artifacts::ArtifactStore) -> Self {
        if store.can_presign() {
            self.presigner = Some(store);
        } else {
            tracing::info!(
                url = store.url(),
                "artifacts.presign: this store does not sign URLs; the gateway's links are used"
            );
        }
        self
    }

    /// The URL of an image for an event: the store's presigned one (see
    /// [`ArtifactUrls::presigned_by`]), else [`ArtifactUrls::url`]. A presigning that
    /// fails falls back to the gateway's link.
    pub async fn image_url(&self, id: &str, tenant: &Tenant, now_ms: u64) -> String {
        if let Some(store) = &self.presigner {
            match store.presigned_url(id, self.ttl).await {
                Ok(Some(url)) => return url,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot presign an artifact URL; the gateway's link is used");
                }
            }
        }
        self.url(id, tenant, now_ms)
    }

    /// The URL of artifact `id` for `tenant`'s request, valid for the TTL from `now_ms`.
    pub fn url(&self, id: &str, tenant: &Tenant, now_ms: u64) -> String {
        let exp = now_ms.saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let sig = self.signature(id, tenant.as_str(), exp);
        format!("{}/v1/artifacts/{id}?exp={exp}&sig={sig}", self.public_url)
    }

    /// Checks a URL's `exp` and `sig` for artifact `id` against the tenants that own it.
    ///
    /// # Errors
    /// [`SignatureError::Expired`] or [`SignatureError::Invalid`].
    pub fn verify(
        &self,
        id: &str,
        owners: &[String],
        exp: u64,
        sig: &str,
        now_ms: u64,
    ) -> Result<(), SignatureError> {
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| SignatureError::Invalid)?;
        let signed = owners
            .iter()
            .any(|owner| hmac::verify(&self.key, message(id, owner, exp).as_bytes(), &tag).is_ok());
        if !signed {
            return Err(SignatureError::Invalid);
        }
        // Checked after the signature, so a forged expiry is "invalid", not "expired".
        if now_ms > exp {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn signature(&self, id: &str, tenant: &str, exp: u64) -> String {
        let tag = hmac::sign(&self.key, message(id, tenant, exp).as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }
}

/// What is signed: the three fields, separated by a byte none of them may hold.
fn message(id: &str, tenant: &str, exp: u64) -> String {
    format!("v1\n{id}\n{tenant}\n{exp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> ArtifactUrls {
        ArtifactUrls::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(60),
            "https://sy.example.com/",
        )
    }

    fn parts(url: &str) -> (u64, String) {
        let query = url.split_once('?').unwrap().1;
        let mut exp = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=').unwrap() {
                ("exp", v) => exp = v.parse().unwrap(),
                ("sig", v) => sig = v.to_owned(),
                _ => {}
            }
        }
        (exp, sig)
    }

    #[test]
    fn a_signed_url_verifies_for_its_owner_until_it_expires() {
        let acme = Tenant::new("acme").unwrap();
        let url = urls().url("abc", &acme, 1_000);
        assert!(
            url.starts_with("https://sy.example.com/v1/artifacts/abc?exp=61000&sig="),
            "{url}"
        );
        let (exp, sig) = parts(&url);
        let owners = vec!["globex".to_owned(), "acme".to_owned()];
        assert_eq!(urls().verify("abc", &owners, exp, &sig, 2_000), Ok(()));
        assert_eq!(
            urls().verify("abc", &owners, exp, &sig, 61_001),
            Err(SignatureError::Expired)
        );
        // Another artifact, a longer expiry, a non-owner, another key: invalid.
        assert_eq!(
            urls().verify("abd", &owners, exp, &sig, 2_000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            urls().verify("abc", &owners, exp + 1, &sig, 2_000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            urls().verify("abc", &["globex".to_owned()], exp, &sig, 2_000),
            Err(SignatureError::Invalid)
        );
        let other = ArtifactUrls::new(
            b"another key, another key, again!",
            Duration::from_secs(60),
            "",
        );
        assert_eq!(
            other.verify("abc", &owners, exp, &sig, 2_000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            urls().verify("abc", &owners, exp, "not base64!", 2_000),
            Err(SignatureError::Invalid)
        );
        assert!(
            other
                .url("abc", &acme, 0)
                .starts_with("/v1/artifacts/abc?exp=")
        );
    }
}
