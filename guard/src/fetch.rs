//! [`Guard`]: the one way to fetch a URL that did not come from the operator's config.

use std::{error::Error as _, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use url::{Host, Url};

use crate::{
    policy::OutboundPolicy,
    resolver::{GuardedResolver, Refused},
};

/// Why a guarded fetch did not return a body. The messages name the host, never the
/// path or query (which may carry a signature).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not a URL.
    #[error("bad url ({0})")]
    BadUrl(String),
    /// Not `http` or `https`.
    #[error("only http and https URLs are fetched")]
    Scheme,
    /// The host is, or resolves only to, an address the policy refuses. Decided before
    /// any connection is made.
    #[error("refused to fetch from {host}: it is a {reason} address")]
    Refused {
        /// The URL's host.
        host: String,
        /// Which kind of address (loopback, private, …).
        reason: &'static str,
    },
    /// The server answered with a status other than 2xx.
    #[error("{host} answered HTTP {status}")]
    Status {
        /// The URL's host.
        host: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than the budget left.
    #[error("larger than the {limit} bytes allowed")]
    TooLarge {
        /// The bytes that were allowed.
        limit: usize,
    },
    /// The fetch took longer than the policy's timeout.
    #[error("fetching from {host} took longer than {} ms", .after.as_millis())]
    Timeout {
        /// The URL's host.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection failed or broke.
    #[error("cannot fetch from {host}: {reason}")]
    Transport {
        /// The URL's host.
        host: String,
        /// What went wrong (without the URL).
        reason: String,
    },
}

/// What a fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// Its `Content-Type`, if sent.
    pub content_type: Option<String>,
}

/// The bytes one command's fetches may still read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    remaining: usize,
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self { remaining: bytes }
    }

    /// What is left.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

/// The outbound-fetch guard (see the crate docs). Cheap to clone; clones share the
/// connection pool and the concurrency cap.
#[derive(Debug, Clone)]
pub struct Guard {
    policy: Arc<OutboundPolicy>,
    client: reqwest::Client,
    /// For tenants' own provider accounts: [`OutboundPolicy::for_tenants`].
    tenant_policy: Arc<OutboundPolicy>,
    provider_client: reqwest::Client,
    permits: Arc<Semaphore>,
}

/// The process's guard: [`Guard::install`]ed at start-up with the operator's policy,
/// else one with the default policy.
static INSTALLED: std::sync::OnceLock<Guard> = std::sync::OnceLock::new();

impl Default for Guard {
    /// A guard with the default policy (shared: built once per process).
    fn default() -> Self {
        static DEFAULT: std::sync::OnceLock<Guard> = std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| Self::new(OutboundPolicy::default()))
            .clone()
    }
}

impl Guard {
    /// A guard enforcing `policy`.
    pub fn new(policy: OutboundPolicy) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            // A proxy would resolve the name itself, past the guard's resolver.
            .no_proxy()
            // A 3xx is an answer: a redirect could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .timeout(policy.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                // Without TLS roots or a resolver the builder can fail; a client that
                // cannot connect is safe, one that skips the guard is not.
                tracing::error!(error = %e, "cannot build the guarded HTTP client");
                reqwest::Client::builder()
                    .dns_resolver(Arc::new(GuardedResolver {
                        policy: policy.clone(),
                    }))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default()
            });
        // A tenant's own provider account: the same resolver and no redirects, but no
        // total timeout (a generation may take minutes; the provider actor bounds each
        // call by the config's `timeout_ms`).
        let tenant_policy = Arc::new(policy.for_tenants());
        let provider_client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: tenant_policy.clone(),
            }))
            // A proxy would resolve the name itself, past the guard's resolver.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot build the guarded provider client");
                client.clone()
            });
        Self {
            permits: Arc::new(Semaphore::new(policy.max_concurrent.max(1))),
            policy,
            client,
            tenant_policy,
            provider_client,
        }
    }

    /// The guarded client for a tenant's own provider account (its `base_url` and
    /// OAuth2 token endpoint came from the tenant): the guard's resolver under the
    /// tenants' policy ([`OutboundPolicy::for_tenants`]: the operator's `allow` does not
    /// apply) and no redirects, without the fetch timeout. Check IP-literal URLs with
    /// [`Guard::check_tenant_url`] first: they never reach the resolver.
    pub fn provider_client(&self) -> reqwest::Client {
        self.provider_client.clone()
    }

    /// Makes this the process's guard, for fetches whose code is not handed one (a
    /// provider adapter's result download). The first call wins; later calls return
    /// false and change nothing.
    pub fn install(&self) -> bool {
        INSTALLED.set(self.clone()).is_ok()
    }

    /// The process's guard ([`Guard::install`]), or the default one.
    pub fn installed() -> Guard {
        INSTALLED.get().cloned().unwrap_or_default()
    }

    /// The policy enforced.
    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// A fresh per-command budget ([`OutboundPolicy::max_command_bytes`]).
    pub fn budget(&self) -> Budget {
        Budget::new(self.policy.max_command_bytes)
    }

    /// The guarded HTTP client (the guard's resolver, no redirects, the timeout), for a
    /// caller that builds its own requests (the plugin host). Call
    /// [`Guard::check_url`] first: an IP literal never reaches a resolver.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Checks what can be checked without a lookup: the scheme, and a host written as
    /// an IP address (in any spelling the URL parser accepts: `2130706433`,
    /// `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]` …).
    ///
    /// # Errors
    /// [`FetchError::Scheme`] or [`FetchError::Refused`].
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        check_with(&self.policy, url)
    }

    /// [`Guard::check_url`] under the tenants' policy, for a tenant's own provider
    /// account's URLs.
    ///
    /// # Errors
    /// [`FetchError::Scheme`] or [`FetchError::Refused`].
    pub fn check_tenant_url(&self, url: &Url) -> Result<(), FetchError> {
        check_with(&self.tenant_policy, url)
    }

    /// [`Guard::check_tenant_url`], and for a host name, a lookup now: refused if it
    /// resolves to refused addresses only (as the resolver would at connect time), so
    /// a tenant hears at once that a URL it registers can never be reached.
    ///
    /// # Errors
    /// [`FetchError::Scheme`], [`FetchError::Refused`], or [`FetchError::Transport`]
    /// when the name does not resolve.
    pub async fn check_tenant_host(&self, url: &Url) -> Result<(), FetchError> {
        self.check_tenant_url(url)?;
        let Some(Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        if self.tenant_policy.allows_host(host) {
            return Ok(());
        }
        let lookup = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((host, 0)),
        )
        .await
        .map_err(|_| FetchError::Transport {
            host: host_of(url),
            reason: "the name did not resolve within 5 s".to_owned(),
        })?;
        let found: Vec<std::net::SocketAddr> = lookup
            .map_err(|e| FetchError::Transport {
                host: host_of(url),
                reason: e.to_string(),
            })?
            .collect();
        let mut refusal = None;
        for address in &found {
            match self.tenant_policy.refuses(address.ip()) {
                None => return Ok(()),
                Some(reason) => refusal = Some(reason),
            }
        }
        Err(match refusal {
            Some(reason) => FetchError::Refused {
                host: host_of(url),
                reason,
            },
            None => FetchError::Transport {
                host: host_of(url),
                reason: "the name resolves to no address".to_owned(),
            },
        })
    }
}

