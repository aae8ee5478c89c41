//! Who calls: the admin token or a live tenant key, given as `Authorization: Bearer …`.
//!
//! One [`Authenticator`] (the only holder of the admin token) resolves the [`Caller`]
//! of every request in [`Authenticator::resolve`]. Each route group says which callers
//! it takes ([`Scope`]: admin only, admin or tenant, tenant key only) through one
//! middleware, [`require`], which answers a refusal in the group's error shape and
//! otherwise hands the caller to the handlers (the [`Caller`] extractor).

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use switchyard_core::Tenant;
use switchyard_runtime::facade::{QueryError, Secret, TenantKeys};

use crate::key_cache::{Cached, KeyCache};
use crate::{error::ApiError, openai::error::OaiError};

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The admin token: any tenant.
    Admin,
    /// A tenant key: this tenant only.
    Tenant(Tenant),
}

impl Caller {
    /// Whether this caller may see `tenant`'s data.
    pub(crate) fn sees(&self, tenant: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(own) => own.as_str() == tenant,
        }
    }

    /// The tenant of a tenant key.
    pub(crate) fn tenant(&self) -> Option<&Tenant> {
        match self {
            Caller::Admin => None,
            Caller::Tenant(tenant) => Some(tenant),
        }
    }
}

/// Which callers a route group takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The admin token only (the admin API). Tenant keys are not even looked up.
    Admin,
    /// The admin token or a tenant key (jobs).
    AdminOrTenant,
    /// A tenant key only (the OpenAI-compatible API): the admin token is no key.
    Tenant,
}

/// Why a caller was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No token, a wrong one, or one this scope does not take.
    Unknown,
    /// The store could not tell whether a tenant key is live.
    Store(QueryError),
}

/// Resolves callers: holds the admin token, and the tenant keys.
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    /// The admin token.
    token: Secret,
    /// Where tenant keys are looked up.
    keys: TenantKeys,
    /// Recent lookups, and the budget of new ones.
    cache: KeyCache,
}

impl Authenticator {
    /// An authenticator of this admin token and these tenant keys.
    pub(crate) fn new(token: Secret, keys: TenantKeys) -> Self {
        Self {
            token,
            keys,
            cache: KeyCache::default(),
        }
    }

    /// Its cache of tenant keys (shared, for the handler that revokes keys).
    pub(crate) fn key_cache(&self) -> KeyCache {
        self.cache.clone()
    }

    /// The caller of a request with these headers, if `scope` takes it. The admin token
    /// is compared in constant time; a tenant key is looked up only where the scope
    /// takes tenants.
    pub(crate) async fn resolve(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Caller, Refusal> {
        let given = bearer(headers);
        // An empty bearer is no credential, whatever the token is.
        if given.is_empty() {
            return Err(Refusal::Unknown);
        }
        if constant_time_eq(given.as_bytes(), self.token.expose().as_bytes()) {
            return match scope {
                Scope::Admin | Scope::AdminOrTenant => Ok(Caller::Admin),
                Scope::Tenant => Err(Refusal::Unknown),
            };
        }
        if scope == Scope::Admin || given.is_empty() {
            return Err(Refusal::Unknown);
        }
        let tenant = self.tenant_of(given).await?.ok_or(Refusal::Unknown)?;
        Tenant::new(tenant)
            .map(Caller::Tenant)
            .map_err(|_| Refusal::Unknown)
    }
}

impl Authenticator {
    /// The tenant of the key `given` (none: unknown, or throttled): from the cache, by
    /// waiting for a lookup of the same key already under way (a few rounds at most,
    /// each bounded), or by looking it up.
    async fn tenant_of(&self, given: &str) -> Result<Option<String>, Refusal> {
        for _ in 0..3 {
            let now = std::time::Instant::now();
            match self.cache.get(given, now) {
                Cached::Answer(tenant) => return Ok(tenant),
                Cached::Throttled => return Ok(None),
                Cached::Pending(mut done) => {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        done.wait_for(|done| *done),
                    )
                    .await;
                }
                Cached::LookUp => {
                    // Whatever ends this lookup (an answer, an error, or the request
                    // dropped mid-way), the requests waiting on it are let go.
                    let lookup = crate::key_cache::Lookup::new(&self.cache, given);
                    let tenant = self.keys.tenant_of(given).await.map_err(Refusal::Store)?;
                    lookup.answer(tenant.clone(), now);
                    return Ok(tenant);
                }
            }
        }
        Ok(None)
    }
}

