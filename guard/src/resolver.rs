//! The guard's DNS resolver: the HTTP client asks it for every host name, so a name is
//! resolved exactly once per connection and only checked addresses are connected to.

use std::{net::SocketAddr, sync::Arc};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::OutboundPolicy;

/// A name that resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {reason} addresses only")]
pub(crate) struct Refused {
    pub(crate) host: String,
    pub(crate) reason: &'static str,
}

/// Resolves with the system resolver, then keeps only the addresses the policy allows
/// (all of them for a host the operator allows by name).
#[derive(Debug)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<OutboundPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let by_name = policy.allows_host(&host);
            let mut reason = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| {
                    if by_name {
                        return true;
                    }
                    match policy.refuses(address.ip()) {
                        None => true,
                        Some(why) => {
                            reason.get_or_insert(why);
                            false
                        }
                    }
                })
                .collect();
            if kept.is_empty() {
                let reason = reason.unwrap_or("no");
                tracing::warn!(%host, reason, "outbound fetch refused");
                return Err(Box::new(Refused { host, reason }) as _);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}