/// The checks of [`Guard::check_url`] under `policy`.
fn check_with(policy: &OutboundPolicy, url: &Url) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme);
    }
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => ip.into(),
        Some(Host::Ipv6(ip)) => ip.into(),
        Some(Host::Domain(_)) => return Ok(()),
        None => return Err(FetchError::BadUrl("no host".into())),
    };
    match policy.refuses(ip) {
        None => Ok(()),
        Some(reason) => {
            tracing::warn!(host = %host_of(url), reason, "outbound fetch refused");
            Err(FetchError::Refused {
                host: host_of(url),
                reason,
            })
        }
    }
}

impl Guard {
    /// Maps a transport error of a request made with [`Guard::client`]: a refusal by
    /// the resolver becomes [`FetchError::Refused`].
    pub fn transport_error(&self, url: &Url, error: &reqwest::Error) -> FetchError {
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<Refused>() {
                return FetchError::Refused {
                    host: host_of(url),
                    reason: refused.reason,
                };
            }
            source = cause.source();
        }
        if error.is_timeout() {
            return FetchError::Timeout {
                host: host_of(url),
                after: self.policy.timeout,
            };
        }
        // The innermost cause says what happened; the outer ones repeat the URL.
        let mut reason = if error.is_connect() {
            "connection failed".to_owned()
        } else {
            "the request failed".to_owned()
        };
        let mut source = error.source();
        while let Some(cause) = source {
            reason = cause.to_string();
            source = cause.source();
        }
        FetchError::Transport {
            host: host_of(url),
            reason,
        }
    }

    /// Fetches `url` with a GET, reading at most what `budget` and the per-fetch cap
    /// allow, and takes what it read from `budget`.
    ///
    /// # Errors
    /// [`FetchError`]: a refused, failed, slow or oversized fetch.
    pub async fn get(&self, url: &str, budget: &mut Budget) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
        self.check_url(&url)?;
        let limit = self.policy.max_fetch_bytes.min(budget.remaining);
        let timeout = self.policy.timeout;
        let work = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| FetchError::Transport {
                    host: host_of(&url),
                    reason: "the guard is closed".into(),
                })?;
            let mut response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| self.transport_error(&url, &e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status {
                    host: host_of(&url),
                    status: status.as_u16(),
                });
            }
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(FetchError::TooLarge { limit });
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| self.transport_error(&url, &e))?
            {
                if bytes.len() + chunk.len() > limit {
                    return Err(FetchError::TooLarge { limit });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Fetched {
                bytes,
                content_type,
            })
        };
        let fetched =
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| FetchError::Timeout {
                    host: host_of(&url),
                    after: timeout,
                })??;
        budget.remaining -= fetched.bytes.len();
        Ok(fetched)
    }
}

/// The host (and port) of a URL, for messages: never its path, query or user info.
fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "(no host)".to_owned(),
    }
}