impl Scope {
    /// A refusal as this group answers it.
    pub(crate) fn refuse(self, refusal: Refusal) -> Response {
        match (self, refusal) {
            (Scope::Tenant, Refusal::Unknown) => OaiError::unauthorized().into_response(),
            (Scope::Tenant, Refusal::Store(e)) => OaiError::from(e).into_response(),
            (Scope::Admin, Refusal::Unknown) => {
                ApiError::Unauthorized("missing or wrong admin token").into_response()
            }
            (Scope::AdminOrTenant, Refusal::Unknown) => {
                ApiError::Unauthorized("missing or wrong admin token or tenant key").into_response()
            }
            (Scope::Admin | Scope::AdminOrTenant, Refusal::Store(e)) => {
                ApiError::from(e).into_response()
            }
        }
    }
}

/// The state of [`require`]: the authenticator and the group's scope.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    /// Resolves the caller.
    pub(crate) authenticator: Authenticator,
    /// Which callers the group takes.
    pub(crate) scope: Scope,
}

/// Middleware of a route group: the caller its scope takes, handed on to the
/// handlers, or the group's refusal (401, or the store's error).
pub(crate) async fn require(
    State(gate): State<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    match gate
        .authenticator
        .resolve(request.headers(), gate.scope)
        .await
    {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => gate.scope.refuse(refusal),
    }
}

/// The caller that the route group's [`require`] resolved.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the route resolves no caller"))
    }
}

/// The token of an `Authorization: Bearer …` header, or "".
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchyard_runtime::{MasterKey, Store, store::ConnectOptions};

    use super::*;
    use crate::error::read;

    fn bearing(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn each_scope_takes_its_callers_and_refuses_the_others_as_before() {
        let options = ConnectOptions {
            url: "sqlite::memory:".into(),
            schema: None,
            max_connections: 1,
        };
        let store = Store::connect(&options, MasterKey::generate().0)
            .await
            .unwrap();
        let (_, key) = store.create_tenant_key("acme", "ci").await.unwrap();
        let admin_token = "admin-token-admin-token";
        let keys = TenantKeys::new(store);
        let auth = Authenticator::new(Secret::new(admin_token), keys.clone());
        let acme = Caller::Tenant(Tenant::new("acme").unwrap());
        let refused =
            async |headers: HeaderMap, scope: Scope| match auth.resolve(&headers, scope).await {
                Ok(caller) => panic!("{scope:?} took {caller:?}"),
                Err(refusal) => read(scope.refuse(refusal)).await,
            };

        // The admin API: the admin token only; a tenant key is not even looked up.
        let admin = auth.resolve(&bearing(admin_token), Scope::Admin).await;
        assert_eq!(admin.unwrap(), Caller::Admin);
        let wrong = (
            401,
            Some("Bearer".to_owned()),
            json!({"error": "missing or wrong admin token"}),
        );
        assert_eq!(refused(bearing(&key), Scope::Admin).await, wrong);
        assert_eq!(refused(HeaderMap::new(), Scope::Admin).await, wrong);
        // An empty bearer is no credential, even against an (impossible) empty token.
        let empty = Authenticator::new(Secret::new(""), keys);
        for scope in [Scope::Admin, Scope::AdminOrTenant] {
            assert!(
                empty.resolve(&bearing(""), scope).await.is_err(),
                "{scope:?}"
            );
            assert!(
                empty.resolve(&HeaderMap::new(), scope).await.is_err(),
                "{scope:?}"
            );
        }

        // Jobs: either.
        let jobs = Scope::AdminOrTenant;
        assert_eq!(
            auth.resolve(&bearing(admin_token), jobs).await.unwrap(),
            Caller::Admin
        );
        assert_eq!(auth.resolve(&bearing(&key), jobs).await.unwrap(), acme);
        let wrong = (
            401,
            Some("Bearer".to_owned()),
            json!({"error": "missing or wrong admin token or tenant key"}),
        );
        assert_eq!(refused(bearing("sy_unknown"), jobs).await, wrong);
        assert_eq!(refused(HeaderMap::new(), jobs).await, wrong);

        // The OpenAI-compatible API: a tenant key only; the admin token is no key.
        let oai = Scope::Tenant;
        assert_eq!(auth.resolve(&bearing(&key), oai).await.unwrap(), acme);
        let wrong = (
            401,
            Some("Bearer".to_owned()),
            json!({"error": {"message": "missing or unknown API key (a tenant key, sy_…)",
                "type": "invalid_request_error", "code": "invalid_api_key", "param": null}}),
        );
        assert_eq!(refused(bearing(admin_token), oai).await, wrong);
        assert_eq!(refused(bearing("sy_unknown"), oai).await, wrong);
        assert_eq!(refused(HeaderMap::new(), oai).await, wrong);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret-longer"));
    }

    #[test]
    fn a_tenant_sees_only_its_own() {
        let caller = Caller::Tenant(Tenant::new("acme").unwrap());
        assert!(caller.sees("acme"));
        assert!(!caller.sees("other"));
        assert!(Caller::Admin.sees("other"));
    }
}
