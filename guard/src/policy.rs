//! What the operator allows and how far a guarded fetch may go.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;

/// One operator allow-list entry: a host name (`images.internal`, `*.corp.example`) or
/// a network (`10.1.0.0/16`, `192.168.5.7`, `fd00::/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// This host name, or with `*.` every name under the domain; it may resolve to
    /// internal addresses.
    Host(String),
    /// Addresses in this network may be fetched from.
    Net(IpNet),
}

/// An allow-list entry that is neither a host name nor a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbound allow entry '{0}' is neither a host name, an address nor a CIDR network")]
pub struct PolicyError(pub String);

impl std::str::FromStr for AllowEntry {
    type Err = PolicyError;
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            return Ok(AllowEntry::Net(net));
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Ok(AllowEntry::Net(IpNet::from(ip)));
        }
        let name = entry.strip_prefix("*.").unwrap_or(entry);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if valid {
            Ok(AllowEntry::Host(entry.to_ascii_lowercase()))
        } else {
            Err(PolicyError(entry.to_owned()))
        }
    }
}

/// How guarded fetches behave. The defaults suit input images and result downloads.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundPolicy {
    /// Hosts and networks the operator allows despite being internal.
    pub allow: Vec<AllowEntry>,
    /// Hosts and networks a tenant's own provider account may reach despite being
    /// internal (its `base_url` and OAuth2 `token_url`); `allow` does not apply there.
    pub tenant_allow: Vec<AllowEntry>,
    /// The most one fetch may take, from connecting to the last body byte.
    pub timeout: Duration,
    /// The most bytes one fetch may read.
    pub max_fetch_bytes: usize,
    /// The most bytes all fetches of one command may read together.
    pub max_command_bytes: usize,
    /// Fetches at once in this process; more wait (within their timeout).
    pub max_concurrent: usize,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            tenant_allow: Vec::new(),
            timeout: Duration::from_secs(30),
            max_fetch_bytes: 20 * 1024 * 1024,
            max_command_bytes: 64 * 1024 * 1024,
            max_concurrent: 64,
        }
    }
}

impl OutboundPolicy {
    /// This policy for tenants' own provider accounts: `tenant_allow` in place of
    /// `allow`.
    pub fn for_tenants(&self) -> OutboundPolicy {
        OutboundPolicy {
            allow: self.tenant_allow.clone(),
            ..self.clone()
        }
    }

    /// Whether the operator allows this host name as such.
    pub(crate) fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().any(|entry| match entry {
            AllowEntry::Host(name) => match name.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => *name == host,
            },
            AllowEntry::Net(_) => false,
        })
    }

    /// Why `ip` is refused, or `None` when it may be fetched from (public, or in an
    /// allowed network).
    pub(crate) fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        let reason = crate::address::refusal(ip)?;
        let allowed = self.allow.iter().any(|entry| match entry {
            AllowEntry::Net(net) => net.contains(&ip),
            AllowEntry::Host(_) => false,
        });
        (!allowed).then_some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_as_hosts_or_networks() {
        assert_eq!(
            "10.1.0.0/16".parse(),
            Ok(AllowEntry::Net("10.1.0.0/16".parse().unwrap()))
        );
        assert_eq!(
            "127.0.0.1".parse(),
            Ok(AllowEntry::Net("127.0.0.1/32".parse().unwrap()))
        );
        assert_eq!(
            "*.Corp.example".parse(),
            Ok(AllowEntry::Host("*.corp.example".into()))
        );
        assert!("http://x".parse::<AllowEntry>().is_err());
        assert!("a b".parse::<AllowEntry>().is_err());
    }

    #[test]
    fn allowed_networks_and_hosts_pass() {
        let policy = OutboundPolicy {
            allow: vec![
                "10.1.0.0/16".parse().unwrap(),
                "*.corp.example".parse().unwrap(),
            ],
            ..OutboundPolicy::default()
        };
        assert_eq!(policy.refuses("10.1.2.3".parse().unwrap()), None);
        assert_eq!(policy.refuses("10.2.0.1".parse().unwrap()), Some("private"));
        assert!(policy.allows_host("img.corp.example"));
        assert!(!policy.allows_host("corp.example.evil"));
    }

    #[test]
    fn the_operators_allow_list_does_not_open_the_inside_to_tenants() {
        let policy = OutboundPolicy {
            allow: vec!["10.1.0.0/16".parse().unwrap()],
            tenant_allow: vec!["10.9.0.0/16".parse().unwrap()],
            ..OutboundPolicy::default()
        };
        let operator_net: IpAddr = "10.1.2.3".parse().unwrap();
        let tenant_net: IpAddr = "10.9.2.3".parse().unwrap();
        assert_eq!(policy.refuses(operator_net), None);
        assert!(policy.refuses(tenant_net).is_some());
        let tenants = policy.for_tenants();
        assert!(tenants.refuses(operator_net).is_some());
        assert_eq!(tenants.refuses(tenant_net), None);
        assert!(tenants.refuses("127.0.0.1".parse().unwrap()).is_some());
    }
}
